//! Who is calling, and from where: every `Server` method takes a [`RequestContext`]. The API
//! layer builds it from the transport (the client's address, later its token or certificate);
//! the server decides with it (Auth fills in `user` and checks permissions against it).

use std::net::SocketAddr;

/// The caller of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub origin: Origin,
    /// The authenticated user; `None` while unauthenticated (and always, until Auth exists).
    pub user: Option<String>,
    /// The Common Name of the client certificate verified on this request's TLS connection
    /// (`--client-cert-auth`); Auth takes it as the user when the request carries no token.
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
        Self { origin: Origin::Client(addr), user: None, cert_common_name: None }
    }

    pub fn peer(addr: Option<SocketAddr>) -> Self {
        Self { origin: Origin::Peer(addr), user: None, cert_common_name: None }
    }

    pub fn internal() -> Self {
        Self::default()
    }
}
