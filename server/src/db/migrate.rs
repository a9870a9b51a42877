//! The migrations runner: applies the ordered files of `sql/` (embedded in the
//! binary) once each, recording them in `monitor.schema_migrations`. Rerunning
//! is a no-op; an advisory lock keeps two runners from racing.

use anyhow::Context;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../sql/"]
#[include = "*.sql"]
struct SqlFiles;

/// One migration file.
#[derive(Debug, Clone)]
pub struct Migration {
    /// File name without `.sql`, e.g. `0001_ingest_schema`; sorts in apply order.
    pub version: String,
    /// The SQL text.
    pub sql: String,
}

/// All embedded migrations, in apply order.
pub fn migrations() -> Vec<Migration> {
    let mut names: Vec<String> = SqlFiles::iter().map(|n| n.to_string()).collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let file = SqlFiles::get(&name)?;
            Some(Migration {
                version: name.trim_end_matches(".sql").to_string(),
                sql: String::from_utf8_lossy(&file.data).into_owned(),
            })
        })
        .collect()
}

/// FNV-1a, enough to notice an edited migration.
fn checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Applies what is missing; returns the versions applied by this call.
pub async fn run(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    client
        .batch_execute(
            "set client_min_messages = warning;
             create schema if not exists monitor;
             create table if not exists monitor.schema_migrations (
                 version text primary key,
                 checksum text not null,
                 applied_at timestamptz not null default now());",
        )
        .await
        .context("creating monitor.schema_migrations")?;
    // Serialize concurrent runners (several replicas starting at once).
    client
        .execute("select pg_advisory_lock(7406913)", &[])
        .await?;
    let result = apply_missing(client).await;
    client
        .execute("select pg_advisory_unlock(7406913)", &[])
        .await?;
    result
}

async fn apply_missing(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    let mut applied = Vec::new();
    for m in migrations() {
        let sum = checksum(&m.sql);
        let row = client
            .query_opt(
                "select checksum from monitor.schema_migrations where version = $1",
                &[&m.version],
            )
            .await?;
        if let Some(row) = row {
            let recorded: String = row.get(0);
            if recorded != sum {
                tracing::warn!(version = %m.version, "migration changed since it was applied; not re-applied");
            }
            continue;
        }
        // Roles are cluster-wide: migrations of several databases of one
        // cluster can race on them ("tuple concurrently updated", duplicate
        // role). The transaction rolls back; try again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match apply_one(client, &m, &sum).await {
                Ok(()) => break,
                Err(e) if attempt < 8 && is_catalog_race(&e) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("applying migration {}", m.version))
                }
            }
        }
        tracing::info!(version = %m.version, "migration applied");
        applied.push(m.version);
    }
    Ok(applied)
}

async fn apply_one(
    client: &mut tokio_postgres::Client,
    m: &Migration,
    sum: &str,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&m.sql).await?;
    tx.execute(
        "insert into monitor.schema_migrations (version, checksum) values ($1, $2)",
        &[&m.version, &sum],
    )
    .await?;
    tx.commit().await
}

fn is_catalog_race(e: &tokio_postgres::Error) -> bool {
    let code = e.code().map(|c| c.code());
    matches!(
        code,
        Some("XX000") | Some("42710") | Some("23505") | Some("40001") | Some("40P01")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_embedded_in_order() {
        let all = migrations();
        assert!(all.len() >= 4);
        let versions: Vec<_> = all.iter().map(|m| m.version.clone()).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        assert_eq!(versions, sorted);
        assert!(versions[0].starts_with("0001"));
    }

    #[test]
    fn checksum_changes_with_text() {
        // Published FNV-1a 64-bit test vectors (the FNV reference, isthe.com/chongo/tech/comp/fnv).
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_eq!(checksum("a"), "af63dc4c8601ec8c");
        assert_eq!(checksum("foobar"), "85944171f73967e8");
        assert_ne!(checksum("a"), checksum("b"));
    }
}
