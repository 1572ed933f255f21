//! The async driver around the relay wire format: one QUIC stream to a peer node.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use skein_raft::{NodeId, RelayStream};

use super::wire::{Decoder, RelayMessage, encode};
use crate::hub::FeedEnd;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot reach node {node}: {why}")]
    Connect { node: NodeId, why: String },
    #[error("peer silent for more than {0:?}")]
    Timeout(Duration),
    #[error("peer closed the relay stream")]
    Closed,
    #[error("relay read failed: {0}")]
    Read(String),
    #[error("relay write failed: {0}")]
    Write(String),
    #[error(transparent)]
    Wire(#[from] super::wire::WireError),
    #[error("refused by the peer: {0}")]
    Refused(String),
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

pub struct RelayConn {
    pub peer: NodeId,
    stream: RelayStream,
    buf: BytesMut,
    decoder: Decoder,
    write_timeout: Duration,
}

impl RelayConn {
    pub fn new(stream: RelayStream, max_body: usize, write_timeout: Duration) -> Self {
        Self {
            peer: stream.peer,
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: Decoder::new(max_body),
            write_timeout,
        }
    }

    /// The next message, `None` when the peer finished the stream. Cancel-safe: bytes read
    /// stay in the buffer until a whole message is there.
    pub async fn recv(&mut self) -> Result<Option<RelayMessage>, RelayError> {
        loop {
            if let Some(message) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(message));
            }
            match self.stream.recv.read_chunk(256 * 1024, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err(RelayError::Read("stream ended inside a message".into())),
                Err(e) => return Err(RelayError::Read(e.to_string())),
            }
        }
    }

    /// Sends messages in one vectored write. A peer that takes nothing for the write timeout
    /// is taken as dead.
    pub async fn send(&mut self, messages: &[RelayMessage]) -> Result<(), RelayError> {
        let mut parts: Vec<Bytes> = messages.iter().flat_map(encode).collect();
        parts.retain(|p| !p.is_empty());
        let write = self.stream.send.write_all_chunks(&mut parts);
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RelayError::Write(e.to_string())),
            Err(_) => Err(RelayError::Timeout(self.write_timeout)),
        }
    }

    /// Ends our side of the stream cleanly.
    pub fn finish(&mut self) {
        let _ = self.stream.send.finish();
    }
}
