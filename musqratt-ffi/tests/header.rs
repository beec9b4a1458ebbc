//! `include/musqratt.h` is what cbindgen makes of the crate now: a change to the C interface
//! that is not in the committed header fails here (and so in CI).

use std::path::Path;

#[test]
fn the_committed_header_is_the_generated_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = dir.join("include/musqratt.h");
    if std::env::var_os("MUSQRATT_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("the header is written");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/musqratt.h differs from the generated header; regenerate it with\n  \
         MUSQRATT_UPDATE_HEADER=1 cargo test -p musqratt-ffi --test header\n--- generated:\n{}",
        String::from_utf8_lossy(&fresh)
    );
}
