//! The `ingestwatch-bench` binary: parses [`BenchArgs`], sets up tracing and
//! runs the suite (`ingestwatch_bench::run`).
//!
//! `ingestwatch-bench serve` (hidden; not for people) is how `--server child`
//! starts the server under test: this same binary, re-executed, running the
//! server library's `serve` with its options from the environment — so the
//! bench needs no other binary built and measures exactly the server code it
//! was compiled with.

use anyhow::Context;
use clap::Parser;
use ingestwatch_bench::args::BenchArgs;
use ingestwatch_server::config::{LogFormat, ServerOptions};
use ingestwatch_server::{server, telemetry};
use tokio_util::sync::CancellationToken;

/// ingestwatch-bench — the end-to-end benchmark suite of ingestwatch.
#[derive(Debug, Parser)]
#[command(name = "ingestwatch-bench", version, about, long_about = None)]
struct Cli {
    /// Log output format.
    #[arg(long, env = "INGESTWATCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// What to measure and how.
    #[command(flatten)]
    bench: BenchArgs,
}

/// The server under test (`--server child`): `serve`'s options.
#[derive(Debug, Parser)]
#[command(name = "ingestwatch-bench serve")]
struct Serve {
    /// Log output format.
    #[arg(long, env = "INGESTWATCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// PostgreSQL URL the server reads from.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Server tuning.
    #[command(flatten)]
    server: ServerOptions,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args_os().nth(1).is_some_and(|a| a == "serve") {
        let args = Serve::parse_from(std::env::args_os().skip(1));
        telemetry::init(args.log_format);
        let listener = tokio::net::TcpListener::bind(args.server.listen)
            .await
            .with_context(|| format!("binding {}", args.server.listen))?;
        let shutdown = CancellationToken::new();
        let t = shutdown.clone();
        tokio::spawn(async move {
            server::signal().await;
            t.cancel();
        });
        return server::run(listener, &args.database_url, args.server, shutdown).await;
    }
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    ingestwatch_bench::run(cli.bench).await
}
