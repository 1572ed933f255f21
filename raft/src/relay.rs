//! Media relay streams between nodes over the cluster transport ([`ALPN_RELAY`]): the stream
//! type, the listener of incoming streams, and opening a stream to a peer.

use std::net::SocketAddr;

use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use crate::error::{ClusterError, TransportError};
use crate::transport::{ALPN_RELAY, ClusterTransport};
use crate::types::NodeId;

/// A media relay stream from or to another cluster node, authenticated by the cluster CA.
pub struct RelayStream {
    /// Node id from the peer's certificate.
    pub peer: NodeId,
    /// Sending half.
    pub send: SendStream,
    /// Receiving half.
    pub recv: RecvStream,
}

/// Incoming relay streams (see [`Cluster::relay_listener`](crate::Cluster::relay_listener)).
pub struct RelayListener {
    pub(crate) rx: mpsc::Receiver<RelayStream>,
}

impl RelayListener {
    /// Next relay stream opened by a peer; `None` after shutdown.
    pub async fn accept(&mut self) -> Option<RelayStream> {
        self.rx.recv().await
    }
}

/// Opens a relay bi-stream to `node` at `addr` (`None`: no address known, the node is
/// unknown here).
pub(crate) async fn open(
    transport: &ClusterTransport,
    node: NodeId,
    addr: Option<SocketAddr>,
) -> Result<RelayStream, ClusterError> {
    let addr = addr.ok_or(ClusterError::UnknownNode(node))?;
    let conn = transport.connect_node(node, addr, ALPN_RELAY).await?;
    match conn.open_bi().await {
        Ok((send, recv)) => Ok(RelayStream {
            peer: node,
            send,
            recv,
        }),
        Err(source) => {
            transport.forget(addr, ALPN_RELAY);
            Err(TransportError::Connection { addr, source }.into())
        }
    }
}
