//! The read pool (REST handlers, subscriber catch-up, alert views), directly
//! to PostgreSQL or through a transaction pooler.
//!
//! tokio-postgres names every statement it prepares (`s1`, `s2`, …) and a
//! query is two round trips (parse, then bind and execute). A pooler in
//! transaction mode (PgBouncer before 1.21, Supavisor) may hand those two
//! round trips to different server connections, so named statements fail
//! there ("prepared statement s12 does not exist"), and it rejects the
//! `options` start-up parameter. With [`PoolerMode::Transaction`] every
//! checkout therefore runs inside one read-only transaction — the pooler
//! keeps a transaction on one server connection — opened at checkout with
//! the session settings as `set local`, and ended when the [`PoolClient`] is
//! dropped, before the connection goes back to the pool.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, PoolError, RecyclingMethod,
};

use super::Target;

/// What sits between the server and PostgreSQL on `DATABASE_URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PoolerMode {
    /// PostgreSQL itself, or a pooler in session mode.
    #[default]
    Session,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`,
    /// Supavisor / Supabase port 6543).
    Transaction,
}

/// The read pool (cheap to clone).
#[derive(Clone)]
pub struct Pool {
    inner: deadpool_postgres::Pool,
    /// Run at checkout in transaction mode (`begin …; set local …`).
    begin: Option<std::sync::Arc<str>>,
}

/// Builds the read pool. Every session is read-only with `statement_timeout`,
/// so nothing served over HTTP can write or hold locks for long.
pub fn pool(
    url: &str,
    size: usize,
    statement_timeout: Duration,
    mode: PoolerMode,
) -> anyhow::Result<Pool> {
    let Target {
        config: mut cfg,
        tls,
        ..
    } = Target::parse(url)?;
    let timeout_ms = statement_timeout.as_millis();
    cfg.application_name("ingestwatch");
    let begin = match mode {
        PoolerMode::Session => {
            cfg.options(format!(
                "-c statement_timeout={timeout_ms} -c default_transaction_read_only=on -c lock_timeout=2000"
            ));
            None
        }
        PoolerMode::Transaction => Some(
            format!(
                "begin isolation level repeatable read read only; \
                 set local statement_timeout = {timeout_ms}; set local lock_timeout = 2000"
            )
            .into(),
        ),
    };
    let mgr = Manager::from_config(
        cfg,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let inner = deadpool_postgres::Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the connection pool")?;
    Ok(Pool { inner, begin })
}

impl Pool {
    /// A connection (in transaction mode: inside its read-only transaction).
    pub async fn get(&self) -> Result<PoolClient, PoolError> {
        let obj = self.inner.get().await?;
        let in_tx = match &self.begin {
            Some(sql) => {
                if let Err(e) = obj.batch_execute(sql).await {
                    drop(Object::take(obj));
                    return Err(PoolError::Backend(e));
                }
                true
            }
            None => false,
        };
        Ok(PoolClient {
            obj: Some(obj),
            in_tx,
        })
    }

    /// Pool size and idle connections.
    pub fn status(&self) -> deadpool_postgres::Status {
        self.inner.status()
    }
}

/// A checked-out connection; derefs to the pooled client.
pub struct PoolClient {
    obj: Option<Object>,
    in_tx: bool,
}

impl PoolClient {
    /// The pooled object itself, for code that ends the transaction on its
    /// own (e.g. a streaming export's `rollback`).
    pub fn into_object(mut self) -> Object {
        self.obj.take().expect("present until dropped")
    }

    /// The pooled object (for functions written against deadpool's type).
    pub fn object_mut(&mut self) -> &mut Object {
        self.obj.as_mut().expect("present until dropped")
    }
}

/// Like deadpool's `Object`: derefs to its client wrapper (and so to the client).
impl Deref for PoolClient {
    type Target = ClientWrapper;
    fn deref(&self) -> &ClientWrapper {
        self.obj.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PoolClient {
    fn deref_mut(&mut self) -> &mut ClientWrapper {
        self.obj.as_mut().expect("present until dropped")
    }
}

impl Drop for PoolClient {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else { return };
        if !self.in_tx {
            return;
        }
        // End the checkout's transaction before anyone else gets the
        // connection; an unknown state keeps it out of the pool.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if obj.batch_execute("rollback").await.is_err() {
                        drop(Object::take(obj));
                    }
                });
            }
            Err(_) => drop(Object::take(obj)),
        }
    }
}
