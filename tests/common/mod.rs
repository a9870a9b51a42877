//! The one test harness: a PostgreSQL to talk to (DATABASE_URL, else
//! 127.0.0.1:5432, else a throwaway cluster from the installed binaries), a
//! fresh database per test (NOTIFY is database-wide), the real server on a
//! real port, pipeline-row builders, SQL truth for KPIs, and a WS client.
#![allow(dead_code, missing_docs)]

pub mod bin;
pub mod view;

mod db;
mod pipeline;
mod server;
mod truth;
mod ws;

// Not every test binary uses every part of the harness.
#[allow(unused_imports)]
pub use db::*;
#[allow(unused_imports)]
pub use pipeline::*;
#[allow(unused_imports)]
pub use server::*;
#[allow(unused_imports)]
pub use truth::*;
#[allow(unused_imports)]
pub use ws::*;
