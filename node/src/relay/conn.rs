//! The async driver around the relay wire format: one QUIC stream to a peer node.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream};
use skein_raft::{NodeId, RelayStream};
use tokio::time::{Instant, sleep_until};

use super::wire::{Decoder, RelayMessage, encode};
use crate::hub::FeedEnd;

/// Why a relay stream ended. Only [`peer_lost`](RelayError::peer_lost) errors make a node
/// route around the peer; a refusal or a corrupt message is that stream's problem only.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The stream to the peer could not be opened: the peer is unreachable.
    #[error("cannot reach node {node}: {why}")]
    Connect {
        /// The peer.
        node: NodeId,
        /// What failed, for logs.
        why: String,
    },
    /// The cluster registry has no such node (yet, or any more): nothing to connect to, and
    /// no reason to take the node for dead.
    #[error("node {0} is not in the cluster registry")]
    UnknownPeer(NodeId),
    /// The peer is up but refused this node (certificate, membership), or the stream could not
    /// be opened for a reason of our own: that is not a dead peer either.
    #[error("cannot open a relay stream to node {node}: {why}")]
    NotAllowed {
        /// The peer.
        node: NodeId,
        /// What failed, for logs.
        why: String,
    },
    /// The peer sent nothing (not even a keep-alive), or took nothing, for this long.
    #[error("peer silent for more than {0:?}")]
    Timeout(Duration),
    /// The peer finished the stream where a message was due.
    #[error("peer closed the relay stream")]
    Closed,
    /// Reading from the QUIC stream failed (connection lost, stream reset).
    #[error("relay read failed: {0}")]
    Read(String),
    /// Writing to the QUIC stream failed (connection lost, stream stopped).
    #[error("relay write failed: {0}")]
    Write(String),
    /// The peer sent bytes that are not the relay wire format.
    #[error(transparent)]
    Wire(#[from] super::wire::WireError),
    /// The peer answered, but will not serve this request.
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The owner refused or ended a push because another publisher has the stream.
    #[error("{0}")]
    Taken(String),
    /// The local feed of the stream ended (publisher gone, too slow).
    #[error("local feed ended: {0}")]
    Feed(FeedEnd),
}

impl RelayError {
    /// Whether the error says the peer is gone (as opposed to a refusal or a local end).
    pub fn peer_lost(&self) -> bool {
        matches!(
            self,
            RelayError::Connect { .. }
                | RelayError::Timeout(_)
                | RelayError::Closed
                | RelayError::Read(_)
                | RelayError::Write(_)
        )
    }
}

/// One relay stream to a peer node, split so a task can wait on both halves at once: `rx`
/// reads messages and fails once the peer has been silent for the relay timeout; `tx` writes
/// them and says when a keep-alive is due because nothing else was sent. Liveness lives here,
/// not in the tasks that push, pull and serve.
pub struct RelayConn {
    pub peer: NodeId,
    pub rx: RelayReader,
    pub tx: RelayWriter,
}

/// The reading half: whole messages out of the QUIC stream, and the silence timeout.
pub struct RelayReader {
    recv: RecvStream,
    buf: BytesMut,
    decoder: Decoder,
    timeout: Duration,
    last_heard: Instant,
}

/// The writing half: vectored writes with a timeout, and keep-alives when idle.
pub struct RelayWriter {
    send: SendStream,
    timeout: Duration,
    keepalive_every: Duration,
    last_sent: Instant,
}

impl RelayConn {
    /// Wraps an opened or accepted relay stream. A peer silent for `timeout` (no media, no
    /// keep-alive) or taking nothing for `timeout` is taken as dead; we send a keep-alive when
    /// we have sent nothing for a quarter of it.
    pub fn new(stream: RelayStream, max_body: usize, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            peer: stream.peer,
            rx: RelayReader {
                recv: stream.recv,
                buf: BytesMut::with_capacity(64 * 1024),
                decoder: Decoder::new(max_body),
                timeout,
                last_heard: now,
            },
            tx: RelayWriter {
                send: stream.send,
                timeout,
                keepalive_every: timeout / 4,
                last_sent: now,
            },
        }
    }
}

impl RelayReader {
    /// The next message, `None` when the peer finished the stream; `Timeout` once the peer
    /// has been silent for the relay timeout. Cancel-safe: bytes read stay in the buffer until
    /// a whole message is there.
    pub async fn recv(&mut self) -> Result<Option<RelayMessage>, RelayError> {
        loop {
            if let Some(message) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(message));
            }
            let read = tokio::select! {
                // Data already waiting wins over a deadline that passed while the task was
                // busy elsewhere (writing a batch): a busy peer is not a silent one.
                biased;
                read = self.recv.read_chunk(256 * 1024, true) => read,
                _ = sleep_until(self.last_heard + self.timeout) => {
                    return Err(RelayError::Timeout(self.timeout));
                }
            };
            match read {
                Ok(Some(chunk)) => {
                    self.last_heard = Instant::now();
                    self.buf.extend_from_slice(&chunk.bytes);
                }
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err(RelayError::Read("stream ended inside a message".into())),
                Err(e) => return Err(RelayError::Read(e.to_string())),
            }
        }
    }
}

impl RelayWriter {
    /// Sends messages in one vectored write. A peer that takes nothing for the timeout is taken
    /// as dead.
    pub async fn send(&mut self, messages: &[RelayMessage]) -> Result<(), RelayError> {
        let mut parts: Vec<Bytes> = messages.iter().flat_map(encode).collect();
        parts.retain(|p| !p.is_empty());
        let write = self.send.write_all_chunks(&mut parts);
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(RelayError::Write(e.to_string())),
            Err(_) => Err(RelayError::Timeout(self.timeout)),
        }
    }

    /// Resolves when nothing was sent for the keep-alive interval. Cancel-safe; send the
    /// keep-alive with [`keepalive`](Self::keepalive) in the branch that wins.
    pub async fn keepalive_due(&self) {
        sleep_until(self.last_sent + self.keepalive_every).await;
    }

    /// Sends a keep-alive.
    pub async fn keepalive(&mut self) -> Result<(), RelayError> {
        self.send(&[RelayMessage::Keepalive]).await
    }

    /// Ends our side of the stream cleanly.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }
}
