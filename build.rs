//! Generates the C header from the Rust source with cbindgen, into OUT_DIR. `make header`
//! (RLOG_UPDATE_HEADER=1) also writes it to include/rlog.h; the `header_is_fresh` test fails when
//! the committed header differs from the generated one.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("rlog.h");
    // cbindgen reads the whole crate (module attributes in lib.rs decide what it sees).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=RLOG_UPDATE_HEADER");
    // librlog.so's SONAME: programs linked with -lrlog record librlog.so.0 and keep working
    // across compatible upgrades (make install lays out librlog.so.VERSION, the librlog.so.0
    // link and the librlog.so development link).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librlog.so.0");
    }
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate include/rlog.h");
    bindings.write_to_file(&out);
    if std::env::var_os("RLOG_UPDATE_HEADER").is_some() {
        bindings.write_to_file(crate_dir.join("include/rlog.h"));
    }
}
