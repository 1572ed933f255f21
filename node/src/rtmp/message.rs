//! RTMP messages: typed views of [`RawMessage`] payloads.

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::{self, Amf0Error, Value};
use super::chunk::RawMessage;

pub const SET_CHUNK_SIZE: u8 = 1;
pub const ABORT: u8 = 2;
pub const ACK: u8 = 3;
pub const USER_CONTROL: u8 = 4;
pub const WINDOW_ACK_SIZE: u8 = 5;
pub const SET_PEER_BANDWIDTH: u8 = 6;
pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;
pub const DATA_AMF3: u8 = 15;
pub const SHARED_OBJECT_AMF3: u8 = 16;
pub const COMMAND_AMF3: u8 = 17;
pub const DATA_AMF0: u8 = 18;
pub const SHARED_OBJECT_AMF0: u8 = 19;
pub const COMMAND_AMF0: u8 = 20;
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

/// Set Peer Bandwidth limit types.
pub const LIMIT_HARD: u8 = 0;
pub const LIMIT_SOFT: u8 = 1;
pub const LIMIT_DYNAMIC: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("{what} message is {len} bytes, expected at least {need}")]
    TooShort {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("command message does not start with a name string")]
    MissingCommandName,
    #[error("bad AMF0 in {what} message: {source}")]
    Amf {
        what: &'static str,
        #[source]
        source: Amf0Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength { stream_id: u32, millis: u32 },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    Other { event: u16 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    SetChunkSize(u32),
    Abort(u32),
    Acknowledgement(u32),
    WindowAckSize(u32),
    SetPeerBandwidth {
        size: u32,
        limit: u8,
    },
    UserControl(UserControl),
    Command {
        name: String,
        transaction_id: f64,
        object: Value,
        args: Vec<Value>,
    },
    /// A data message; `payload` is its AMF0 wire form (what gets encoded), `values` its decoding.
    Data {
        values: Vec<Value>,
        payload: Bytes,
    },
    Audio(Bytes),
    Video(Bytes),
    /// Any other type (shared objects, aggregates); encodes as an empty payload.
    Unknown {
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
