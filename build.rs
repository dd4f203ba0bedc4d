//! Builds the sandbox crate's cdylib and hands its path to the server crate,
//! which embeds the bytes (`include_bytes!`) and writes them next to the
//! harness at run time. One self-contained `sluice` binary thus carries the
//! library its Python children load, whether it runs from `cargo run`,
//! `cargo test` or an installed copy.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for p in ["sandbox/src", "sandbox/Cargo.toml", "sandbox/python"] {
        println!("cargo:rerun-if-changed={}", manifest_dir.join(p).display());
    }

    // A separate target dir: the outer cargo holds the lock on the main one.
    let target_dir = out_dir.join("sandbox-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--lib", "-p", "sluice-sandbox"])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Settings meant for the outer build (its target dir, profile
        // overrides, rustc wrappers for coverage) must not leak in.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running cargo to build the sandbox cdylib");
    assert!(status.success(), "building the sandbox cdylib failed");

    let lib = target_dir.join("release").join("libsluice_sandbox.so");
    assert!(lib.exists(), "{} was not built", lib.display());
    println!("cargo:rustc-env=SLUICE_SANDBOX_CDYLIB={}", lib.display());
}
