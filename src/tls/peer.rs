//! Peer TLS (etcd's `--peer-*` flags): the peer server's identity and client-CA check, and the
//! connector for `https://` peer URLs.
//!
//! * `--peer-cert-file` / `--peer-key-file`: the certificate served, and presented as a client.
//! * `--peer-trusted-ca-file`: the CA that peer certificates must chain to (both directions).
//! * `--peer-client-cert-auth`: the peer server requires a client certificate from that CA.
//! * `--peer-auto-tls`: a self-signed certificate generated at start; as in etcd, peers using
//!   auto TLS do not verify each other's certificates (the channel is encrypted, not
//!   authenticated).

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// TLS settings for the peer URLs.
#[derive(Clone)]
pub struct PeerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// `None`: accept any server certificate (auto TLS).
    ca_pem: Option<Vec<u8>>,
    client_cert_auth: bool,
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("peer TLS: {what}: {e}"))
}

impl PeerTls {
    /// From certificate files.
    pub fn from_files(cert: &str, key: &str, ca: Option<&str>, client_cert_auth: bool) -> Result<Self> {
        let read = |path: &str| std::fs::read(path).map_err(|e| tls_err(path, e));
        let ca_pem = ca.map(read).transpose()?;
        Ok(Self { cert_pem: read(cert)?, key_pem: read(key)?, ca_pem, client_cert_auth })
    }

    /// A self-signed certificate for `hosts` (etcd's `--peer-auto-tls`).
    pub fn auto(hosts: Vec<String>) -> Result<Self> {
        let certified = rcgen::generate_simple_self_signed(hosts).map_err(|e| tls_err("self-signed certificate", e))?;
        Ok(Self {
            cert_pem: certified.cert.pem().into_bytes(),
            key_pem: certified.signing_key.serialize_pem().into_bytes(),
            ca_pem: None,
            client_cert_auth: false,
        })
    }

    /// The peer server's TLS: this member's certificate, and under `--peer-client-cert-auth` a
    /// client certificate required from the trusted CA.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor> {
        let roots = self.ca_pem.clone().filter(|_| self.client_cert_auth);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = super::client::server_config(provider, &self.cert_pem, &self.key_pem, roots)?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    fn client_config(&self) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("protocol versions", e))?;
        let builder = match &self.ca_pem {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    roots.add(cert.map_err(|e| tls_err("trusted CA", e))?).map_err(|e| tls_err("trusted CA", e))?;
                }
                builder.with_root_certificates(roots)
            }
            None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))),
        };
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| tls_err("certificate", e))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| tls_err("private key", e))?;
        let mut cfg = builder.with_client_auth_cert(certs, key).map_err(|e| tls_err("client certificate", e))?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(cfg)
    }
}

/// Any byte stream a peer connection runs over: TCP, or TLS over TCP.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> PeerIo for T {}

/// A byte stream to the member at a peer URL (`http://host:port`, or `https://` over TLS with
/// the member's peer TLS settings), with `TCP_NODELAY`: raft frames must not wait for Nagle.
pub async fn dial(url: &str, tls: Option<&PeerTls>) -> std::io::Result<Box<dyn PeerIo>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    let uri: http::Uri = url.parse().map_err(|e| invalid(format!("{url}: {e}")))?;
    let host = uri.host().ok_or_else(|| invalid(format!("{url}: no host")))?;
    let host = host.trim_matches(|c| c == '[' || c == ']').to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    if !https {
        return Ok(Box::new(tcp));
    }
    let tls = tls.ok_or_else(|| invalid(format!("{url}: https peer URL without peer TLS flags")))?;
    let config = tls.client_config().map_err(|e| invalid(e.to_string()))?;
    let name = ServerName::try_from(host).map_err(|e| invalid(e.to_string()))?;
    Ok(Box::new(tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?))
}

/// A peer endpoint with a connect timeout and HTTP/2 keep-alives, so a dead or partitioned peer
/// is noticed in seconds instead of at the operating system's TCP timeouts.
fn peer_endpoint(url: String) -> std::result::Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url)?
        .connect_timeout(std::time::Duration::from_secs(1))
        .http2_keep_alive_interval(std::time::Duration::from_secs(5))
        .keep_alive_timeout(std::time::Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

/// A gRPC channel to a peer URL, over TLS when it is `https://`.
pub async fn connect(url: &str, tls: Option<&PeerTls>) -> Result<Channel> {
    let unreachable = |e: &dyn std::fmt::Display| Error::Internal(format!("connect to {url}: {e}"));
    let Some(rest) = url.strip_prefix("https://") else {
        return peer_endpoint(url.to_string())
            .map_err(|e| unreachable(&e))?
            .connect()
            .await
            .map_err(|e| unreachable(&e));
    };
    let tls =
        tls.ok_or_else(|| Error::InvalidArgument(format!("{url}: https peer URL without peer TLS flags")))?.clone();
    let (endpoint, url) = (peer_endpoint(format!("http://{rest}")).map_err(|e| unreachable(&e))?, url.to_string());
    let connector = tower::service_fn(move |_: http::Uri| {
        let (tls, url) = (tls.clone(), url.clone());
        async move { dial(&url, Some(&tls)).await.map(TokioIo::new) }
    });
    endpoint.connect_with_connector(connector).await.map_err(|e| unreachable(&e))
}

/// Auto TLS: the channel is encrypted but the peer's certificate is not checked, as in etcd.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
