//! The test databases: which PostgreSQL to use (DATABASE_URL, else
//! 127.0.0.1:5432, else a throwaway cluster), a fresh migrated database per
//! test, waiting for a condition, and killing the listener's backend.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ingestwatch_sim::pgtemp::TempCluster;

static ADMIN: OnceLock<String> = OnceLock::new();
static CLUSTER: OnceLock<TempCluster> = OnceLock::new();

/// Waits for `cond` (polled every 20 ms) for at most `limit`; panics with `what`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A URL of a role that may create databases.
pub fn admin_url() -> String {
    ADMIN
        .get_or_init(|| {
            if let Ok(u) = std::env::var("DATABASE_URL") {
                return u;
            }
            let local = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
            let reachable = std::thread::spawn({
                let local = local.clone();
                move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        ingestwatch_server::db::connect(&local)
                            .await
                            .ok()
                            .map(|_| ())
                    })
                }
            })
            .join()
            .ok()
            .flatten()
            .is_some();
            if reachable {
                return local;
            }
            let cluster = std::thread::spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(TempCluster::start())
                    .expect("starting a throwaway PostgreSQL")
            })
            .join()
            .expect("cluster thread");
            let url = cluster.admin_url();
            let _ = CLUSTER.set(cluster);
            url
        })
        .clone()
}

fn with_db(url: &str, db: &str, user: Option<&str>) -> String {
    let mut cfg: tokio_postgres::Config = url.parse().expect("admin url");
    cfg.dbname(db);
    if let Some(u) = user {
        cfg.user(u);
        cfg.password("");
    }
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().unwrap_or("postgres").to_string();
    let pw = cfg
        .get_password()
        .filter(|p| !p.is_empty())
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    format!("postgres://{user}{pw}@{host}:{port}/{db}")
}

/// One test's own database, migrated. Dropped (forcefully) at the end.
pub struct TestDb {
    pub name: String,
    /// Owner URL: the "pipeline" writes with it.
    pub url: String,
    /// Read-only role URL: the server connects with it.
    pub reader_url: String,
    pub client: tokio_postgres::Client,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = admin_url();
        let name = format!("iw_test_{}_{}", std::process::id(), rand::random::<u32>());
        let c = ingestwatch_server::db::connect(&admin)
            .await
            .expect("admin connection");
        c.batch_execute(&format!("create database {name}"))
            .await
            .expect("create database");
        let url = with_db(&admin, &name, None);
        let mut client = ingestwatch_server::db::connect(&url)
            .await
            .expect("test db connection");
        ingestwatch_server::db::migrate::run(&mut client)
            .await
            .expect("migrations");
        let reader = with_db(&admin, &name, Some("ingestwatch_reader"));
        // The suite exercises the server as the read-only role it runs as in
        // production: a cluster where that role cannot log in fails loudly.
        if let Err(e) = ingestwatch_server::db::connect(&reader).await {
            panic!(
                "the reader role ingestwatch_reader cannot log in to {name} ({e}); \
                 the tests need a PostgreSQL that lets it in (trust auth for local roles)"
            );
        }
        let reader_url = reader;
        TestDb {
            name,
            url,
            reader_url,
            client,
        }
    }

    pub async fn max_seq(&self) -> i64 {
        self.client
            .query_one("select coalesce(max(seq), 0) from monitor.events", &[])
            .await
            .expect("max seq")
            .get(0)
    }

    pub async fn all_seqs(&self) -> Vec<i64> {
        self.client
            .query("select seq from monitor.events order by seq", &[])
            .await
            .expect("seqs")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Committed seqs above `start`, in order (what a subscriber from `start` must get).
    pub async fn seqs_after(&self, start: i64) -> Vec<i64> {
        self.client
            .query(
                "select seq from monitor.events where seq > $1 order by seq",
                &[&start],
            )
            .await
            .expect("seqs")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub async fn source(&self, name: &str) -> i64 {
        self.client
            .query_one(
                "insert into ingest.sources (name, kind, expected_interval) values ($1, 'api', '1 minute')
                 on conflict (name) do update set name = excluded.name returning id",
                &[&name],
            )
            .await
            .expect("source")
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let c = ingestwatch_server::db::connect(&admin).await.ok()?;
                c.batch_execute(&format!("drop database if exists {name} with (force)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Terminates the listener's backend(s) in `client`'s database; returns the
/// pids signalled. A backend that is slow to exit can be signalled again by
/// the next call: count distinct pids.
pub async fn kill_listener(client: &tokio_postgres::Client) -> Vec<i32> {
    client
        .query(
            "with l as materialized (
               select pid from pg_stat_activity
                where application_name = $1 and datname = current_database())
             select pid from l where pg_terminate_backend(pid)",
            &[&ingestwatch_server::listen::APPLICATION_NAME],
        )
        .await
        .expect("terminate the listener")
        .iter()
        .map(|r| r.get(0))
        .collect()
}
