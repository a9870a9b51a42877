//! STUB: the end-to-end benchmark (being written).
use crate::config::BenchArgs;

/// Runs the benchmark.
pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
