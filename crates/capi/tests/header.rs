//! The committed `include/anetrain.h` is what cbindgen generates from the sources now.
//! Regenerate it with `ANETRAIN_BLESS=1 cargo test -p anetrain-capi --test header`.

use std::path::Path;

#[test]
fn committed_header_matches_the_sources() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("crates/capi/cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let committed_path = crate_dir.join("include/anetrain.h");
    if std::env::var_os("ANETRAIN_BLESS").is_some() {
        std::fs::write(&committed_path, &generated).expect("include/anetrain.h is writable");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "crates/capi/include/anetrain.h is stale; regenerate it with \
         `ANETRAIN_BLESS=1 cargo test -p anetrain-capi --test header` and commit it"
    );
}
