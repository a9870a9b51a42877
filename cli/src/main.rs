//! The `ingestwatch` binary: parses the CLI ([`args`]), sets up tracing and
//! dispatches. `serve` and `migrate` call the server library
//! (`ingestwatch-server`); `demo` ([`demo`]) and `simulate` also use the
//! simulator and throwaway cluster (`ingestwatch-sim`); `tail` ([`tail`]) is
//! the reference WebSocket subscriber; `token` mints a token; `probe` is a container health check. The benchmark
//! suite is its own binary, `ingestwatch-bench` (`tools/bench`).

mod args;
mod demo;
mod probe;
mod tail;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use args::{Cli, Command};
use ingestwatch_server::{db, server, telemetry};
use ingestwatch_sim::simulate;

/// Errors end the process with one line on stderr (never a backtrace) and exit code 1.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingestwatch: {}", db::connect::one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(args) => {
            let mut client = db::connect(&args.database_url)
                .await
                .map_err(|e| anyhow::anyhow!("DATABASE_URL: {e:#}"))?;
            let applied = db::migrate::run(&mut client)
                .await
                .map_err(|e| anyhow::anyhow!("DATABASE_URL: {}", db::connect::one_line(&e)))?;
            if applied.is_empty() {
                println!("database is up to date");
            } else {
                println!("applied: {}", applied.join(", "));
            }
            Ok(())
        }
        Command::Serve(args) => {
            let listener = tokio::net::TcpListener::bind(args.server.listen)
                .await
                .with_context(|| format!("binding {}", args.server.listen))?;
            let shutdown = shutdown_on_signal();
            server::run(listener, &args.database_url, args.server, shutdown).await
        }
        Command::Demo(args) => demo::run(args, shutdown_on_signal()).await,
        Command::Tail(args) => {
            let shutdown = CancellationToken::new();
            let token = shutdown.clone();
            tokio::spawn(async move {
                server::signal().await;
                token.cancel();
            });
            let mut out = std::io::stdout();
            if let Err(e) = tail::run(&args, &mut out, shutdown).await {
                eprintln!("tail: {e}");
                std::process::exit(e.exit_code());
            }
            Ok(())
        }
        Command::Token(args) => {
            println!("{}", ingestwatch_server::auth::mint(&args.claims())?);
            Ok(())
        }
        Command::Probe(args) => std::process::exit(probe::run(&args).await),
        Command::Simulate(args) => {
            let shutdown = shutdown_on_signal();
            let opts = simulate::SimOptions {
                rate: args.rate,
                duration: args.duration.map(Duration::from_secs),
                writers: args.writers,
                seed: args.seed,
            };
            let stats = simulate::run(&args.database_url, opts, shutdown.cancelled_owned()).await?;
            println!("{}", serde_json::to_string(&stats)?);
            Ok(())
        }
    }
}

/// A token cancelled on Ctrl-C / SIGTERM; a second signal (or 10 s) forces exit.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        server::signal().await;
        tracing::info!("shutting down");
        t.cancel();
        tokio::select! {
            () = server::signal() => {}
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        std::process::exit(130);
    });
    token
}
