//! Throwaway PostgreSQL cluster for demos, integration tests and chaos tests.
//!
//! [`TempCluster::start`] runs `initdb` and `pg_ctl` from the machine's own
//! PostgreSQL installation into a fresh private temporary directory, starts
//! the server on a free TCP port of 127.0.0.1 (its Unix socket lives in the
//! data directory, so it never clashes with a system server) and trusts every
//! local connection as the `postgres` superuser. Nothing outside that
//! directory is touched.
//!
//! PostgreSQL refuses to run as root: when this process is root, `initdb` and
//! `pg_ctl` run as the `postgres` OS user (through `runuser`, or `setpriv`
//! where `runuser` is missing) and the directory is handed to that user.
//!
//! [`TempCluster::stop`] shuts the server down and removes the directory;
//! dropping a [`TempCluster`] does the same on a best-effort basis
//! (immediate shutdown). Durability is traded for speed (`fsync=off`), but
//! commits stay synchronous, so a committed row is visible to every reader at
//! once, as on a real server.
//!
//! Length (about 540 lines, over the ~500 guide): one type's lifecycle
//! (start, restart, stop, drop) and the host probing it needs (binaries,
//! OS user, ports); moved whole from the server crate in issue 13, a split
//! into `pgtemp/{mod,host}.rs` is the natural next step.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use anyhow::{anyhow, bail, Context, Result};

/// Superuser name given to `initdb -U`, and used by the connection URLs.
const SUPERUSER: &str = "postgres";
/// OS user the server runs as when this process is root.
const OS_USER: &str = "postgres";
/// Environment variable that names the directory holding `initdb` and `pg_ctl`.
const BIN_ENV: &str = "INGESTWATCH_PG_BIN";
/// Server log file, inside the data directory.
const LOG_FILE: &str = "postgres.log";
/// How many free ports are tried when the chosen one is taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// Seconds `pg_ctl` waits for a start, stop or restart to complete.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// Libpq variables that could redirect the tools away from our cluster.
const PG_ENV: [&str; 6] = [
    "PGDATA",
    "PGPORT",
    "PGHOST",
    "PGUSER",
    "PGDATABASE",
    "PGOPTIONS",
];

/// A private PostgreSQL cluster in a temporary directory, listening on
/// 127.0.0.1 only, with trust authentication for the `postgres` superuser.
///
/// Stop it with [`TempCluster::stop`]; dropping it stops it too (immediate
/// shutdown) and removes its directory.
#[derive(Debug)]
pub struct TempCluster {
    /// Owns the data directory; `None` once [`TempCluster::stop`] removed it.
    dir: Option<tempfile::TempDir>,
    /// Data directory (also the Unix socket directory and the log's home).
    data: PathBuf,
    /// Directory holding `initdb` and `pg_ctl`.
    bin: PathBuf,
    /// TCP port on 127.0.0.1.
    port: u16,
    /// Command prefix that runs a tool as the `postgres` OS user (root only).
    run_as: Vec<OsString>,
    /// `fsync` setting the server runs with (off unless [`TempCluster::start_with_fsync`]).
    fsync: bool,
}

impl TempCluster {
    /// Starts a private cluster from the machine's installed binaries.
    ///
    /// The binaries come from `$INGESTWATCH_PG_BIN`, else from
    /// `pg_config --bindir` when that holds `initdb` and `pg_ctl`, else from
    /// the highest `/usr/lib/postgresql/*/bin`. `initdb` runs with trust
    /// authentication, superuser `postgres`, UTF-8 and no locale; the server
    /// listens on a free port of 127.0.0.1 with `fsync=off` and
    /// `max_connections=300`, and logs to `postgres.log` in its data
    /// directory. As root, the tools run as the `postgres` OS user; it is an
    /// error if there is none.
    pub async fn start() -> Result<TempCluster> {
        Self::start_with_fsync(false).await
    }

    /// Like [`TempCluster::start`], with `fsync` on or off (benchmarks of the
    /// write path measure both: with fsync on every commit waits for its WAL
    /// flush, as on a durable server).
    pub async fn start_with_fsync(fsync: bool) -> Result<TempCluster> {
        let bin = find_bin_dir().await?;
        let run_as = if effective_uid()? == 0 {
            switch_user_prefix()?
        } else {
            Vec::new()
        };
        let dir = tempfile::Builder::new()
            .prefix("ingestwatch-pg-")
            .tempdir_in(std::env::temp_dir())
            .context("creating the cluster's temporary directory")?;
        let data = dir.path().to_path_buf();
        if data.to_string_lossy().contains(['\'', '"', '\\']) {
            bail!(
                "temporary directory {} has a quote or backslash in its path",
                data.display()
            );
        }
        prepare_dir(&data, !run_as.is_empty())?;
        let mut cluster = TempCluster {
            dir: Some(dir),
            data,
            bin,
            port: 0,
            run_as,
            fsync,
        };

        let data_arg = cluster.data.clone().into_os_string();
        cluster
            .run_tool(
                "initdb",
                [
                    OsStr::new("-D"),
                    &data_arg,
                    OsStr::new("-A"),
                    OsStr::new("trust"),
                    OsStr::new("-U"),
                    OsStr::new(SUPERUSER),
                    OsStr::new("--no-sync"),
                    OsStr::new("-E"),
                    OsStr::new("UTF8"),
                    OsStr::new("--no-locale"),
                ],
            )
            .await?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            cluster.port = free_port()?;
            let log_before = cluster.read_log().len();
            match cluster.pg_ctl_start("start").await {
                Ok(()) => break,
                Err(e) => {
                    cluster.stop_immediate_async().await;
                    let log = cluster.read_log();
                    let new_log = log.get(log_before..).unwrap_or(&log);
                    let port_taken = new_log.contains("could not bind")
                        || new_log.contains("Address already in use");
                    if port_taken && attempt < START_ATTEMPTS {
                        tracing::debug!(
                            port = cluster.port,
                            "port taken meanwhile; trying another"
                        );
                        continue;
                    }
                    return Err(e.context(format!(
                        "starting the temporary cluster on port {}; server log:\n{}",
                        cluster.port,
                        tail(new_log, 20)
                    )));
                }
            }
        }
        tracing::info!(
            port = cluster.port,
            data_dir = %cluster.data.display(),
            bin = %cluster.bin.display(),
            "temporary PostgreSQL cluster started"
        );
        Ok(cluster)
    }

    /// Connection URL of the `postgres` database as the superuser:
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn admin_url(&self) -> String {
        self.url_for("postgres")
    }

    /// Connection URL of database `dbname` as the `postgres` superuser.
    pub fn url_for(&self, dbname: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port,
            percent_encode(dbname)
        )
    }

    /// TCP port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Data directory of the cluster (removed by [`TempCluster::stop`] or on drop).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Stops the server (`pg_ctl stop -m fast`) and removes the data directory.
    pub async fn stop(mut self) -> Result<()> {
        let data_arg = self.data.clone().into_os_string();
        self.run_tool(
            "pg_ctl",
            [
                OsStr::new("stop"),
                OsStr::new("-D"),
                &data_arg,
                OsStr::new("-m"),
                OsStr::new("fast"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new(PG_CTL_TIMEOUT_SECS),
            ],
        )
        .await
        .context("stopping the temporary cluster")?;
        if let Some(dir) = self.dir.take() {
            dir.close()
                .with_context(|| format!("removing {}", self.data.display()))?;
        }
        tracing::info!(
            port = self.port,
            "temporary PostgreSQL cluster stopped and removed"
        );
        Ok(())
    }

    /// Restarts the server in place (`pg_ctl restart -m fast`), on the same
    /// port and with the same settings. Every open connection is cut.
    pub async fn restart(&self) -> Result<()> {
        self.pg_ctl_start("restart")
            .await
            .with_context(|| format!("restarting the temporary cluster on port {}", self.port))?;
        tracing::info!(port = self.port, "temporary PostgreSQL cluster restarted");
        Ok(())
    }

    /// `pg_ctl start` or `pg_ctl restart` (`-m fast`) with this cluster's settings.
    async fn pg_ctl_start(&self, action: &str) -> Result<()> {
        let data_arg = self.data.clone().into_os_string();
        let log_arg = self.data.join(LOG_FILE).into_os_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k '{}' -c fsync={} -c max_connections=300",
            self.port,
            self.data.display(),
            if self.fsync { "on" } else { "off" }
        );
        let mut args: Vec<&OsStr> = vec![OsStr::new(action)];
        if action == "restart" {
            args.extend([OsStr::new("-m"), OsStr::new("fast")]);
        }
        args.extend([
            OsStr::new("-D"),
            &data_arg,
            OsStr::new("-l"),
            &log_arg,
            OsStr::new("-w"),
            OsStr::new("-t"),
            OsStr::new(PG_CTL_TIMEOUT_SECS),
            OsStr::new("-o"),
            OsStr::new(&options),
        ]);
        self.run_tool("pg_ctl", args).await.map(drop)
    }

    /// Best-effort `pg_ctl stop -m immediate` after a failed start.
    async fn stop_immediate_async(&self) {
        if !self.data.join("postmaster.pid").exists() {
            return;
        }
        let data_arg = self.data.clone().into_os_string();
        let args = [
            OsStr::new("stop"),
            OsStr::new("-D"),
            &data_arg,
            OsStr::new("-m"),
            OsStr::new("immediate"),
            OsStr::new("-w"),
        ];
        if let Err(e) = self.run_tool("pg_ctl", args).await {
            tracing::debug!(error = %e, "immediate stop after a failed start");
        }
    }

    /// A `std` command for `tool` from the bin dir, run as the right OS user,
    /// in the data directory, without libpq variables that could mislead it.
    fn std_command(&self, tool: &str) -> std::process::Command {
        let exe = self.bin.join(tool);
        let mut cmd = match self.run_as.split_first() {
            Some((switcher, prefix_args)) => {
                let mut cmd = std::process::Command::new(switcher);
                cmd.args(prefix_args).arg(&exe);
                cmd
            }
            None => std::process::Command::new(&exe),
        };
        cmd.current_dir(&self.data).stdin(Stdio::null());
        for var in PG_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `tool args…`, failing with its exit status, stderr and stdout.
    async fn run_tool<I, S>(&self, tool: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let shown = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = tokio::process::Command::from(self.std_command(tool));
        cmd.args(&args).kill_on_drop(true);
        let out = cmd
            .output()
            .await
            .with_context(|| format!("running {tool} from {}", self.bin.display()))?;
        if !out.status.success() {
            return Err(anyhow!(
                "`{tool} {shown}` failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout_suffix(&out.stdout)
            ));
        }
        Ok(out)
    }

    /// The server log so far (empty if unreadable).
    fn read_log(&self) -> String {
        std::fs::read(self.data.join(LOG_FILE))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.dir.is_none() || !self.data.join("postmaster.pid").exists() {
            return;
        }
        let mut cmd = self.std_command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT_SECS])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => tracing::warn!(
                port = self.port,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "could not stop the temporary cluster on drop"
            ),
            Err(e) => tracing::warn!(port = self.port, error = %e, "could not run pg_ctl on drop"),
        }
        // `dir` (a TempDir) is dropped after this and removes the directory.
    }
}

/// Finds the directory holding `initdb` and `pg_ctl`.
async fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_ENV).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_tools(&dir) {
            return Ok(dir);
        }
        bail!("{BIN_ENV}={} holds no initdb and pg_ctl", dir.display());
    }
    if let Ok(out) = tokio::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .await
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_tools(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let bin = entry.path().join("bin");
            let Some(version) = entry.file_name().to_str().and_then(parse_version) else {
                continue;
            };
            if has_tools(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, dir)| dir).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server binaries found: set {BIN_ENV}, put pg_config on PATH, \
             or install a server package (e.g. postgresql on Debian)"
        )
    })
}

/// Whether `dir` holds both `initdb` and `pg_ctl`.
fn has_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// "15" → [15], "9.6" → [9, 6]; `None` for names that are not versions.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

/// Effective uid of this process, from `/proc/self/status` (0 = root).
fn effective_uid() -> Result<u32> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| anyhow!("no effective uid in /proc/self/status"))
}

/// Uid and gid of OS user `name`, from `/etc/passwd`.
fn lookup_user(name: &str) -> Result<Option<(u32, u32)>> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let mut fields = line.split(':');
        if fields.next() != Some(name) {
            continue;
        }
        let uid = fields.nth(1).and_then(|f| f.parse().ok());
        let gid = fields.next().and_then(|f| f.parse().ok());
        return match (uid, gid) {
            (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
            _ => Err(anyhow!("malformed /etc/passwd entry for {name}")),
        };
    }
    Ok(None)
}

/// Command prefix that runs a program as the `postgres` OS user (for root).
fn switch_user_prefix() -> Result<Vec<OsString>> {
    if lookup_user(OS_USER)?.is_none() {
        bail!(
            "running as root, and PostgreSQL refuses to: no `{OS_USER}` OS user exists to run \
             the temporary cluster as (install the postgresql package, or run as a non-root user)"
        );
    }
    if let Some(runuser) = find_program("runuser") {
        return Ok(vec![
            runuser.into(),
            "-u".into(),
            OS_USER.into(),
            "--".into(),
        ]);
    }
    if let Some(setpriv) = find_program("setpriv") {
        let (uid, gid) = lookup_user(OS_USER)?.ok_or_else(|| anyhow!("no `{OS_USER}` user"))?;
        return Ok(vec![
            setpriv.into(),
            format!("--reuid={uid}").into(),
            format!("--regid={gid}").into(),
            "--clear-groups".into(),
            "--".into(),
        ]);
    }
    bail!("running as root, but neither runuser nor setpriv is there to switch to `{OS_USER}`")
}

/// `program` on PATH or in the sbin directories (which root's PATH may lack).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Mode 0700, and owned by the `postgres` user when we run the tools as it.
fn prepare_dir(dir: &Path, chown_to_postgres: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    if chown_to_postgres {
        let (uid, gid) = lookup_user(OS_USER)?.ok_or_else(|| anyhow!("no `{OS_USER}` OS user"))?;
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .with_context(|| format!("chown {OS_USER} {}", dir.display()))?;
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free TCP port")?;
    Ok(listener
        .local_addr()
        .context("finding a free TCP port")?
        .port())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// "; stdout: …" when a failed tool printed something there.
fn stdout_suffix(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; stdout: {}", tail(text, 20))
    }
}
