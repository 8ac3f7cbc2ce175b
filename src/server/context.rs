//! Who is calling, and from where: every `Server` method takes a [`RequestContext`]. The API
//! layer builds it from the transport (the client's address, its token, its certificate);
//! the server decides with it (`server::auth` resolves the token or certificate to a user and
//! checks permissions against it).

use std::net::SocketAddr;

/// The caller of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub origin: Origin,
    /// The auth token the client sent (gRPC metadata `token`), resolved by the server.
    pub token: Option<String>,
    /// The common name of the client's verified TLS certificate: the user when the client sent
    /// no token and the member runs with `--client-cert-auth`.
    pub cert_common_name: Option<String>,
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// The server itself: lease expiry, publishing its attributes, health checks.
    #[default]
    Internal,
    /// A client on a client URL (gRPC or HTTP), with its address when the transport knows it.
    Client(Option<SocketAddr>),
    /// Another member, over the peer API.
    Peer(Option<SocketAddr>),
}

impl RequestContext {
    pub fn client(addr: Option<SocketAddr>) -> Self {
        Self { origin: Origin::Client(addr), ..Self::default() }
    }

    pub fn peer(addr: Option<SocketAddr>) -> Self {
        Self { origin: Origin::Peer(addr), ..Self::default() }
    }

    pub fn internal() -> Self {
        Self::default()
    }
}
