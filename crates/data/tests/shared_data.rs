//! Checks against the real Llama-2-style tokenizer and Shakespeare data in `shared/data`.
//! Every test here has `shared` in its name and skips, saying why, when that folder is absent.

use anetrain_data::{validate_vocab, HfTokenizer, ShardSet, StreamDecoder, TokenStream, Tokenizer};
use std::path::PathBuf;

/// `shared/data` beside the workspace, or `None` (with the reason printed) when it is absent.
fn shared_data() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} not found (shared data is optional)",
            dir.display()
        );
        None
    }
}

fn llama_tokenizer(dir: &std::path::Path) -> HfTokenizer {
    HfTokenizer::from_file(dir.join("llama2-tokenizer.json")).unwrap()
}

#[test]
fn shared_hf_tokenizer_has_llama_specials() {
    let Some(dir) = shared_data() else { return };
    let tok = llama_tokenizer(&dir);
    assert_eq!(tok.vocab_size(), 32000);
    assert_eq!(tok.bos(), Some(1));
    assert_eq!(tok.eos(), Some(2));
}

#[test]
fn shared_hf_tokenizer_encodes_the_first_play_like_the_pretokenized_bin() {
    let Some(dir) = shared_data() else { return };
    let tok = llama_tokenizer(&dir);
    let bin = ShardSet::open(dir.join("shakespeare_val.bin")).unwrap();
    let ids = bin.get(0..bin.len()).unwrap();
    // The .bin holds one document per play, each after BOS = 1; the text file joins the plays
    // with blank lines only, so the first play's extent is taken from the .bin's second BOS.
    assert_eq!(ids[0], 1);
    let second_bos = 1 + ids[1..].iter().position(|&id| id == 1).unwrap();
    let play = &ids[1..second_bos];

    let text = std::fs::read_to_string(dir.join("shakespeare_val.txt")).unwrap();
    let decoded = tok.decode(play).unwrap();
    assert!(decoded.len() > 100_000, "{} bytes", decoded.len());
    assert!(
        text.starts_with(&decoded),
        "decoded play is not a prefix of the text"
    );
    assert_eq!(tok.encode(&text[..decoded.len()]).unwrap(), play);
}

#[test]
fn shared_hf_tokenizer_round_trips_and_streams_byte_fallback_text() {
    let Some(dir) = shared_data() else { return };
    let tok = llama_tokenizer(&dir);
    let text = "To be, or not to be:\n\tthat is the question. Ünïcödé ✓ 世界 🎭";
    let ids = tok.encode(text).unwrap();
    // Byte-fallback tokens (`<0x..>`, ids 3..=258) must occur for the test to mean anything.
    assert!(ids.iter().any(|&id| (3..259).contains(&id)), "{ids:?}");
    assert_eq!(tok.decode(&ids).unwrap(), text);

    let mut dec = StreamDecoder::new(&tok);
    let mut streamed = String::new();
    for &id in &ids {
        if let Some(piece) = dec.push(id).unwrap() {
            assert!(
                !piece.contains('\u{FFFD}'),
                "emitted a partial character: {piece:?}"
            );
            streamed.push_str(&piece);
        }
    }
    streamed.push_str(&dec.finish().unwrap());
    assert_eq!(streamed, text);
    assert!(tok.decode(&[32000]).is_err());
}

#[test]
fn shared_shard_set_reads_the_training_bin() {
    let Some(dir) = shared_data() else { return };
    let path = dir.join("shakespeare_train.bin");
    let bytes = std::fs::read(&path).unwrap();
    let set = ShardSet::open(&path).unwrap();
    assert_eq!(set.len(), bytes.len() / 2);
    // Spot-check ids against a direct little-endian decode of the file.
    for start in [0, 1, 777_777, set.len() - 5] {
        let expected: Vec<u32> = bytes[2 * start..2 * (start + 5)]
            .chunks_exact(2)
            .map(|p| u32::from(p[0]) | (u32::from(p[1]) << 8))
            .collect();
        assert_eq!(set.get(start..start + 5).unwrap(), expected);
    }
    assert_eq!(set.get(0..1).unwrap(), vec![1]);
    validate_vocab(&set, 32000).unwrap();
    let err = validate_vocab(&set, 1000).unwrap_err().to_string();
    assert!(err.contains("shakespeare_train.bin"), "{err}");
}
