//! Incremental decoding for generation: one id in, the newly completed text out.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// Decodes a growing id sequence one token at a time, emitting text only once it is complete
/// UTF-8.
///
/// Decoding tokens one by one and concatenating goes wrong in two ways: a character split over
/// byte tokens (`<0xE2>`, `<0x82>`, `<0xAC>` for `€`) decodes as U+FFFD pieces, and
/// SentencePiece-style decoders strip the leading space of whatever sequence they are given.
/// So this decodes a short window of recent ids twice — without and with the new tail — and
/// emits the difference, holding back while the text ends in U+FFFD (an unfinished character).
/// Each call costs two decodes of the window, which is reset after every emission.
pub struct StreamDecoder<'t> {
    tokenizer: &'t dyn Tokenizer,
    /// Recent ids: `ids[..read]` were already emitted (kept as context), `ids[read..]` not yet.
    ids: Vec<u32>,
    read: usize,
}

impl<'t> StreamDecoder<'t> {
    /// A decoder at the start of a text.
    pub fn new(tokenizer: &'t dyn Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            ids: Vec::new(),
            read: 0,
        }
    }

    /// A decoder continuing after `context` (a prompt, already shown as the decode of those
    /// ids), so the first new token keeps the leading space a decoder strips only at the start
    /// of a text.
    pub fn after(tokenizer: &'t dyn Tokenizer, context: &[u32]) -> Self {
        StreamDecoder {
            tokenizer,
            ids: context.to_vec(),
            read: context.len(),
        }
    }

    /// Adds one id; returns the text it completes, or `None` while a character is unfinished.
    /// An id the tokenizer cannot decode is an error and is not kept.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = self.tokenizer.decode(&self.ids[..self.read])?;
        let after = match self.tokenizer.decode(&self.ids) {
            Ok(text) => text,
            Err(e) => {
                self.ids.pop();
                return Err(e);
            }
        };
        if after.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let new_text = extension(&before, &after);
        // Keep the just-emitted ids as the next window's context, so a leading-space strip
        // applies to both decodes alike.
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        if new_text.is_empty() {
            Ok(None)
        } else {
            Ok(Some(new_text.to_string()))
        }
    }

    /// Emits whatever is still held back (with U+FFFD for an unfinished character) at the end
    /// of generation, and resets the decoder.
    pub fn finish(&mut self) -> Result<String> {
        let before = self.tokenizer.decode(&self.ids[..self.read])?;
        let after = self.tokenizer.decode(&self.ids)?;
        self.ids.clear();
        self.read = 0;
        Ok(extension(&before, &after).to_string())
    }
}

/// The part of `after` past its longest common prefix with `before`, cut at a character
/// boundary. Normally `before` is a prefix of `after`; a decoder that rewrites earlier text
/// (e.g. merges whitespace) then loses only the rewritten part, never the new text.
fn extension<'a>(before: &str, after: &'a str) -> &'a str {
    let common = before
        .char_indices()
        .zip(after.chars())
        .find(|((_, b), a)| b != a)
        .map_or(before.len().min(after.len()), |((i, _), _)| i);
    after.get(common..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::ByteTokenizer;

    #[test]
    fn multibyte_characters_are_emitted_whole() {
        let tok = ByteTokenizer;
        let mut dec = StreamDecoder::new(&tok);
        let text = "a€b";
        let mut pieces = Vec::new();
        for id in tok.encode(text).unwrap() {
            pieces.push(dec.push(id).unwrap());
        }
        // '€' is three bytes: two pushes emit nothing, the third emits the whole character.
        let expected = vec![
            Some("a".to_string()),
            None,
            None,
            Some("€".to_string()),
            Some("b".to_string()),
        ];
        assert_eq!(pieces, expected);
        assert_eq!(dec.finish().unwrap(), "");
    }

    #[test]
    fn a_rejected_id_leaves_the_decoder_usable() {
        let tok = ByteTokenizer;
        let mut dec = StreamDecoder::new(&tok);
        assert_eq!(dec.push(b'o'.into()).unwrap(), Some("o".to_string()));
        assert!(dec.push(999).is_err());
        assert_eq!(dec.push(b'k'.into()).unwrap(), Some("k".to_string()));
    }

    #[test]
    fn finish_flushes_an_unfinished_character() {
        let tok = ByteTokenizer;
        let mut dec = StreamDecoder::new(&tok);
        assert_eq!(dec.push(0xE2).unwrap(), None);
        assert_eq!(dec.finish().unwrap(), "\u{FFFD}");
    }

    #[test]
    fn concatenated_stream_equals_whole_decode() {
        let tok = ByteTokenizer;
        let text = "Grüße, 世界! 🎉 done";
        let mut dec = StreamDecoder::new(&tok);
        let mut out = String::new();
        for id in tok.encode(text).unwrap() {
            out.extend(dec.push(id).unwrap());
        }
        out.push_str(&dec.finish().unwrap());
        assert_eq!(out, text);
    }
}
