//! Client TLS against the real binary: a CA, a server and client certificates made here with
//! rcgen; `etcd-client` and etcdctl connect with a client certificate, and a client without
//! one (or with one from another CA) is refused under `--client-cert-auth`. `--auto-tls`
//! writes its certificate into the data dir and reuses it on restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{fails, free_port, ok, Member, LAUNCHER};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// PEM files of one test's certificates.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    /// Signed by the CA, Common Name "alice".
    client: (PathBuf, PathBuf),
    /// Signed by a CA the server does not trust.
    stranger: (PathBuf, PathBuf),
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (Issuer::new(params, key), pem)
}

/// A leaf certificate for `sans` with Common Name `cn`, signed by `issuer`: (cert, key) PEM.
fn leaf(issuer: &Issuer<'static, KeyPair>, cn: &str, sans: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    (params.signed_by(&key, issuer).expect("leaf certificate").pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let pair = |name: &str, (cert, key): (String, String)| {
            (write(&format!("{name}.crt"), &cert), write(&format!("{name}.key"), &key))
        };
        let (issuer, ca_pem) = ca("metastore test CA");
        let (other, _) = ca("another CA");
        Pki {
            ca: write("ca.crt", &ca_pem),
            server: pair("server", leaf(&issuer, "server", &["127.0.0.1", "localhost"])),
            client: pair("client", leaf(&issuer, "alice", &[])),
            stranger: pair("stranger", leaf(&other, "mallory", &[])),
            _dir: dir,
        }
    }

    fn server_flags(&self) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        vec![
            "--cert-file".into(),
            p(&self.server.0),
            "--key-file".into(),
            p(&self.server.1),
            "--trusted-ca-file".into(),
            p(&self.ca),
            "--client-cert-auth".into(),
        ]
    }

    fn tls(&self, identity: Option<&(PathBuf, PathBuf)>) -> ConnectOptions {
        let read = |p: &Path| std::fs::read(p).expect("read PEM");
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&self.ca)));
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(read(cert), read(key)));
        }
        ConnectOptions::new().with_tls(tls).with_connect_timeout(std::time::Duration::from_secs(5))
    }
}

fn start(pki: &Pki) -> Member {
    let flags = pki.server_flags();
    Member::start_https(&flags.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A put then a get through `client`, or the first error.
async fn put_get(client: Result<Client, etcd_client::Error>) -> Result<Vec<u8>, etcd_client::Error> {
    let mut client = client?;
    client.put("k", "v", None).await?;
    let resp = client.get("k", None).await?;
    Ok(resp.kvs().first().map(|kv| kv.value().to_vec()).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_from_the_trusted_ca_is_served() {
    let pki = Pki::new();
    let m = start(&pki);
    let client = Client::connect([m.endpoint()], Some(pki.tls(Some(&pki.client)))).await;
    assert_eq!(put_get(client).await.expect("a client with a certificate is served"), b"v");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_without_a_trusted_certificate_are_refused_under_client_cert_auth() {
    let pki = Pki::new();
    let m = start(&pki);
    let without = Client::connect([m.endpoint()], Some(pki.tls(None))).await;
    assert!(put_get(without).await.is_err(), "a client without a certificate must be refused");
    let stranger = Client::connect([m.endpoint()], Some(pki.tls(Some(&pki.stranger)))).await;
    assert!(put_get(stranger).await.is_err(), "a certificate from another CA must be refused");
    assert!(m.log().contains("rejected connection from"), "refusals are logged:\n{}", m.log());
}

#[test]
fn etcdctl_with_cacert_cert_and_key() {
    let pki = Pki::new();
    let m = start(&pki);
    let p = |p: &Path| p.display().to_string();
    let tls = [
        format!("--cacert={}", p(&pki.ca)),
        format!("--cert={}", p(&pki.client.0)),
        format!("--key={}", p(&pki.client.1)),
    ];
    let with = |rest: &[&'static str]| tls.iter().map(String::as_str).chain(rest.iter().copied()).collect::<Vec<_>>();
    assert_eq!(ok(m.etcdctl(&with(&["put", "a", "1"]))), "OK\n");
    assert_eq!(ok(m.etcdctl(&with(&["get", "a", "--print-value-only"]))), "1\n");
    let skip_verify = ["--insecure-skip-tls-verify", &tls[1], &tls[2], "get", "a", "--print-value-only"];
    assert_eq!(ok(m.etcdctl(&skip_verify)), "1\n");
    let no_cert = [tls[0].as_str(), "--dial-timeout=1s", "--command-timeout=2s", "get", "a"];
    fails(m.etcdctl(&no_cert));
}

#[test]
fn auto_tls_writes_a_certificate_and_reuses_it() {
    let mut m = Member::start_https(&["--auto-tls"]);
    let cert_path = m.data_dir.join("fixtures").join("client").join("cert.pem");
    let first = std::fs::read(&cert_path).expect("auto TLS certificate in <data-dir>/fixtures/client");
    assert_eq!(ok(m.etcdctl(&["--insecure-transport=false", "--insecure-skip-tls-verify", "put", "a", "1"])), "OK\n");
    m.kill();
    m.spawn();
    assert_eq!(std::fs::read(&cert_path).expect("certificate"), first, "a restart reuses the certificate");
    assert_eq!(
        ok(m.etcdctl(&["--insecure-transport=false", "--insecure-skip-tls-verify", "get", "a", "--print-value-only"])),
        "1\n"
    );
}

#[test]
fn https_client_url_without_certificate_is_refused_with_etcds_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("https://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(LAUNCHER)
        .args([common::BIN, "n1", &dir.path().join("data").display().to_string(), &url, &peer, &format!("n1={peer}")])
        .stdout(Stdio::null())
        .output()
        .expect("run the server");
    assert!(!out.status.success());
    let want =
        format!("TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with HTTPS scheme");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&want), "{}", String::from_utf8_lossy(&out.stderr));
}
