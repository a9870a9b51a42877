//! A real PgBouncer (the Debian package; `scripts/test.sh` installs it) in
//! `pool_mode = transaction` in front of the test PostgreSQL, with a small
//! server pool so concurrent clients share server connections. It runs as
//! the `postgres` OS user when the tests run as root (PgBouncer refuses root).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Bouncer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("PgBouncer is not installed: `apt-get install pgbouncer` (scripts/test.sh installs it)")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Bouncer {
    /// PgBouncer on a free port forwarding every database to `host:port`.
    pub fn start(pg_host: &str, pg_port: u16) -> Bouncer {
        let dir = tempfile::tempdir().expect("bouncer dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let d = dir.path();
        std::fs::write(
            d.join("userlist.txt"),
            "\"postgres\" \"\"\n\"ingestwatch_reader\" \"\"\n",
        )
        .expect("userlist");
        std::fs::write(
            d.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={pg_host} port={pg_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = 3\nmax_client_conn = 500\nserver_tls_sslmode = disable\n\
                 logfile = {log}\npidfile = {pid}\n",
                users = d.join("userlist.txt").display(),
                log = d.join("pgbouncer.log").display(),
                pid = d.join("pgbouncer.pid").display(),
            ),
        )
        .expect("ini");
        let mut cmd = if is_root() {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            for f in ["userlist.txt", "pgbouncer.ini"] {
                std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
            }
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(binary());
            c
        } else {
            Command::new(binary())
        };
        let child = cmd
            .arg(d.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let b = Bouncer { port, child, dir };
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return b;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("PgBouncer did not start; log:\n{}", b.log());
    }

    /// `url` with its host and port replaced by this PgBouncer's.
    pub fn url(&self, url: &str) -> String {
        let rest = url.split_once('@').map(|(_, r)| r).expect("url with user@");
        let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
        let user = url
            .split_once("://")
            .and_then(|(_, r)| r.split_once('@'))
            .map(|(u, _)| u)
            .expect("user");
        format!("postgres://{user}@127.0.0.1:{}/{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // Our own child (runuser execs nothing else; killing it ends pgbouncer).
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}
