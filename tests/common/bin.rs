//! The `ingestwatch` binary for the tests that run it as a user would.
//!
//! The binary lives in another package (`cli/`), so Cargo does not build it
//! for these tests nor set `CARGO_BIN_EXE_ingestwatch`. The first call builds
//! it with the Cargo running the tests (same profile and target directory)
//! and returns its path; later calls in the same test binary reuse it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static BIN: OnceLock<PathBuf> = OnceLock::new();

/// Path of a freshly built `ingestwatch` binary (built once per test binary).
pub fn ingestwatch() -> &'static Path {
    BIN.get_or_init(|| {
        // This test binary is <target>/<profile>/deps/<name>-<hash>.
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> above the test binary");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "ingestwatch",
            "--bin",
            "ingestwatch",
        ])
        .arg("--manifest-path")
        .arg(&manifest);
        // Cargo sets the test's own package variables (CARGO_MANIFEST_DIR,
        // CARGO_PKG_*, …) for this process; some build scripts (ring) track
        // them, so passing them on would rebuild half the tree each run.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || k.starts_with("CARGO_CRATE_")
                || k.starts_with("CARGO_BIN_")
                || k == "CARGO_PRIMARY_PACKAGE"
                || k == "CARGO_TARGET_TMPDIR"
            {
                cmd.env_remove(&*k);
            }
        }
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build -p ingestwatch");
        assert!(status.success(), "cargo build -p ingestwatch failed");
        let bin = profile_dir.join(format!("ingestwatch{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}
