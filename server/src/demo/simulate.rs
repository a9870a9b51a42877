//! STUB (being written by a helper).
#![allow(missing_docs, dead_code)]
#[derive(Debug, Clone)]
pub struct SimOptions { pub rate: f64, pub duration: Option<std::time::Duration>, pub writers: usize, pub seed: u64 }
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SimStats { pub statements: u64 }
pub async fn ensure_sources(_c: &tokio_postgres::Client) -> anyhow::Result<()> { Ok(()) }
pub async fn run(_u: &str, _o: SimOptions, _s: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<SimStats> { Ok(SimStats::default()) }
