//! Puts `memory.x` where cortex-m-rt's `link.x` looks for it, and links with `link.x` (here
//! rather than in `.cargo/config.toml`'s `rustflags`, which a `RUSTFLAGS` in the environment,
//! even an empty one as CI exports, silently replaces: the image then has no vector table).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed=memory.x");
}
