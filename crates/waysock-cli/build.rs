//! Builds the preload shim (`waysock-preload`, a cdylib) and hands it to the `waysock` binary,
//! which embeds it (`cmd/preload.rs`): one installed `waysock`, e.g. from
//! `cargo install --path crates/waysock-cli`, brings the shim along.
//!
//! A build script cannot depend on another package's cdylib (artifact dependencies are
//! unstable), so this runs `cargo build --release -p waysock-preload` itself, in a target
//! directory of its own (`<target>/waysock-shim`, shared by every profile; never the one the
//! outer cargo holds locked), with the workspace's Cargo.lock (which the outer build has
//! brought up to date). The outer cargo's jobserver is inherited, so the two builds share the
//! machine's jobs. Clippy's wrapper is not passed on: the shim is linted as a package of the
//! workspace, not here.
//!
//! The shim is small (libc only) and builds in seconds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .expect("waysock-cli lies in crates/ of the workspace")
        .to_owned();
    for watched in [
        "crates/waysock-preload/src",
        "crates/waysock-preload/Cargo.toml",
        "crates/waysock-rules/src",
        "crates/waysock-rules/Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(env("OUT_DIR"));
    let target_dir = shim_target_dir(&out_dir);
    let target = env("TARGET");
    let host = env("HOST");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--release", "-p", "waysock-preload"])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Symbols are dead weight inside the binary.
        .args(["--config", "profile.release.strip=true"]);
    if target != host {
        cmd.args(["--target", &target]);
    }
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("waysock-cli: cannot run cargo to build the shim: {e}"));
    if !status.success() {
        panic!(
            "waysock-cli: building the preload shim (cargo build --release -p waysock-preload \
             --target-dir {}) failed: {status}",
            target_dir.display()
        );
    }
    let mut built = target_dir.clone();
    if target != host {
        built.push(&target);
    }
    built.push("release/libwaysock_preload.so");
    let bytes = std::fs::read(&built).unwrap_or_else(|e| {
        panic!(
            "waysock-cli: reading the built shim {}: {e}",
            built.display()
        )
    });
    assert!(
        bytes.starts_with(b"\x7fELF") && bytes.windows(19).any(|w| w == b"WAYSOCK_PRELOAD_DIR"),
        "waysock-cli: {} is not the shim",
        built.display()
    );
    std::fs::write(out_dir.join("libwaysock_preload.so"), bytes).expect("writing the shim copy");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by cargo for build scripts"))
}

/// `<target>/waysock-shim` where `<target>` is the outer target directory: OUT_DIR is
/// `<target>[/<triple>]/<profile>/build/waysock-cli-<hash>/out`.
fn shim_target_dir(out_dir: &Path) -> PathBuf {
    let up = out_dir.ancestors().nth(4).unwrap_or(out_dir);
    // With --target, `up` is `<target>/<triple>`; sharing it per triple is fine too.
    up.join("waysock-shim")
}
