//! Errors of the public API, with their sources, and how to read a failure to reach a peer.
//!
//! [`ClusterError`] is what every fallible call returns. Its [`Tls`](ClusterError::Tls) and
//! [`Transport`](ClusterError::Transport) variants carry the typed error of rustls, rcgen or
//! quinn ([`TlsError`], [`TransportError`]), so `std::error::Error::source` walks down to it.
//! [`ClusterError::peer_failure`] sorts a failure to reach another node into a
//! [`PeerFailure`]: dead or unreachable, unknown, or refused.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::types::NodeId;

/// Application close code with which a node refuses a connection that has no cluster
/// certificate or whose certificate is not a member's; the other side reads it as
/// [`PeerFailure::Refused`].
pub(crate) const CLOSE_REFUSED: u32 = 0x5c01;

/// Everything that can go wrong in the cluster API; messages are meant for operators.
///
/// Which variants mean what for a call that talks to one peer (see
/// [`ClusterError::peer_failure`]):
/// - the peer is dead or unreachable: [`Transport`](ClusterError::Transport) with a connection
///   that timed out, was reset or lost, or a request that got no answer in time;
/// - the peer is unknown: [`UnknownNode`](ClusterError::UnknownNode) (no such node id, or no
///   address for it, in the committed state);
/// - the peer refused us: [`Transport`](ClusterError::Transport) with a connection the peer
///   closed because we have no (valid) cluster certificate or are not a member.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The leader refused a join (bad, unknown or expired token, ...).
    #[error("join refused: {0}")]
    JoinRefused(String),
    /// The seed presented a CA whose hash is not the pinned one.
    #[error("seed's CA hash {presented} does not match the pinned {pinned}")]
    CaMismatch {
        /// Hash of the CA the seed presented.
        presented: String,
        /// Hash given with `--ca-hash`.
        pinned: String,
    },
    /// No seed could be reached; the text lists each seed's failure.
    #[error("no seed reachable: {0}")]
    SeedsUnreachable(String),
    /// The data directory holds no cluster identity.
    #[error("no cluster identity in {0}: run init or join first")]
    NotInitialized(String),
    /// The data directory already belongs to a cluster.
    #[error("{0} already belongs to a cluster: open it instead")]
    AlreadyInitialized(String),
    /// No node holding the cluster CA key could sign a certificate.
    #[error(
        "no node holding the cluster CA key could sign ({0}); if every voter that held ca.key is lost, run `skein recover --force-new-cluster --ca-key FILE` with a backup of it"
    )]
    NoSigner(String),
    /// No leader is known right now.
    #[error("no Raft leader reachable")]
    NoLeader,
    /// A node id that is not registered, or has no known address.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The state machine rejected a command.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Invalid argument.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Certificate or TLS setup problem.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// Cluster transport (QUIC) problem: binding, connecting, a lost connection, a stream.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// Raft problem (an openraft error, or a bootstrap that did not go as planned).
    #[error("raft: {0}")]
    Raft(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The identity file in the data directory could not be read or written as JSON.
    #[error("identity file: {0}")]
    Identity(#[source] serde_json::Error),
    /// Disk problem.
    #[error("storage: {0}")]
    Io(#[from] io::Error),
}

/// A certificate or TLS configuration problem, by the library that reported it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused a certificate, key or configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error(transparent)]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS configuration offers no cipher suite QUIC can start with.
    #[error(transparent)]
    QuicCrypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// A PEM certificate or key could not be decoded.
    #[error("PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// A key, CSR or certificate could not be generated or signed.
    #[error(transparent)]
    Certificate(#[from] rcgen::Error),
}

/// A problem of the cluster transport, the QUIC endpoint shared by Raft, joins and relay.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The internal address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The internal address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A connection could not even be started (a local problem, e.g. the endpoint is
    /// stopping).
    #[error("connect {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectError,
    },
    /// The connection failed or was lost: handshake refused, timed out, reset, closed.
    #[error("connection to {addr}: {source}{}", refusal_hint(source))]
    Connection {
        /// The peer's address.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectionError,
    },
    /// Sending on a stream failed.
    #[error("send: {0}")]
    Write(#[from] quinn::WriteError),
    /// Ending a stream failed.
    #[error("send: {0}")]
    Finish(#[from] quinn::ClosedStream),
    /// Receiving on a stream failed.
    #[error("receive: {0}")]
    Read(#[from] quinn::ReadToEndError),
    /// A message could not be encoded or decoded.
    #[error("bad message: {0}")]
    Message(#[from] serde_json::Error),
    /// The peer did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// This node was removed from the cluster: every other node refuses its certificate.
    #[error(
        "this node was removed from the cluster and is refused by every member; wipe its data directory and join again to come back as a new node"
    )]
    Removed,
    /// The node at the address is not the one that was dialled (its certificate carries
    /// another id): the wanted node is not there.
    #[error("{addr} is node {presented:?}, not node {expected}")]
    WrongPeer {
        /// The dialled address.
        addr: SocketAddr,
        /// The node that was wanted.
        expected: NodeId,
        /// The node id in the certificate presented, if any.
        presented: Option<NodeId>,
    },
}

/// How a failed call to one peer is to be read, e.g. by the media relay deciding whether to
/// route around the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerFailure {
    /// The peer is dead or cannot be reached (connection timed out, reset or lost, no answer
    /// in time, someone else at its address): route around it.
    Unreachable,
    /// The peer is not known here (unknown node id, no address): no evidence that it is down,
    /// the committed state may simply not have caught up.
    Unknown,
    /// The peer is up but refused us (no or invalid cluster certificate, not a member,
    /// removed): marking it dead would be wrong.
    Refused,
}

impl ClusterError {
    /// What this error says about the peer a call was made to; `None` when it says nothing
    /// about the peer (a local problem, an argument, a rejected command, ...).
    pub fn peer_failure(&self) -> Option<PeerFailure> {
        match self {
            ClusterError::UnknownNode(_) => Some(PeerFailure::Unknown),
            ClusterError::Transport(e) => e.peer_failure(),
            _ => None,
        }
    }

    /// Whether the peer is dead or unreachable ([`PeerFailure::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        self.peer_failure() == Some(PeerFailure::Unreachable)
    }

    /// Wraps an openraft error.
    pub(crate) fn raft(e: impl std::error::Error + Send + Sync + 'static) -> ClusterError {
        ClusterError::Raft(Box::new(e))
    }

    /// Wraps any TLS library error.
    pub(crate) fn tls(e: impl Into<TlsError>) -> ClusterError {
        ClusterError::Tls(e.into())
    }
}

impl TransportError {
    /// What this error says about the peer; see [`ClusterError::peer_failure`].
    pub fn peer_failure(&self) -> Option<PeerFailure> {
        match self {
            TransportError::Connection { source, .. } => connection_failure(source),
            TransportError::Write(quinn::WriteError::ConnectionLost(e)) => connection_failure(e),
            TransportError::Read(quinn::ReadToEndError::Read(
                quinn::ReadError::ConnectionLost(e),
            )) => connection_failure(e),
            TransportError::Timeout(_) | TransportError::WrongPeer { .. } => {
                Some(PeerFailure::Unreachable)
            }
            TransportError::Removed => Some(PeerFailure::Refused),
            _ => None,
        }
    }
}

/// TLS alert `certificate_revoked` (RFC 8446, 6.2) as a QUIC error code.
const ALERT_REVOKED: u64 = 0x100 + 44;
/// TLS alert `certificate_expired`.
const ALERT_EXPIRED: u64 = 0x100 + 45;

/// What a refused handshake means for this node, for the operator.
fn refusal_hint(e: &quinn::ConnectionError) -> &'static str {
    match e {
        quinn::ConnectionError::ConnectionClosed(c) if u64::from(c.error_code) == ALERT_REVOKED => {
            " (the peer refused this node's certificate: this node was removed from the cluster)"
        }
        quinn::ConnectionError::ConnectionClosed(c) if u64::from(c.error_code) == ALERT_EXPIRED => {
            " (the peer refused this node's certificate: it expired; renewals failed or the node was offline too long, remove it and join again)"
        }
        _ => "",
    }
}

/// TLS alerts travel as QUIC transport error codes 0x100-0x1ff (RFC 9001, 4.8).
fn is_tls_alert(code: quinn::TransportErrorCode) -> bool {
    (0x100..=0x1ff).contains(&u64::from(code))
}

fn connection_failure(e: &quinn::ConnectionError) -> Option<PeerFailure> {
    use quinn::ConnectionError as C;
    match e {
        C::ApplicationClosed(close) if close.error_code == CLOSE_REFUSED.into() => {
            Some(PeerFailure::Refused)
        }
        C::ConnectionClosed(close) if is_tls_alert(close.error_code) => Some(PeerFailure::Refused),
        // Closed by the peer for another reason (it is shutting down), reset or silent.
        C::ApplicationClosed(_) | C::ConnectionClosed(_) | C::Reset | C::TimedOut => {
            Some(PeerFailure::Unreachable)
        }
        // Our own endpoint is closing, or a protocol problem: nothing about the peer.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(e: quinn::ConnectionError) -> ClusterError {
        ClusterError::Transport(TransportError::Connection {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            source: e,
        })
    }

    #[test]
    fn peer_failures_are_told_apart() {
        assert_eq!(
            ClusterError::UnknownNode(7).peer_failure(),
            Some(PeerFailure::Unknown)
        );
        assert!(lost(quinn::ConnectionError::TimedOut).is_unreachable());
        assert!(lost(quinn::ConnectionError::Reset).is_unreachable());
        let refused = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: CLOSE_REFUSED.into(),
            reason: b"not a member".to_vec().into(),
        });
        assert_eq!(lost(refused).peer_failure(), Some(PeerFailure::Refused));
        let shutdown = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: 0u32.into(),
            reason: b"shutdown".to_vec().into(),
        });
        assert!(lost(shutdown).is_unreachable());
        assert_eq!(
            lost(quinn::ConnectionError::LocallyClosed).peer_failure(),
            None
        );
        assert!(
            ClusterError::Transport(TransportError::Timeout(Duration::from_secs(1)))
                .is_unreachable()
        );
        assert_eq!(ClusterError::NoLeader.peer_failure(), None);
    }
}
