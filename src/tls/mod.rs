//! TLS, both kinds etcd has: between members ([`peer`], `--peer-*` flags) and on the client URLs
//! ([`client`], `--cert-file` and friends), with the connections a client listener accepts
//! ([`incoming`]).
//!
//! Client TLS follows etcd 3.4's `pkg/transport` and `embed`:
//!
//! ```text
//!  TCP accept ─► (http and https on one address: first byte 0x16 means TLS, as etcd's cmux)
//!      │            one task per connection, so a stalled handshake holds up no one
//!      ▼
//!  rustls handshake: TLS 1.2+, --cipher-suites, ALPN h2 / http/1.1,
//!      │            client certificate required and verified against --trusted-ca-file
//!      │            when that or --client-cert-auth is given (Go's RequireAndVerifyClientCert)
//!      ▼
//!  after the handshake: --client-crl-file (revoked serials, file read per connection as etcd
//!      │            does), --client-cert-allowed-hostname (SAN match)
//!      ▼
//!  ClientStream + ClientConnInfo { remote address, verified certificate's Common Name }
//!      └─► tonic: gRPC and the HTTP endpoints on the same connection; `api::context` copies the
//!          Common Name into the request context (Auth's user under --client-cert-auth)
//! ```
//!
//! * `--auto-tls` (only when no cert/key is given): a self-signed certificate for the listen
//!   hosts in `<data-dir>/fixtures/client`, reused when already there; clients are not asked
//!   for certificates then, as in etcd.
//! * An `https://` client URL without a certificate is refused with etcd's message.
//!
//! Not done: reloading certificate files while running (etcd rereads them per handshake);
//! `--cipher-suites` for the peer URLs (the peer server uses tonic's TLS defaults); ECDSA
//! P-521 for auto TLS (ring cannot sign with it: P-384 is used).

pub mod client;
pub mod incoming;
pub mod peer;

pub use client::{ClientTls, ClientTlsFlags};
pub use incoming::{client_connections, ClientConnInfo, ClientConnections, ClientStream};
pub use peer::{connect, PeerIo, PeerTls};
