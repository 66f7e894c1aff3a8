//! Helpers shared by the data crate's test binaries.

use std::path::PathBuf;

use anetrain_data::HfTokenizer;

/// The Llama 2 tokenizer in `shared/data`, or `None` (saying why) when the shared folder is
/// absent.
pub fn llama2_tokenizer() -> Option<HfTokenizer> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/llama2-tokenizer.json");
    if !path.is_file() {
        eprintln!(
            "skipped: {} not found (shared data is optional)",
            path.display()
        );
        return None;
    }
    Some(HfTokenizer::from_file(path).unwrap())
}
