//! Plumbing shared by the server and client sessions: the chunk layer in both directions,
//! protocol control messages and acknowledgements.

use bytes::{Bytes, BytesMut};

use super::amf0::Value;
use super::chunk::{
    ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, MAX_CHUNK_SIZE, RawMessage,
};
use super::handshake::{HandshakeError, HandshakeProgress};
use super::message::{CSID_PROTOCOL, Message, MessageError, UserControl};

/// Why a session gave up on a connection. The driver logs it and closes that connection.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The RTMP handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream could not be decoded.
    #[error("chunk stream error: {0}")]
    Chunk(#[from] ChunkError),
    /// A message's payload could not be parsed.
    #[error("malformed message: {0}")]
    Message(#[from] MessageError),
    /// The peer broke the protocol (e.g. a command before `connect`, too many streams).
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// What differs between the server and the client session when bytes arrive: the handshake
/// side, and what a whole message means. The byte plumbing around them is [`feed`].
pub(super) trait Endpoint {
    /// The session's chunk layer.
    fn link(&mut self) -> &mut Link;
    /// Advances the handshake with received bytes; true once it is complete (and from then on).
    fn handshake(&mut self, buf: &mut BytesMut) -> Result<bool, SessionError>;
    /// Handles one whole message.
    fn handle(&mut self, raw: RawMessage) -> Result<(), SessionError>;
}

/// Consumes received bytes — handshake first, then whole chunked messages — counts them and
/// queues acknowledgements. Incomplete input stays in `buf` for the next call.
pub(super) fn feed(session: &mut impl Endpoint, buf: &mut BytesMut) -> Result<(), SessionError> {
    let before = buf.len();
    let result = feed_messages(session, buf);
    let link = session.link();
    link.count_received(before - buf.len());
    link.maybe_ack();
    result
}

fn feed_messages(session: &mut impl Endpoint, buf: &mut BytesMut) -> Result<(), SessionError> {
    if !session.handshake(buf)? {
        return Ok(());
    }
    while let Some(raw) = session.link().decoder.decode(buf)? {
        session.handle(raw)?;
    }
    Ok(())
}

/// Where a session's handshake stands after a [`step_handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HandshakeStep {
    /// More bytes are needed.
    Waiting,
    /// Completed with these bytes.
    JustDone,
    /// Completed earlier.
    Done,
}

/// Feeds received bytes to `handshake` (server or client side, through its `feed`) while there
/// is one, and drops it once complete.
pub(super) fn step_handshake<H>(
    handshake: &mut Option<H>,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    feed: fn(&mut H, &mut BytesMut, &mut BytesMut) -> Result<HandshakeProgress, HandshakeError>,
) -> Result<HandshakeStep, SessionError> {
    let Some(shake) = handshake else {
        return Ok(HandshakeStep::Done);
    };
    if feed(shake, buf, out)? == HandshakeProgress::InProgress {
        return Ok(HandshakeStep::Waiting);
    }
    *handshake = None;
    Ok(HandshakeStep::JustDone)
}

/// The chunked connection after the handshake.
#[derive(Debug)]
pub(super) struct Link {
    pub decoder: ChunkDecoder,
    pub encoder: ChunkEncoder,
    pub out: BytesMut,
    bytes_received: u64,
    last_ack: u64,
    /// Acknowledge every this many received bytes (0: never).
    ack_window: u32,
}

impl Link {
    pub fn new(limits: ChunkLimits, ack_window: u32) -> Self {
        Link {
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            out: BytesMut::new(),
            bytes_received: 0,
            last_ack: 0,
            ack_window,
        }
    }

    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    pub fn count_received(&mut self, n: usize) {
        self.bytes_received += n as u64;
    }

    pub fn send(&mut self, csid: u32, stream_id: u32, msg: &Message) {
        self.send_raw(&msg.to_raw(csid, 0, stream_id));
    }

    pub fn send_raw(&mut self, raw: &RawMessage) {
        self.encoder.encode(&mut self.out, raw);
    }

    pub fn send_command(
        &mut self,
        csid: u32,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        args: Vec<Value>,
    ) {
        let msg = Message::command(name, transaction_id, Value::Null, args);
        self.send(csid, stream_id, &msg);
    }

    /// Announces and switches to our outgoing chunk size.
    pub fn set_chunk_size(&mut self, n: u32) {
        let n = n.clamp(1, MAX_CHUNK_SIZE);
        self.send(CSID_PROTOCOL, 0, &Message::SetChunkSize(n));
        self.encoder.set_chunk_size(n);
    }

    /// Handles protocol control and the user control events both sides treat alike. Returns
    /// false for messages the session itself must look at.
    pub fn handle_control(&mut self, msg: &Message) -> Result<bool, SessionError> {
        match *msg {
            Message::SetChunkSize(n) => self.decoder.set_chunk_size(n)?,
            Message::Abort(csid) => self.decoder.abort(csid),
            Message::WindowAckSize(n) => self.ack_window = n,
            Message::Acknowledgement(_) | Message::SetPeerBandwidth { .. } => {}
            Message::UserControl(UserControl::PingRequest(t)) => {
                let pong = Message::UserControl(UserControl::PingResponse(t));
                self.send(CSID_PROTOCOL, 0, &pong);
            }
            Message::UserControl(
                UserControl::PingResponse(_) | UserControl::SetBufferLength { .. },
            ) => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Sends an Acknowledgement once a window's worth of bytes arrived since the last one.
    pub fn maybe_ack(&mut self) {
        if self.ack_window > 0 && self.bytes_received - self.last_ack >= u64::from(self.ack_window)
        {
            self.last_ack = self.bytes_received;
            // The sequence number wraps at 2^32 like every RTMP counter.
            let ack = Message::Acknowledgement(self.bytes_received as u32);
            self.send(CSID_PROTOCOL, 0, &ack);
        }
    }

    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }
}

/// The info object of an `onStatus` call.
pub(super) fn status_object(level: &str, code: &str, description: &str) -> Value {
    Value::object([
        ("level", Value::string(level)),
        ("code", Value::string(code)),
        ("description", Value::string(description)),
    ])
}
