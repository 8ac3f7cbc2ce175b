//! The client URLs' TLS server side: the rustls configuration etcd's flags describe, the self
//! signed certificate of `--auto-tls`, and the checks etcd makes once a handshake is done.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::{Error, Result};

/// etcd's client TLS flags, as given (empty strings for flags not given).
#[derive(Debug, Clone, Default)]
pub struct ClientTlsFlags {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
    pub auto_tls: bool,
    pub crl_file: String,
    pub allowed_hostname: String,
}

/// Where Go (and so etcd) finds the system's trusted CAs on Debian, used when
/// `--client-cert-auth` is given without `--trusted-ca-file`.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Cipher suites Go knows (`tls.CipherSuites()`, `tls.InsecureCipherSuites()` and etcd's two
/// aliases) that MetaStore's TLS library does not offer: accepted by `--cipher-suites` as etcd
/// accepts them, and left out with a warning.
const GO_ONLY_CIPHER_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// TLS 1.3 suites by Go's names: always enabled, as in Go, whatever `--cipher-suites` says.
const GO_TLS13_CIPHER_SUITES: &[&str] =
    &["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("client TLS: {what}: {e}"))
}

/// The TLS of the client URLs: the handshake configuration and the checks after it.
pub struct ClientTls {
    config: Arc<ServerConfig>,
    /// `--client-crl-file`: read for every connection, as etcd does, so a revocation list
    /// replaced on disk takes effect without a restart.
    crl_file: Option<PathBuf>,
    /// `--client-cert-allowed-hostname`: a DNS name or IP address the client certificate's
    /// subject alternative names must contain.
    allowed_hostname: Option<String>,
}

impl ClientTls {
    /// The client TLS the flags ask for, `None` when they ask for none. `listen_hosts` are the
    /// hosts of `--listen-client-urls`, which an `--auto-tls` certificate names.
    pub fn from_flags(
        flags: &ClientTlsFlags,
        cipher_suites: &[String],
        data_dir: &Path,
        listen_hosts: &[String],
    ) -> Result<Option<Self>> {
        let provider = Arc::new(provider(cipher_suites)?);
        if !flags.cert_file.is_empty() || !flags.key_file.is_empty() {
            if flags.cert_file.is_empty() || flags.key_file.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                    flags.key_file, flags.cert_file
                )));
            }
            if flags.auto_tls {
                tracing::warn!("ignoring client auto TLS since certs given");
            }
            let read = |path: &str| std::fs::read(path).map_err(|e| tls_err(path, e));
            let verify_clients = !flags.trusted_ca_file.is_empty() || flags.client_cert_auth;
            let roots = match (verify_clients, flags.trusted_ca_file.as_str()) {
                (false, _) => None,
                (true, "") => Some(read(SYSTEM_ROOTS)?),
                (true, ca) => Some(read(ca)?),
            };
            let config = server_config(provider, &read(&flags.cert_file)?, &read(&flags.key_file)?, roots)?;
            let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
            return Ok(Some(Self {
                config: Arc::new(config),
                crl_file: non_empty(&flags.crl_file).map(PathBuf::from),
                allowed_hostname: non_empty(&flags.allowed_hostname),
            }));
        }
        if !flags.auto_tls {
            return Ok(None);
        }
        // As in etcd, the self-signed certificate replaces every other client TLS setting.
        let (cert, key) = self_cert(&data_dir.join("fixtures").join("client"), listen_hosts)?;
        let config = server_config(provider, &cert, &key, None)?;
        Ok(Some(Self { config: Arc::new(config), crl_file: None, allowed_hostname: None }))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// etcd's checks after a handshake (revocation, allowed hostname), then the verified client
    /// certificate's Common Name (`None` without a certificate or with an empty name).
    pub fn check_client(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<Option<String>> {
        let Some(end_entity) = certs.and_then(|c| c.first()) else {
            return Ok(None);
        };
        let (_, cert) = X509Certificate::from_der(end_entity.as_ref()).map_err(|e| tls_err("client certificate", e))?;
        if let Some(crl) = &self.crl_file {
            check_revoked(crl, certs.unwrap_or_default())?;
        }
        if let Some(host) = &self.allowed_hostname {
            if !names_host(&cert, host) {
                return Err(Error::InvalidArgument("client certificate authentication failed".into()));
            }
        }
        let cn = cert.subject().iter_common_name().last().and_then(|cn| cn.as_str().ok()).unwrap_or_default();
        Ok((!cn.is_empty()).then(|| cn.to_string()))
    }
}

/// rustls's ring provider with `--cipher-suites` applied to TLS 1.2 (Go's behaviour: TLS 1.3
/// suites are not configurable). Names Go does not know are refused with etcd's error.
fn provider(names: &[String]) -> Result<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(provider);
    }
    let mut chosen: Vec<SupportedCipherSuite> =
        provider.cipher_suites.iter().copied().filter(|s| matches!(s, SupportedCipherSuite::Tls13(_))).collect();
    let mut dropped = Vec::new();
    for name in names {
        let go_name = |s: &SupportedCipherSuite| {
            let ours = format!("{:?}", s.suite());
            ours == *name || ours == format!("{name}_SHA256")
        };
        match provider.cipher_suites.iter().find(|s| go_name(s)) {
            Some(suite) if !chosen.contains(suite) => chosen.push(*suite),
            Some(_) => {}
            None if GO_TLS13_CIPHER_SUITES.contains(&name.as_str()) => {}
            None if GO_ONLY_CIPHER_SUITES.contains(&name.as_str()) => dropped.push(name.as_str()),
            None => return Err(Error::InvalidArgument(format!("unexpected TLS cipher suite {name:?}"))),
        }
    }
    if !dropped.is_empty() {
        tracing::warn!("--cipher-suites: not supported, left out: {}", dropped.join(","));
    }
    provider.cipher_suites = chosen;
    Ok(provider)
}

/// TLS 1.2 and 1.3; ALPN `h2` for gRPC and `http/1.1` for the HTTP endpoints; client
/// certificates required and verified against `roots` when given.
pub(super) fn server_config(
    provider: Arc<CryptoProvider>,
    cert_pem: &[u8],
    key_pem: &[u8],
    roots: Option<Vec<u8>>,
) -> Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_err("protocol versions", e))?;
    let builder = match roots {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut store = RootCertStore::empty();
            let mut roots = Vec::new();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| tls_err("trusted CA", e))?;
                roots.push(cert.clone());
                store.add(cert).map_err(|e| tls_err("trusted CA", e))?;
            }
            let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| tls_err("trusted CA", e))?;
            builder.with_client_cert_verifier(Arc::new(TrustedRootAsClient { inner, roots }))
        }
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err("certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| tls_err("private key", e))?;
    let mut config = builder.with_single_cert(certs, key).map_err(|e| tls_err("certificate", e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// webpki refuses a CA certificate as a client's own certificate; Go (and so etcd) accepts a
/// client certificate that is itself one of the trusted roots — a self-signed certificate used
/// as both the CA file and the client's certificate, as etcd's own test PKI does. This verifier
/// adds exactly that (within the certificate's validity period; the handshake still proves the
/// client holds its key); every other answer is webpki's.
#[derive(Debug)]
struct TrustedRootAsClient {
    inner: Arc<dyn ClientCertVerifier>,
    roots: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for TrustedRootAsClient {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        match self.inner.verify_client_cert(end_entity, intermediates, now) {
            Err(_) if self.is_trusted_root(end_entity, now) => Ok(ClientCertVerified::assertion()),
            answer => answer,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl TrustedRootAsClient {
    fn is_trusted_root(&self, cert: &CertificateDer<'_>, now: UnixTime) -> bool {
        let Some(root) = self.roots.iter().find(|r| r.as_ref() == cert.as_ref()) else { return false };
        let Ok((_, parsed)) = X509Certificate::from_der(root.as_ref()) else { return false };
        let Ok(at) = x509_parser::time::ASN1Time::from_timestamp(now.as_secs() as i64) else { return false };
        parsed.validity().is_valid_at(at)
    }
}

/// etcd's `SelfCert`: `cert.pem` and `key.pem` in `dir`, reused when both exist; otherwise an
/// ECDSA key and a one-year certificate for `hosts` (organisation "etcd", server auth).
fn self_cert(dir: &Path, hosts: &[String]) -> Result<(Vec<u8>, Vec<u8>)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        let read = |p: &Path| std::fs::read(p).map_err(|e| tls_err(&p.display().to_string(), e));
        return Ok((read(&cert_path)?, read(&key_path)?));
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| tls_err("fixtures dir", e))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(|e| tls_err("auto TLS key", e))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| tls_err("auto TLS hosts", e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "etcd");
    params.not_before = time::OffsetDateTime::now_utc();
    params.not_after = params.not_before + time::Duration::days(365);
    params.serial_number = Some(rcgen::SerialNumber::from(rand::random::<[u8; 16]>().to_vec()));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment, rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let cert = params.self_signed(&key).map_err(|e| tls_err("auto TLS certificate", e))?;
    let (cert_pem, key_pem) = (cert.pem().into_bytes(), key.serialize_pem().into_bytes());
    let write = |path: &Path, data: &[u8], mode: u32| {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(data))
            .map_err(|e| tls_err(&path.display().to_string(), e))
    };
    write(&cert_path, &cert_pem, 0o644)?;
    write(&key_path, &key_pem, 0o600)?;
    tracing::info!("created cert file {} and key file {}", cert_path.display(), key_path.display());
    Ok((cert_pem, key_pem))
}

/// etcd's `checkCRL`: any certificate of the chain whose serial the list names is refused.
fn check_revoked(crl_path: &Path, certs: &[CertificateDer<'_>]) -> Result<()> {
    let bytes = std::fs::read(crl_path).map_err(|e| tls_err(&crl_path.display().to_string(), e))?;
    let der = match x509_parser::pem::parse_x509_pem(&bytes) {
        Ok((_, pem)) => pem.contents,
        Err(_) => bytes,
    };
    let (_, crl) = CertificateRevocationList::from_der(&der).map_err(|e| tls_err("CRL", e))?;
    let magnitude = |serial: &[u8]| serial.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
    let revoked: Vec<Vec<u8>> = crl.iter_revoked_certificates().map(|r| magnitude(r.raw_serial())).collect();
    for der in certs {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| tls_err("client certificate", e))?;
        let serial = magnitude(cert.raw_serial());
        if revoked.contains(&serial) {
            let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
            return Err(Error::InvalidArgument(format!("transport: certificate serial {hex} revoked")));
        }
    }
    Ok(())
}

/// Go's `Certificate.VerifyHostname` (Go 1.15+): an IP address must be one of the IP SANs, a
/// name one of the DNS SANs (a leading `*.` matches one label, case-insensitively).
fn names_host(cert: &X509Certificate<'_>, host: &str) -> bool {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip: Option<IpAddr> = host.trim_matches(|c| c == '[' || c == ']').parse().ok();
    san.value.general_names.iter().any(|name| match (name, ip) {
        (GeneralName::IPAddress(bytes), Some(ip)) => match ip {
            IpAddr::V4(v4) => *bytes == v4.octets(),
            IpAddr::V6(v6) => *bytes == v6.octets(),
        },
        (GeneralName::DNSName(pattern), None) => dns_matches(&pattern.to_ascii_lowercase(), &host),
        _ => false,
    })
}

fn dns_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate, its PEM and the DER.
    fn ca(name: &str) -> (Vec<u8>, CertificateDer<'static>) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        (cert.pem().into_bytes(), cert.der().clone())
    }

    #[test]
    fn a_trusted_root_is_accepted_as_the_clients_own_certificate() {
        let (root_pem, root) = ca("root");
        let (_, stranger) = ca("stranger");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(CertificateDer::pem_slice_iter(&root_pem).map(Result::unwrap));
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider).build().unwrap();
        assert!(inner.verify_client_cert(&root, &[], UnixTime::now()).is_err(), "webpki alone refuses it");
        let verifier = TrustedRootAsClient { inner, roots: vec![root.clone()] };
        assert!(verifier.verify_client_cert(&root, &[], UnixTime::now()).is_ok());
        assert!(verifier.verify_client_cert(&stranger, &[], UnixTime::now()).is_err());
        let long_ago = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_000));
        assert!(verifier.verify_client_cert(&root, &[], long_ago).is_err(), "outside its validity");
    }

    #[test]
    fn cipher_suites_by_go_names() {
        let p =
            provider(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(), "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".into()])
                .expect("known suites");
        let tls12: Vec<String> = p
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(tls12, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]);
        assert_eq!(p.cipher_suites.len(), 5, "TLS 1.3 suites stay");
        assert!(provider(&["TLS_RSA_WITH_AES_128_CBC_SHA".into()]).is_ok());
        let err = provider(&["TLS_NO_SUCH".into()]).expect_err("unknown suite refused").to_string();
        assert!(err.contains("unexpected TLS cipher suite \"TLS_NO_SUCH\""), "{err}");
    }

    /// A leaf certificate (Common Name `cn`, SANs `sans`, serial `serial`) and a CRL of
    /// `revoked` serials, both signed by one CA.
    fn leaf_and_crl(cn: &str, sans: &[&str], serial: u64, revoked: &[u64]) -> (CertificateDer<'static>, String) {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("leaf params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.serial_number = Some(serial.into());
        let cert = params.signed_by(&key, &issuer).expect("leaf");
        let now = time::OffsetDateTime::now_utc();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(1),
            crl_number: 1u64.into(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: (*s).into(),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("CRL");
        (cert.der().clone(), crl.pem().expect("CRL PEM"))
    }

    fn checks(crl: Option<&str>, host: Option<&str>) -> (ClientTls, tempfile::NamedTempFile) {
        let file = tempfile::NamedTempFile::new().expect("CRL file");
        std::fs::write(file.path(), crl.unwrap_or_default()).expect("write CRL");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let config = server_config(
            provider,
            certified.cert.pem().as_bytes(),
            certified.signing_key.serialize_pem().as_bytes(),
            None,
        )
        .expect("server config");
        let tls = ClientTls {
            config: Arc::new(config),
            crl_file: crl.map(|_| file.path().to_path_buf()),
            allowed_hostname: host.map(String::from),
        };
        (tls, file)
    }

    #[test]
    fn the_verified_certificates_common_name_is_the_connections_name() {
        let (cert, _) = leaf_and_crl("alice", &[], 7, &[]);
        let (tls, _file) = checks(None, None);
        assert_eq!(tls.check_client(Some(&[cert])).expect("accepted"), Some("alice".to_string()));
        assert_eq!(tls.check_client(None).expect("no certificate, no name"), None);
        let (nameless, _) = leaf_and_crl("", &[], 7, &[]);
        assert_eq!(tls.check_client(Some(&[nameless])).expect("accepted"), None, "an empty CN is no name");
    }

    #[test]
    fn a_revoked_serial_is_refused() {
        let (cert, crl) = leaf_and_crl("alice", &[], 0x4a3c, &[0x4a3c]);
        let (tls, _file) = checks(Some(&crl), None);
        let err = tls.check_client(Some(&[cert])).expect_err("revoked").to_string();
        assert!(err.contains("certificate serial 4a3c revoked"), "{err}");
        let (cert, crl) = leaf_and_crl("alice", &[], 0x4a3d, &[0x4a3c]);
        let (tls, _file) = checks(Some(&crl), None);
        assert!(tls.check_client(Some(&[cert])).is_ok());
    }

    #[test]
    fn the_allowed_hostname_must_be_a_san() {
        let (cert, _) = leaf_and_crl("alice", &["client.example.com", "10.0.0.1"], 7, &[]);
        for (host, allowed) in [("client.example.com", true), ("10.0.0.1", true), ("other.example.com", false)] {
            let (tls, _file) = checks(None, Some(host));
            assert_eq!(tls.check_client(Some(std::slice::from_ref(&cert))).is_ok(), allowed, "{host}");
        }
    }

    #[test]
    fn dns_names_and_wildcards() {
        assert!(dns_matches("example.com", "example.com"));
        assert!(dns_matches("*.example.com", "a.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
    }
}
