//! `anetrain train` on a text file: tokenized in pieces yet exactly as the tokenizer encodes
//! the whole text, cached beside the data (or in the run directory when the data's directory
//! is read-only), and re-tokenized when the file changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anetrain_data::{HfTokenizer, Tokenizer};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

fn shared(name: &str) -> Option<PathBuf> {
    let path = Path::new(SHARED).join(name);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("skipped: {} is absent", path.display());
        None
    }
}

fn train(out: &Path, data: &Path, tokenizer: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anetrain"))
        .args([
            "train",
            "--out",
            out.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .args([
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--device",
            "cpu",
        ])
        .args([
            "--steps",
            "1",
            "--seq",
            "16",
            "--batch",
            "2",
            "--eval-every",
            "0",
        ])
        .args(["--sample-tokens", "0"])
        .output()
        .unwrap()
}

fn caches(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.to_string_lossy().contains(".tok-"))
        .collect();
    found.sort();
    found
}

fn ids_of(bin: &Path) -> Vec<u32> {
    std::fs::read(bin)
        .unwrap()
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
        .collect()
}

#[test]
fn text_is_tokenized_once_into_a_cache_that_matches_the_whole_text_encoding() {
    let (Some(tok_path), Some(val)) = (
        shared("llama2-tokenizer.json"),
        shared("shakespeare_val.txt"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("plays.txt");
    std::fs::copy(&val, &data).unwrap();

    let o = train(&dir.path().join("run1"), &data, &tok_path);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tokenizing"));
    let files = caches(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let bin = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let tokenizer = HfTokenizer::from_file(&tok_path).unwrap();
    let text = std::fs::read_to_string(&data).unwrap();
    let mut expected = vec![tokenizer.bos().unwrap()];
    expected.extend(tokenizer.encode(text.trim()).unwrap());
    assert!(
        ids_of(bin) == expected,
        "cached tokens differ from the whole-text encoding"
    );

    let o = train(&dir.path().join("run2"), &data, &tok_path);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("tokenizing"),
        "the cache is used"
    );

    let changed = format!("{text}\nEXEUNT.\n");
    std::fs::write(&data, &changed).unwrap();
    let o = train(&dir.path().join("run3"), &data, &tok_path);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tokenizing"),
        "a changed file is re-tokenized"
    );
    let bin = caches(dir.path())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let mut expected = vec![tokenizer.bos().unwrap()];
    expected.extend(tokenizer.encode(changed.trim()).unwrap());
    assert!(
        ids_of(&bin) == expected,
        "the new cache holds the changed text"
    );
}

#[test]
fn a_read_only_data_directory_caches_in_the_run_directory() {
    let (Some(tok_path), Some(val)) = (
        shared("llama2-tokenizer.json"),
        shared("shakespeare_val.txt"),
    ) else {
        return;
    };
    let readonly = std::fs::metadata(SHARED).is_ok_and(|m| m.permissions().readonly());
    if !readonly {
        eprintln!("skipped: {SHARED} has write permission here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = train(&run, &val, &tok_path);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(caches(&run.join(".token-cache")).len(), 2);
    assert!(
        caches(Path::new(SHARED)).is_empty(),
        "nothing is written beside shared data"
    );
}
