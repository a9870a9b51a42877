//! A throwaway PostgreSQL cluster with `ssl = on` and a certificate from a
//! test CA made here (rcgen): the server certificate names `localhost` only,
//! so `127.0.0.1` is a wrong host name for `verify-full`. A second,
//! unrelated CA is there to be the wrong one.
#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use ingestwatch_sim::pgtemp::TempCluster;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A TLS cluster and its CA files.
pub struct SslCluster {
    pub cluster: TempCluster,
    /// PEM of the CA that signed the server certificate.
    pub ca: PathBuf,
    /// PEM of a CA that signed nothing here.
    pub other_ca: PathBuf,
    _dir: tempfile::TempDir,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("CA cert");
    (cert.pem(), Issuer::new(params, key))
}

impl SslCluster {
    pub async fn start() -> SslCluster {
        let cluster = TempCluster::start().await.expect("temp cluster");
        let dir = tempfile::tempdir().expect("pki dir");
        let (ca_pem, issuer) = ca("ingestwatch test CA");
        let (other_pem, _) = ca("some other CA");
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        let ca = dir.path().join("ca.pem");
        let other_ca = dir.path().join("other-ca.pem");
        std::fs::write(&ca, ca_pem).expect("write ca");
        std::fs::write(&other_ca, other_pem).expect("write other ca");

        // The key must belong to the server's OS user, mode 0600.
        let data = cluster.data_dir().to_path_buf();
        let meta = std::fs::metadata(&data).expect("data dir");
        for (name, body) in [
            ("server.crt", cert.pem()),
            ("server.key", key.serialize_pem()),
        ] {
            let path = data.join(name);
            std::fs::write(&path, body).expect("write server cert");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).expect("chown");
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).expect("write postgresql.conf");
        cluster.restart().await.expect("restart with ssl");
        SslCluster {
            cluster,
            ca,
            other_ca,
            _dir: dir,
        }
    }

    /// `postgres://postgres@{host}:{port}/{db}?{params}`.
    pub fn url(&self, host: &str, db: &str, params: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/{db}?{params}",
            self.cluster.port()
        )
    }

    /// The verify-full URL of `db` with the right CA.
    pub fn verified_url(&self, db: &str) -> String {
        self.url(
            "localhost",
            db,
            &format!("sslmode=verify-full&sslrootcert={}", self.ca.display()),
        )
    }

    pub async fn stop(self) {
        self.cluster.stop().await.expect("stop cluster");
    }
}
