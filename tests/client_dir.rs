//! `--client-dir` (development) serves only files under its directory, after
//! normalisation (issue 16.10): absolute paths (`/%2Fetc%2Fpasswd`), `..`
//! in any spelling and symbolic links that lead outside are 404.

mod common;

use common::*;

async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let r = server
        .http
        .get(format!("http://{}{}", server.addr, path))
        .send()
        .await
        .expect("http");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_dir_serves_only_files_under_it() {
    let db = TestDb::new().await;
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("client");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::write(dir.join("index.html"), "<!doctype html>client").expect("index");
    std::fs::write(dir.join("src/app.js"), "export {}").expect("js");
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "TOP SECRET").expect("secret");
    std::os::unix::fs::symlink(&secret, dir.join("link.txt")).expect("symlink");

    let mut opts = options();
    opts.client_dir = Some(dir.clone());
    let server = TestServer::start_with(&db, opts).await;

    assert_eq!(
        get(&server, "/").await,
        (200, "<!doctype html>client".into())
    );
    assert_eq!(get(&server, "/src/app.js").await, (200, "export {}".into()));
    assert_eq!(get(&server, "/src/./app.js").await.0, 200);

    let abs = secret.display().to_string().replace('/', "%2F");
    for path in [
        format!("/{abs}"),
        format!("/src/{abs}"),
        "/%2Fproc%2Fself%2Fenviron".to_string(),
        "/%2Fetc%2Fpasswd".to_string(),
        "/..%2Fsecret.txt".to_string(),
        "/src/..%2F..%2Fsecret.txt".to_string(),
        "/%2E%2E/secret.txt".to_string(),
        "/link.txt".to_string(),
    ] {
        let (status, body) = get(&server, &path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("TOP SECRET"), "{path}");
        assert!(!body.contains("PATH="), "{path}");
    }
    server.stop().await;
}
