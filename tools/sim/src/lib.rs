//! ingestwatch-sim: the tools that give ingestwatch something to watch.
//!
//! - [`pgtemp`] — a throwaway PostgreSQL cluster from the installed binaries
//!   ([`TempCluster`]), for the demo, the tests and the bench.
//! - [`simulate`] — a simulated meetings-ingestion pipeline that writes the
//!   `ingest.*` tables the way a real one would (`ingestwatch simulate`, the
//!   demo, load and chaos tests, the bench).
//!
//! The server crate does not depend on this one: it is a tool, never a part
//! of what `serve` runs.

pub mod pgtemp;
pub mod simulate;

pub use pgtemp::TempCluster;
