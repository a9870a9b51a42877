//! Tools outside Rust that some tests drive: the repository root, and the
//! project-local Python and npm packages installed once per test binary by
//! `scripts/test-deps.sh`.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The repository root (found from the test package's manifest directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("scripts/test-deps.sh").is_file())
        .expect("repository root")
        .to_path_buf()
}

/// Runs `scripts/test-deps.sh` once; returns the Python interpreter of the
/// project-local virtualenv (the npm packages are installed by the same run).
pub fn deps() -> &'static PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root().join("scripts/test-deps.sh"))
            .output()
            .expect("run scripts/test-deps.sh");
        assert!(
            out.status.success(),
            "scripts/test-deps.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
    })
}
