//! RTMP messages: typed views of [`RawMessage`] payloads.

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::{self, Amf0Error, Value};
use super::chunk::RawMessage;

/// Set Chunk Size (type 1): the sender's new maximum chunk payload size.
pub const SET_CHUNK_SIZE: u8 = 1;
/// Abort (type 2): discard the partly received message on a chunk stream.
pub const ABORT: u8 = 2;
/// Acknowledgement (type 3): total bytes received so far.
pub const ACK: u8 = 3;
/// User Control (type 4): stream and ping events, see [`UserControl`].
pub const USER_CONTROL: u8 = 4;
/// Window Acknowledgement Size (type 5): bytes the peer may receive between acknowledgements.
pub const WINDOW_ACK_SIZE: u8 = 5;
/// Set Peer Bandwidth (type 6): limit on the peer's output window.
pub const SET_PEER_BANDWIDTH: u8 = 6;
/// Audio (type 8).
pub const AUDIO: u8 = 8;
/// Video (type 9).
pub const VIDEO: u8 = 9;
/// Data message, AMF3 (type 15).
pub const DATA_AMF3: u8 = 15;
/// Shared Object, AMF3 (type 16); not supported.
pub const SHARED_OBJECT_AMF3: u8 = 16;
/// Command message, AMF3 (type 17).
pub const COMMAND_AMF3: u8 = 17;
/// Data message, AMF0 (type 18), e.g. `onMetaData`.
pub const DATA_AMF0: u8 = 18;
/// Shared Object, AMF0 (type 19); not supported.
pub const SHARED_OBJECT_AMF0: u8 = 19;
/// Command message, AMF0 (type 20), e.g. `connect`, `publish`, `play`.
pub const COMMAND_AMF0: u8 = 20;
/// Aggregate (type 22); not supported.
pub const AGGREGATE: u8 = 22;

// Chunk stream ids. The sessions' header-compressing `ChunkEncoder` owns 2, 3 and 5; the
// stateless `encode_message` output of the hub (always a fmt 0 first chunk) uses 4, 6 and 7.
// Keeping the two apart is what makes mixing them on one connection safe.

/// Protocol control and user control messages (required by the spec).
pub const CSID_PROTOCOL: u32 = 2;
/// NetConnection commands and their replies.
pub const CSID_COMMAND: u32 = 3;
/// Metadata (`onMetaData`) data messages written by the hub.
pub const CSID_DATA: u32 = 4;
/// NetStream commands and `onStatus` replies written by the sessions.
pub const CSID_STREAM: u32 = 5;
/// Audio messages.
pub const CSID_AUDIO: u32 = 6;
/// Video messages.
pub const CSID_VIDEO: u32 = 7;

/// Set Peer Bandwidth limit type Hard: the peer should limit its output to the window size.
pub const LIMIT_HARD: u8 = 0;
/// Set Peer Bandwidth limit type Soft: the smaller of this window and the limit in effect.
pub const LIMIT_SOFT: u8 = 1;
/// Set Peer Bandwidth limit type Dynamic: Hard if the previous limit was Hard, else ignored.
pub const LIMIT_DYNAMIC: u8 = 2;

/// Why a [`RawMessage`] payload could not be parsed as a [`Message`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// The payload is shorter than the fixed fields of its message type.
    #[error("{what} message is {len} bytes, expected at least {need}")]
    TooShort {
        /// Message type name, as in the spec.
        what: &'static str,
        /// Payload length in bytes.
        len: usize,
        /// Bytes the message type needs.
        need: usize,
    },
    /// A command message whose first AMF0 value is not a string.
    #[error("command message does not start with a name string")]
    MissingCommandName,
    /// The AMF0 values of a command or data message do not decode.
    #[error("bad AMF0 in {what} message: {source}")]
    Amf {
        /// `"command"` or `"data"`.
        what: &'static str,
        /// The AMF0 decoding error.
        #[source]
        source: Amf0Error,
    },
}

/// A User Control event (message type 4); `u32` payloads are stream ids unless noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    /// Stream Begin (event 0): the stream is ready for use.
    StreamBegin(u32),
    /// Stream EOF (event 1): playback of the stream is over.
    StreamEof(u32),
    /// Stream Dry (event 2): no more data on the stream for now.
    StreamDry(u32),
    /// Set Buffer Length (event 3): the client's buffer size for a stream.
    SetBufferLength {
        /// The stream the buffer is for.
        stream_id: u32,
        /// Buffer length in milliseconds.
        millis: u32,
    },
    /// Stream Is Recorded (event 4): the stream is a recording, not live.
    StreamIsRecorded(u32),
    /// Ping Request (event 6); the value is the sender's timestamp.
    PingRequest(u32),
    /// Ping Response (event 7); echoes the request's timestamp.
    PingResponse(u32),
    /// Any other event type, without its data.
    Other {
        /// The event type.
        event: u16,
    },
}

/// A typed RTMP message, parsed from or encodable to a [`RawMessage`].
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Set Chunk Size: the sender's new chunk size in bytes.
    SetChunkSize(u32),
    /// Abort: the chunk stream id whose partial message to discard.
    Abort(u32),
    /// Acknowledgement: the sender's total received byte count (wrapping).
    Acknowledgement(u32),
    /// Window Acknowledgement Size in bytes.
    WindowAckSize(u32),
    /// Set Peer Bandwidth.
    SetPeerBandwidth {
        /// Window size in bytes.
        size: u32,
        /// Limit type: [`LIMIT_HARD`], [`LIMIT_SOFT`] or [`LIMIT_DYNAMIC`].
        limit: u8,
    },
    /// User Control event.
    UserControl(UserControl),
    /// A command (AMF0 or AMF3) such as `connect`, `createStream`, `publish`, `play`.
    Command {
        /// Command name, e.g. `"connect"`.
        name: String,
        /// Transaction id; 0 for calls that expect no reply.
        transaction_id: f64,
        /// The command object (`Null` when absent).
        object: Value,
        /// Further arguments after the command object.
        args: Vec<Value>,
    },
    /// A data message; `payload` is its AMF0 wire form (what gets encoded), `values` its decoding.
    Data {
        /// The decoded AMF0 values.
        values: Vec<Value>,
        /// The AMF0 wire form, without any AMF3 format byte.
        payload: Bytes,
    },
    /// Audio: an FLV audio tag body.
    Audio(Bytes),
    /// Video: an FLV video tag body.
    Video(Bytes),
    /// Any other type (shared objects, aggregates); encodes as an empty payload.
    Unknown {
        /// The message type id.
        type_id: u8,
    },
}

fn u32_at(p: &[u8], at: usize, what: &'static str) -> Result<u32, MessageError> {
    p.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(MessageError::TooShort {
            what,
            len: p.len(),
            need: at + 4,
        })
}

/// Strips the format byte that precedes AMF0 in AMF3-typed command/data messages.
fn skip_amf3_prefix(type_id: u8, payload: &Bytes) -> Bytes {
    if matches!(type_id, COMMAND_AMF3 | DATA_AMF3) && payload.first() == Some(&0) {
        payload.slice(1..)
    } else {
        payload.clone()
    }
}

impl Message {
    /// Parses a raw message by its type id; unknown types become [`Message::Unknown`].
    pub fn parse(raw: &RawMessage) -> Result<Message, MessageError> {
        let p = &raw.payload[..];
        Ok(match raw.type_id {
            SET_CHUNK_SIZE => Message::SetChunkSize(u32_at(p, 0, "Set Chunk Size")?),
            ABORT => Message::Abort(u32_at(p, 0, "Abort")?),
            ACK => Message::Acknowledgement(u32_at(p, 0, "Acknowledgement")?),
            WINDOW_ACK_SIZE => Message::WindowAckSize(u32_at(p, 0, "Window Ack Size")?),
            SET_PEER_BANDWIDTH => Message::SetPeerBandwidth {
                size: u32_at(p, 0, "Set Peer Bandwidth")?,
                // Tolerate senders that leave out the limit type.
                limit: p.get(4).copied().unwrap_or(LIMIT_DYNAMIC),
            },
            USER_CONTROL => Message::UserControl(parse_user_control(p)?),
            COMMAND_AMF0 | COMMAND_AMF3 => {
                let payload = skip_amf3_prefix(raw.type_id, &raw.payload);
                let mut values = amf0::decode_all(&payload)
                    .map_err(|source| MessageError::Amf {
                        what: "command",
                        source,
                    })?
                    .into_iter();
                let name = match values.next() {
                    Some(Value::String(s) | Value::LongString(s)) => s,
                    _ => return Err(MessageError::MissingCommandName),
                };
                // Be lenient about the rest: some clients omit the transaction id or object.
                let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
                let object = values.next().unwrap_or(Value::Null);
                Message::Command {
                    name,
                    transaction_id,
                    object,
                    args: values.collect(),
                }
            }
            DATA_AMF0 | DATA_AMF3 => {
                let payload = skip_amf3_prefix(raw.type_id, &raw.payload);
                let values = amf0::decode_all(&payload).map_err(|source| MessageError::Amf {
                    what: "data",
                    source,
                })?;
                Message::Data { values, payload }
            }
            AUDIO => Message::Audio(raw.payload.clone()),
            VIDEO => Message::Video(raw.payload.clone()),
            type_id => Message::Unknown { type_id },
        })
    }

    /// Builds a data message from values.
    pub fn data(values: Vec<Value>) -> Message {
        let mut out = BytesMut::new();
        amf0::encode_all(&values, &mut out);
        Message::Data {
            values,
            payload: out.freeze(),
        }
    }

    /// Builds a command message.
    pub fn command(name: &str, transaction_id: f64, object: Value, args: Vec<Value>) -> Message {
        Message::Command {
            name: name.to_owned(),
            transaction_id,
            object,
            args,
        }
    }

    /// The message type id this message is sent with (commands and data as AMF0).
    pub fn type_id(&self) -> u8 {
        match self {
            Message::SetChunkSize(_) => SET_CHUNK_SIZE,
            Message::Abort(_) => ABORT,
            Message::Acknowledgement(_) => ACK,
            Message::WindowAckSize(_) => WINDOW_ACK_SIZE,
            Message::SetPeerBandwidth { .. } => SET_PEER_BANDWIDTH,
            Message::UserControl(_) => USER_CONTROL,
            Message::Command { .. } => COMMAND_AMF0,
            Message::Data { .. } => DATA_AMF0,
            Message::Audio(_) => AUDIO,
            Message::Video(_) => VIDEO,
            Message::Unknown { type_id } => *type_id,
        }
    }

    /// The payload of this message.
    pub fn encode_payload(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Message::SetChunkSize(n)
            | Message::Abort(n)
            | Message::Acknowledgement(n)
            | Message::WindowAckSize(n) => out.put_u32(*n),
            Message::SetPeerBandwidth { size, limit } => {
                out.put_u32(*size);
                out.put_u8(*limit);
            }
            Message::UserControl(uc) => encode_user_control(uc, &mut out),
            Message::Command {
                name,
                transaction_id,
                object,
                args,
            } => {
                amf0::encode(&Value::String(name.clone()), &mut out);
                amf0::encode(&Value::Number(*transaction_id), &mut out);
                amf0::encode(object, &mut out);
                amf0::encode_all(args, &mut out);
            }
            Message::Data { payload, .. } | Message::Audio(payload) | Message::Video(payload) => {
                return payload.clone();
            }
            Message::Unknown { .. } => {}
        }
        out.freeze()
    }

    /// Wraps this message for the chunk layer.
    pub fn to_raw(&self, csid: u32, timestamp: u32, stream_id: u32) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id: self.type_id(),
            stream_id,
            payload: self.encode_payload(),
        }
    }
}

fn parse_user_control(p: &[u8]) -> Result<UserControl, MessageError> {
    let what = "User Control";
    let event = match p {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => {
            return Err(MessageError::TooShort {
                what,
                len: p.len(),
                need: 2,
            });
        }
    };
    Ok(match event {
        0 => UserControl::StreamBegin(u32_at(p, 2, what)?),
        1 => UserControl::StreamEof(u32_at(p, 2, what)?),
        2 => UserControl::StreamDry(u32_at(p, 2, what)?),
        3 => UserControl::SetBufferLength {
            stream_id: u32_at(p, 2, what)?,
            millis: u32_at(p, 6, what)?,
        },
        4 => UserControl::StreamIsRecorded(u32_at(p, 2, what)?),
        6 => UserControl::PingRequest(u32_at(p, 2, what)?),
        7 => UserControl::PingResponse(u32_at(p, 2, what)?),
        event => UserControl::Other { event },
    })
}

fn encode_user_control(uc: &UserControl, out: &mut BytesMut) {
    let (event, a, b) = match *uc {
        UserControl::StreamBegin(id) => (0, id, None),
        UserControl::StreamEof(id) => (1, id, None),
        UserControl::StreamDry(id) => (2, id, None),
        UserControl::SetBufferLength { stream_id, millis } => (3, stream_id, Some(millis)),
        UserControl::StreamIsRecorded(id) => (4, id, None),
        UserControl::PingRequest(t) => (6, t, None),
        UserControl::PingResponse(t) => (7, t, None),
        UserControl::Other { event } => {
            out.put_u16(event);
            return;
        }
    };
    out.put_u16(event);
    out.put_u32(a);
    if let Some(b) = b {
        out.put_u32(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(type_id: u8, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid: 3,
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn roundtrip(m: Message) {
        let r = m.to_raw(CSID_PROTOCOL, 0, 0);
        assert_eq!(Message::parse(&r).unwrap(), m);
    }

    #[test]
    fn control_messages_roundtrip() {
        roundtrip(Message::SetChunkSize(4096));
        roundtrip(Message::Abort(5));
        roundtrip(Message::Acknowledgement(123_456));
        roundtrip(Message::WindowAckSize(2_500_000));
        roundtrip(Message::SetPeerBandwidth {
            size: 2_500_000,
            limit: LIMIT_DYNAMIC,
        });
        for uc in [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(1),
            UserControl::StreamDry(2),
            UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(77),
            UserControl::PingResponse(77),
            UserControl::Other { event: 31 },
        ] {
            roundtrip(Message::UserControl(uc));
        }
        roundtrip(Message::command(
            "connect",
            1.0,
            Value::object([("app", Value::string("live"))]),
            vec![Value::Boolean(true)],
        ));
        roundtrip(Message::data(vec![
            Value::string("onMetaData"),
            Value::EcmaArray(vec![("width".into(), Value::Number(1280.0))]),
        ]));
        roundtrip(Message::Video(Bytes::from_static(&[0x17, 0, 0, 0, 0])));
        roundtrip(Message::Audio(Bytes::from_static(&[0xAF, 1])));
    }

    #[test]
    fn known_wire_forms() {
        assert_eq!(
            Message::UserControl(UserControl::PingRequest(0x0102_0304)).encode_payload()[..],
            [0, 6, 1, 2, 3, 4]
        );
        assert_eq!(
            Message::parse(&raw(SET_PEER_BANDWIDTH, &[0, 0, 0x10, 0])).unwrap(),
            Message::SetPeerBandwidth {
                size: 4096,
                limit: LIMIT_DYNAMIC
            }
        );
    }

    #[test]
    fn amf3_command_skips_format_byte() {
        let mut p = vec![0u8];
        p.extend_from_slice(&Message::command("play", 0.0, Value::Null, vec![]).encode_payload());
        match Message::parse(&raw(COMMAND_AMF3, &p)).unwrap() {
            Message::Command { name, .. } => assert_eq!(name, "play"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(matches!(
            Message::parse(&raw(SET_CHUNK_SIZE, &[0, 1])),
            Err(MessageError::TooShort { need: 4, .. })
        ));
        assert!(Message::parse(&raw(USER_CONTROL, &[0])).is_err());
        assert!(Message::parse(&raw(USER_CONTROL, &[0, 3, 0, 0, 0, 1])).is_err());
        assert_eq!(
            Message::parse(&raw(COMMAND_AMF0, &[0x05])),
            Err(MessageError::MissingCommandName)
        );
        let err = Message::parse(&raw(COMMAND_AMF0, &[0x02, 0, 9, b'x'])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad AMF0 in command message: AMF0 string runs past end of message"
        );
        assert_eq!(
            Message::parse(&raw(AGGREGATE, &[1, 2, 3])).unwrap(),
            Message::Unknown { type_id: AGGREGATE }
        );
    }

    #[test]
    fn lenient_command_parsing() {
        let mut out = BytesMut::new();
        amf0::encode(&Value::string("onBWDone"), &mut out);
        assert_eq!(
            Message::parse(&raw(COMMAND_AMF0, &out)).unwrap(),
            Message::command("onBWDone", 0.0, Value::Null, vec![])
        );
    }
}
