//! Read replica (issue 14). The first test needs no replication: the
//! "replica" is a second database on the same server under another URL,
//! holding different rows, so every answer shows which database it came
//! from — lists, drill-downs, trends and exports read there, live figures
//! stay on the primary, `/readyz` and the metrics report it, and a replica
//! that goes away sends the reads back to the primary. The second runs a
//! real hot standby (`pg_basebackup -R`, streaming) of a throwaway primary:
//! reads go there, a paused replay makes it lag past the limit and the reads
//! fall back until it catches up, and the standby given as `DATABASE_URL`
//! is refused at start-up in one line.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

async fn readyz(server: &TestServer) -> serde_json::Value {
    let r = server
        .http
        .get(format!("http://{}/readyz", server.addr))
        .send()
        .await
        .expect("readyz");
    serde_json::from_str(&r.text().await.unwrap_or_default()).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_reads_go_to_the_replica_live_figures_stay_on_the_primary_and_a_lost_replica_falls_back(
) {
    let primary = TestDb::new().await;
    let replica = TestDb::new().await;
    let (p_src, r_src) = (
        primary.source("on-primary").await,
        replica.source("on-replica").await,
    );
    let (pp, rp) = (Pipeline::new(&primary).await, Pipeline::new(&replica).await);
    let p_run = pp.run(p_src).await;
    let p_ids = pp.records(p_run, p_src, 5).await;
    let r_run = rp.run(r_src).await;
    let r_ids = rp.records(r_run, r_src, 7).await;

    let mut opts = options();
    opts.replica_database_url = Some(replica.reader_url.clone());
    let server = TestServer::start_at(
        &primary.reader_url,
        opts,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;

    wait_for("replica in use", T, || async {
        readyz(&server).await["replica"]["reads_from"] == "replica"
    })
    .await;
    let ready = readyz(&server).await;
    assert_eq!(ready["replica"]["healthy"], true, "{ready}");
    assert_eq!(ready["replica"]["lag_ms"], 0, "{ready}");
    assert_eq!(ready["replica"]["standby"], false, "{ready}");
    assert_eq!(server.metric("ingestwatch_replica_healthy").await, 1.0);

    // Lists, drill-downs, exports and trends answer from the replica.
    let (s, body) = server.get("/api/records?limit=100").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(7), "{body}");
    let (s, body) = server.get("/api/sources").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.to_string().contains("on-replica"), "{body}");
    assert!(!body.to_string().contains("on-primary"), "{body}");
    let (s, body) = server.get(&format!("/api/runs/{r_run}")).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.to_string().contains("on-replica"), "{body}");
    let (s, body) = server.get(&format!("/api/records/{}", r_ids[0])).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, csv) = server.get_raw("/api/export/records.csv").await;
    assert_eq!(s, 200, "{csv}");
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    let (s, body) = server
        .get("/api/trends?metric=received&bucket=minute&source=on-replica")
        .await;
    assert_eq!(s, 200, "trends read the replica's sources: {body}");
    let (s, body) = server
        .get("/api/trends?metric=received&bucket=minute&source=on-primary")
        .await;
    assert_ne!(
        s, 200,
        "the primary's source is unknown on the replica: {body}"
    );

    // Live figures come from the primary's outbox.
    server.wait_caught_up(&primary).await;
    let k = server.kpis("5m").await;
    assert_eq!(
        k["sources"]["on-primary"]["received"].as_i64(),
        Some(5),
        "{k}"
    );
    assert!(k["sources"]["on-replica"].is_null(), "{k}");

    // The replica goes away: reads fall back to the primary.
    replica
        .client
        .batch_execute("select 1")
        .await
        .expect("replica alive");
    let admin = ingestwatch_server::db::connect(&admin_url())
        .await
        .expect("admin");
    admin
        .batch_execute(&format!("drop database {} with (force)", replica.name))
        .await
        .expect("drop the replica");
    wait_for("fallback to the primary", T, || async {
        readyz(&server).await["replica"]["reads_from"] == "primary"
    })
    .await;
    let ready = readyz(&server).await;
    assert_eq!(
        ready["ready"], true,
        "a lost replica does not make the server unready: {ready}"
    );
    assert_eq!(ready["replica"]["healthy"], false, "{ready}");
    assert_eq!(server.metric("ingestwatch_replica_healthy").await, 0.0);
    let (s, body) = server.get("/api/records?limit=100").await;
    assert_eq!(s, 200, "{body}");
    let ids: Vec<i64> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect();
    let mut want = p_ids.clone();
    want.sort_unstable();
    let mut got = ids.clone();
    got.sort_unstable();
    assert_eq!(got, want, "records from the primary after the fallback");
    server.stop().await;
}

/// A hot standby of `primary_port` made with `pg_basebackup -R`, streaming.
struct Standby {
    port: u16,
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    root: bool,
    _dir: tempfile::TempDir,
}

fn pg_bin() -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("pg_basebackup").is_file())
        .collect();
    dirs.sort();
    dirs.pop().expect("pg_basebackup")
}

impl Standby {
    fn tool(&self, name: &str) -> std::process::Command {
        let exe = self.bin.join(name);
        if self.root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        }
    }

    fn run(&self, mut cmd: std::process::Command, what: &str) {
        let out = cmd.output().expect(what);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(primary_port: u16) -> Standby {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("standby dir");
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if root {
            let status = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let s = Standby {
            port,
            bin: pg_bin(),
            data: dir.path().join("data"),
            root,
            _dir: dir,
        };
        let mut cmd = s.tool("pg_basebackup");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &primary_port.to_string(),
            "-U",
            "postgres",
        ])
        .arg("-D")
        .arg(&s.data)
        .args(["-R", "-X", "stream", "--no-sync", "--checkpoint=fast"]);
        s.run(cmd, "pg_basebackup");
        let mut cmd = s.tool("pg_ctl");
        cmd.arg("-D")
            .arg(&s.data)
            .arg("-l")
            .arg(s.data.join("standby.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k '{}' -c hot_standby=on -c fsync=off -c max_connections=300",
                s.data.display()
            ))
            .arg("start");
        let out = cmd.output().expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start (standby): {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(s.data.join("standby.log")).unwrap_or_default()
        );
        s
    }

    fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = cmd.output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_standby_serves_heavy_reads_until_it_lags_and_is_refused_as_the_primary() {
    use ingestwatch_sim::pgtemp::TempCluster;
    let primary = TempCluster::start().await.expect("primary");
    let admin = ingestwatch_server::db::connect(&primary.admin_url())
        .await
        .expect("admin");
    admin
        .batch_execute("create database iw_rep")
        .await
        .expect("db");
    let owner_url = primary.url_for("iw_rep");
    let mut owner = ingestwatch_server::db::connect(&owner_url)
        .await
        .expect("owner");
    ingestwatch_server::db::migrate::run(&mut owner)
        .await
        .expect("migrate");
    let standby = Standby::start(primary.port());
    let standby_admin = ingestwatch_server::db::connect(&standby.url("postgres", "iw_rep"))
        .await
        .expect("standby connection");
    let in_recovery: bool = standby_admin
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .expect("recovery")
        .get(0);
    assert!(in_recovery, "the standby is a standby");

    let reader = |port: u16| format!("postgres://ingestwatch_reader@127.0.0.1:{port}/iw_rep");
    let mut opts = options();
    opts.replica_database_url = Some(standby.url("ingestwatch_reader", "iw_rep"));
    opts.replica_max_lag_ms = 1_000;
    let server = TestServer::start_at(
        &reader(primary.port()),
        opts,
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;
    let pipe = Pipeline { client: owner };
    let src: i64 = pipe
        .client
        .query_one(
            "insert into ingest.sources (name, kind, expected_interval) values ('crm', 'api', '1 minute') returning id",
            &[],
        )
        .await
        .expect("source")
        .get(0);
    let run = pipe.run(src).await;
    pipe.records(run, src, 5).await;

    let records = |server: &TestServer| {
        let (http, url, token) = (
            server.http.clone(),
            format!("http://{}/api/records?limit=100", server.addr),
            server.token.clone(),
        );
        async move {
            let body: serde_json::Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("records")
                .json()
                .await
                .expect("json");
            body["items"].as_array().map(Vec::len).unwrap_or(0)
        }
    };
    wait_for("reads from the streaming standby", T, || async {
        let r = readyz(&server).await;
        r["replica"]["reads_from"] == "replica" && r["replica"]["standby"] == true
    })
    .await;
    wait_for("rows replicated and read there", T, || async {
        records(&server).await == 5
    })
    .await;

    // Replay paused: the standby falls behind, reads go to the primary.
    standby_admin
        .batch_execute("select pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    pipe.records(run, src, 3).await;
    wait_for("fallback while the standby lags", T, || async {
        let r = readyz(&server).await;
        r["replica"]["reads_from"] == "primary" && r["replica"]["lag_ms"].as_i64() > Some(1_000)
    })
    .await;
    assert_eq!(
        records(&server).await,
        8,
        "the primary's rows during the lag"
    );
    assert!(server.metric("ingestwatch_replica_lag_seconds").await > 1.0);

    // Replay resumed: caught up, the standby serves again.
    standby_admin
        .batch_execute("select pg_wal_replay_resume()")
        .await
        .expect("resume replay");
    wait_for("the standby back in use", T, || async {
        readyz(&server).await["replica"]["reads_from"] == "replica"
    })
    .await;
    assert_eq!(records(&server).await, 8);
    server.stop().await;

    // The standby given as the primary: refused at start-up, in one line.
    let out = tokio::process::Command::new(common::bin::ingestwatch())
        .args(["serve", "--listen", "127.0.0.1:0", "--auth-disabled"])
        .env("DATABASE_URL", standby.url("ingestwatch_reader", "iw_rep"))
        .env_remove("LISTEN_DATABASE_URL")
        .kill_on_drop(true)
        .output()
        .await
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL reaches a read-only standby")
            && stderr.contains("REPLICA_DATABASE_URL"),
        "{stderr}"
    );
    drop(standby_admin);
    drop(standby);
    drop(admin);
    primary.stop().await.expect("stop primary");
}
