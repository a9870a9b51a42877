//! The embedded demo: a throwaway PostgreSQL (unless DATABASE_URL is given),
//! migrations, the simulated pipeline and the server, in one command.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use ingestwatch_server::config::TokenClaims;
use ingestwatch_server::{db, server};
use ingestwatch_sim::{pgtemp, simulate};

use crate::args::DemoArgs;

/// Runs the demo until `shutdown` (or `--duration`).
pub async fn run(mut args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let token = demo_auth(&mut args)?;
    args.server.default_alerts = args.server.alerts.is_none();
    let cluster = match &args.database_url {
        Some(_) => None,
        None => {
            println!("starting a throwaway PostgreSQL from the installed binaries…");
            Some(
                pgtemp::TempCluster::start()
                    .await
                    .context("starting throwaway PostgreSQL")?,
            )
        }
    };
    let url = match (&args.database_url, &cluster) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => c.url_for("postgres"),
        (None, None) => unreachable!("a cluster was started"),
    };
    let mut client = db::connect(&url).await?;
    db::migrate::run(&mut client).await?;
    simulate::ensure_sources(&client).await?;
    drop(client);

    if let Some(secs) = args.duration {
        let t = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            t.cancel();
        });
    }
    let sim_opts = simulate::SimOptions {
        rate: args.rate,
        duration: None,
        writers: 4,
        seed: rand::random(),
    };
    let sim_url = url.clone();
    let sim_stop = shutdown.clone();
    let sim =
        tokio::spawn(
            async move { simulate::run(&sim_url, sim_opts, sim_stop.cancelled_owned()).await },
        );

    let listener = tokio::net::TcpListener::bind(args.server.listen)
        .await
        .with_context(|| format!("binding {}", args.server.listen))?;
    let addr = listener.local_addr()?;
    println!();
    match &token {
        Some(t) => {
            println!("  ingestwatch demo is live:  http://{addr}/#token={t}");
            println!("  (an operator token valid for 8 h; mint more with `ingestwatch token`)");
            println!("  KPIs as JSON:              curl -H 'Authorization: Bearer {t}' http://{addr}/api/kpis?window=5m");
        }
        None => {
            println!("  ingestwatch demo is live:  http://{addr}/");
            println!("  KPIs as JSON:              http://{addr}/api/kpis?window=5m");
        }
    }
    println!("  Ctrl-C stops it and removes the throwaway database.");
    println!();
    let served = server::run(listener, &url, args.server, shutdown.clone()).await;
    shutdown.cancel();
    match sim.await {
        Ok(Ok(stats)) => tracing::info!(statements = stats.statements, "simulator stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "simulator failed"),
        Err(e) => tracing::warn!(error = %e, "simulator task failed"),
    }
    if let Some(c) = cluster {
        c.stop().await?;
    }
    served
}

/// The demo runs with authentication on: with no key configured it makes a
/// random HS256 secret for this run and mints an operator token for the URL.
fn demo_auth(args: &mut DemoArgs) -> anyhow::Result<Option<String>> {
    let a = &mut args.server.auth;
    if a.auth_disabled {
        return Ok(None);
    }
    if a.jwt_secret.is_none() && a.jwt_public_key.is_none() && a.jwks_url.is_none() {
        let bytes: [u8; 32] = rand::random();
        a.jwt_secret = Some(bytes.iter().map(|b| format!("{b:02x}")).collect());
    }
    let Some(secret) = a.jwt_secret.clone() else {
        return Ok(None);
    };
    let token = ingestwatch_server::auth::mint(&TokenClaims {
        jwt_secret: secret,
        role: "operator".into(),
        ttl: "8h".into(),
        sources: vec![],
        subject: "demo".into(),
        audience: a.jwt_audience.clone(),
        issuer: a.jwt_issuer.clone(),
        role_claim: a.role_claim.clone(),
    })?;
    Ok(Some(token))
}
