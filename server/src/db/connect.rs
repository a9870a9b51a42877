//! The one way a connection to PostgreSQL is opened: [`Target`] parses a URL
//! (TLS settings included, see [`super::tls`]) and [`connect_raw`] opens a
//! raw connection with it (LISTEN, rollup writer, alerts leader, `migrate`,
//! tools); the read pool is built from the same [`Target`].
//!
//! A failed connect becomes a [`ConnectError`]: one line saying what went
//! wrong in the newcomer's terms and which part of the URL to change (the
//! caller prefixes the setting's name, e.g. `DATABASE_URL: …`).

use std::time::Duration;

use tokio_postgres::{Client, Config, Socket};

use super::tls::{self, MakeRustls, SslMode, TlsSettings};

/// A raw connection's driver (poll it, or spawn it, for the client to work).
pub type Connection = tokio_postgres::Connection<Socket, tls::RustlsStream<Socket>>;

/// How long a connect may take before it is reported as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed connect or an unusable URL, explained in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

/// A parsed database URL: the driver's config plus the TLS connector.
#[derive(Clone, Debug)]
pub struct Target {
    /// tokio-postgres settings (host, user, …); tune before connecting.
    pub config: Config,
    /// The rustls connector for this URL's `sslmode` / `sslrootcert`.
    pub tls: MakeRustls,
    /// The TLS settings (for error messages).
    pub settings: TlsSettings,
}

impl Target {
    /// Parses `url`; the error never echoes the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<Target, ConnectError> {
        let (rest, settings) = tls::split_url(url).map_err(ConnectError)?;
        let mut config = rest.parse::<Config>().map_err(|e| {
            ConnectError(format!(
                "not a valid PostgreSQL URL ({e}); expected postgres://user:password@host:5432/dbname?sslmode=require"
            ))
        })?;
        config.ssl_mode(settings.mode.driver_mode());
        config.connect_timeout(CONNECT_TIMEOUT);
        let tls = tls::connector(&settings).map_err(ConnectError)?;
        Ok(Target {
            config,
            tls,
            settings,
        })
    }

    /// Opens a raw connection (the caller drives the [`Connection`]).
    pub async fn connect(&self) -> Result<(Client, Connection), ConnectError> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| ConnectError(explain(&e, &self.config, &self.settings)))
    }

    /// `host:port` of the first host (for messages).
    pub fn address(&self) -> String {
        address(&self.config)
    }
}

/// Opens a raw connection to `url` after `tune` adjusted the config
/// (application name, keepalives, session options). The caller drives the
/// returned [`Connection`] (spawn it, or poll it for notifications).
pub async fn connect_raw(
    url: &str,
    tune: impl FnOnce(&mut Config),
) -> Result<(Client, Connection), ConnectError> {
    let mut target = Target::parse(url)?;
    tune(&mut target.config);
    target.connect().await
}

fn address(cfg: &Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// One line for a failed connect: what happened and what to change.
pub fn explain(err: &tokio_postgres::Error, cfg: &Config, settings: &TlsSettings) -> String {
    use tokio_postgres::error::SqlState;
    let addr = address(cfg);
    let user = cfg.get_user().unwrap_or("(none)");
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD {
            format!("password authentication failed for user \"{user}\" at {addr}: fix the password (or user) in the URL")
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            format!(
                "{addr} refuses the connection: {} — check the user and database in the URL, and sslmode (some servers only accept TLS: sslmode=require)",
                db.message()
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            format!("{}: fix the database name in the URL", db.message())
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            format!(
                "{addr} has no connection slots left ({}): lower INGESTWATCH_POOL_SIZE or connect through a pooler",
                db.message()
            )
        } else {
            format!("{addr}: {} (SQLSTATE {})", db.message(), code.code())
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return explain_tls(tls, &addr, settings);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return explain_tls(tls, &addr, settings);
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return format!(
                        "cannot reach {addr} (connection refused): check the host and port in the URL and that PostgreSQL is running there"
                    )
                }
                std::io::ErrorKind::TimedOut => {
                    return format!(
                        "no answer from {addr} within {} s: check the host and port in the URL, and that a firewall or security group lets this machine in",
                        CONNECT_TIMEOUT.as_secs()
                    )
                }
                _ => {}
            }
            let text = io.to_string();
            if text.contains("lookup address") || text.contains("resolve") {
                return format!("host of {addr} not found ({text}): check the host in the URL");
            }
        }
        source = e.source();
    }
    let text = err.to_string();
    if text.contains("server does not support TLS") {
        return format!(
            "{addr} does not offer TLS, but sslmode={}: set sslmode=prefer or disable in the URL, or turn ssl on in the server",
            mode_name(settings.mode)
        );
    }
    let mut line = text;
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        let s = e.to_string();
        if !line.contains(&s) {
            line.push_str(": ");
            line.push_str(&s);
        }
        source = e.source();
    }
    format!("{addr}: {line}")
}

/// An error as one line (its causes joined by `: `), with a hint for the
/// database errors a newcomer meets: missing privileges and a read-only
/// standby.
pub fn one_line(err: &anyhow::Error) -> String {
    use tokio_postgres::error::SqlState;
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    let db = err
        .chain()
        .find_map(|e| e.downcast_ref::<tokio_postgres::Error>())
        .and_then(|e| e.as_db_error());
    if let Some(db) = db {
        if *db.code() == SqlState::INSUFFICIENT_PRIVILEGE {
            line.push_str(
                " — this role lacks the privilege: run `ingestwatch migrate` as the database owner \
                 (Supabase: the postgres role on the direct connection) and `serve` as ingestwatch_reader",
            );
        } else if *db.code() == SqlState::READ_ONLY_SQL_TRANSACTION {
            line.push_str(" — the URL reaches a read-only standby: point it at the primary");
        }
    }
    line
}

fn explain_tls(err: &rustls::Error, addr: &str, settings: &TlsSettings) -> String {
    use rustls::CertificateError as C;
    let ca = match &settings.root_cert {
        Some(tls::RootCert::File(p)) => format!("sslrootcert={}", p.display()),
        Some(tls::RootCert::System) => "sslrootcert=system".to_string(),
        None => "~/.postgresql/root.crt".to_string(),
    };
    match err {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "the certificate of {addr} is not signed by the CA in {ca}: set sslrootcert to the CA file of your provider (Supabase: the project's SSL certificate, RDS: the region's global-bundle.pem), or sslmode=require to encrypt without checking"
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            format!(
                "the certificate of {addr} is not issued for that host name: put the host name the certificate names in the URL, or use sslmode=verify-ca (checks the CA only)"
            )
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => format!(
            "the certificate of {addr} has expired: renew it on the server, or use sslmode=require to encrypt without checking"
        ),
        other => format!(
            "TLS with {addr} failed ({other}): check sslmode and sslrootcert in the URL"
        ),
    }
}

fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}
