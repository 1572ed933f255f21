//! The relay's wire format, sans-IO: what one QUIC stream between two nodes carries.
//!
//! Every message is a 9-byte header — kind (1 byte), timestamp (4, big endian), body length
//! (4, big endian) — followed by the body. A media kind carries the frame's flags in its two
//! high bits (key frame, sequence header): frames are classified once, at the node where the
//! publisher is, and every later hop takes the flags from the wire. The opening side sends one `Hello` naming the stream
//! and what it wants (push it to the peer, pull it from the peer, or just check the peer is
//! alive); then media and control messages flow. Media bodies are the RTMP message payloads
//! unchanged (FLV tag bodies), so a relayed frame is forwarded without re-encoding.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::media::{FrameFlags, MediaKind};

/// Header length of every message.
pub const HEADER_LEN: usize = 9;

const KIND_HELLO: u8 = 1;
const KIND_AUDIO: u8 = 8;
const KIND_VIDEO: u8 = 9;
const KIND_METADATA: u8 = 18;
const KIND_UNPUBLISHED: u8 = 0x20;
const KIND_PUBLISHED: u8 = 0x21;
const KIND_KEEPALIVE: u8 = 0x22;
const KIND_REFUSED: u8 = 0x23;
const KIND_ACCEPTED: u8 = 0x24;
const KIND_TAKEN: u8 = 0x25;
/// Flags in the kind byte of audio and video messages.
const FLAG_KEYFRAME: u8 = 0x40;
const FLAG_SEQUENCE_HEADER: u8 = 0x80;
const FLAGS: u8 = FLAG_KEYFRAME | FLAG_SEQUENCE_HEADER;

const OP_PUSH: u8 = 1;
const OP_PULL: u8 = 2;
const OP_PING: u8 = 3;

/// What the opening side of a relay stream asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// "I have publisher of `key`; take it" (edge → owner).
    Push {
        /// The stream name, `app/key`.
        key: String,
    },
    /// "Send me `key`; wait up to `hold_ms` for its publisher" (edge → owner).
    Pull {
        /// The stream name, `app/key`.
        key: String,
        /// How long the owner holds the request for a publisher, in milliseconds.
        hold_ms: u32,
    },
    /// "Are you there?" — answered by one keep-alive; used to clear a dead mark.
    Ping,
}

/// One message on a relay stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMessage {
    /// The first message of a relay stream, from the opening side.
    Hello(Hello),
    /// An audio, video or metadata message.
    Media(Media),
    /// The stream's publisher went away (players wait for a republish).
    Unpublished,
    /// A publisher (re)started the stream.
    Published,
    /// Sent when nothing else was for a while, so either side can tell a silent peer from a
    /// dead one.
    Keepalive,
    /// The request cannot be served; the reason is for logs.
    Refused(String),
    /// The owner takes this push: the pushing node's publisher is the stream's one publisher.
    Accepted,
    /// The owner refuses (or ends) this push because another publisher has the stream; the
    /// pushing node must stop its publisher. The text is for logs.
    Taken(String),
}

/// One media message: an RTMP audio, video or data payload with its timestamp and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Audio, video or metadata.
    pub kind: MediaKind,
    /// Key frame and sequence header, as classified at the publisher's node.
    pub flags: FrameFlags,
    /// Message timestamp in milliseconds.
    pub timestamp: u32,
    /// The RTMP message payload (an FLV tag body, or AMF0 `onMetaData`).
    pub payload: Bytes,
}

/// Why bytes from a relay stream could not be decoded; the stream is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A header announcing a body longer than the decoder's limit.
    #[error("relay message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced body length in bytes.
        len: usize,
        /// The decoder's limit in bytes.
        max: usize,
    },
    /// A kind byte that names no message (or flags on a non-media kind).
    #[error("unknown relay message kind {0:#04x}")]
    UnknownKind(u8),
    /// A `Hello` body that is too short, has an unknown operation or an invalid stream name.
    #[error("malformed relay hello: {0}")]
    BadHello(&'static str),
    /// A stream name or refusal reason that is not UTF-8.
    #[error("relay text is not UTF-8")]
    NotUtf8,
}

/// Splits a byte stream into messages. Bodies are split off the read buffer without copying.
#[derive(Debug)]
pub struct Decoder {
    max_body: usize,
}

impl Decoder {
    /// A decoder that refuses bodies over `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        Self { max_body }
    }

    /// The next whole message in `buf`, consuming it; `None` until one is complete. An error
    /// means the stream is corrupt and must be closed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<RelayMessage>, WireError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let (kind, flags) = split_kind(buf[0])?;
        let timestamp = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let len = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
        if len > self.max_body {
            return Err(WireError::TooLarge {
                len,
                max: self.max_body,
            });
        }
        if buf.len() < HEADER_LEN + len {
            buf.reserve(HEADER_LEN + len - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let body = buf.split_to(len).freeze();
        let media = |kind| {
            RelayMessage::Media(Media {
                kind,
                flags,
                timestamp,
                payload: body.clone(),
            })
        };
        Ok(Some(match kind {
            KIND_HELLO => RelayMessage::Hello(decode_hello(&body)?),
            KIND_AUDIO => media(MediaKind::Audio),
            KIND_VIDEO => media(MediaKind::Video),
            KIND_METADATA => media(MediaKind::Metadata),
            KIND_UNPUBLISHED => RelayMessage::Unpublished,
            KIND_PUBLISHED => RelayMessage::Published,
            KIND_KEEPALIVE => RelayMessage::Keepalive,
            KIND_REFUSED => RelayMessage::Refused(text(&body)?),
            KIND_ACCEPTED => RelayMessage::Accepted,
            KIND_TAKEN => RelayMessage::Taken(text(&body)?),
            other => return Err(WireError::UnknownKind(other)),
        }))
    }
}

/// The message kind and, for audio and video, the frame flags of a header's kind byte.
/// Unknown kinds (and flags on anything but audio or video) are errors.
fn split_kind(byte: u8) -> Result<(u8, FrameFlags), WireError> {
    let base = byte & !FLAGS;
    let flags = FrameFlags {
        keyframe: byte & FLAG_KEYFRAME != 0,
        sequence_header: byte & FLAG_SEQUENCE_HEADER != 0,
    };
    let known = match base {
        KIND_AUDIO | KIND_VIDEO => true,
        KIND_HELLO | KIND_METADATA | KIND_UNPUBLISHED | KIND_PUBLISHED | KIND_KEEPALIVE
        | KIND_REFUSED | KIND_ACCEPTED | KIND_TAKEN => byte & FLAGS == 0,
        _ => false,
    };
    if !known {
        return Err(WireError::UnknownKind(byte));
    }
    Ok((base, flags))
}

fn text(body: &[u8]) -> Result<String, WireError> {
    String::from_utf8(body.to_vec()).map_err(|_| WireError::NotUtf8)
}

fn decode_hello(mut body: &[u8]) -> Result<Hello, WireError> {
    if body.len() < 5 {
        return Err(WireError::BadHello("shorter than 5 bytes"));
    }
    let op = body.get_u8();
    let hold_ms = body.get_u32();
    let key = text(body)?;
    match op {
        OP_PING if key.is_empty() => Ok(Hello::Ping),
        OP_PUSH | OP_PULL if crate::hub::validate_stream_name(&key).is_err() => {
            Err(WireError::BadHello("invalid stream name"))
        }
        OP_PUSH => Ok(Hello::Push { key }),
        OP_PULL => Ok(Hello::Pull { key, hold_ms }),
        _ => Err(WireError::BadHello("unknown operation")),
    }
}

fn header(kind: u8, timestamp: u32, len: usize) -> Bytes {
    let mut h = BytesMut::with_capacity(HEADER_LEN);
    h.put_u8(kind);
    h.put_u32(timestamp);
    h.put_u32(len as u32);
    h.freeze()
}

/// Encodes a message as header and body; media bodies are the shared payload, not a copy.
pub fn encode(message: &RelayMessage) -> [Bytes; 2] {
    let empty = |kind| [header(kind, 0, 0), Bytes::new()];
    let with_text = |kind, text: &String| {
        [
            header(kind, 0, text.len()),
            Bytes::copy_from_slice(text.as_bytes()),
        ]
    };
    match message {
        RelayMessage::Hello(hello) => {
            let (op, hold, key) = match hello {
                Hello::Push { key } => (OP_PUSH, 0, key.as_str()),
                Hello::Pull { key, hold_ms } => (OP_PULL, *hold_ms, key.as_str()),
                Hello::Ping => (OP_PING, 0, ""),
            };
            let mut body = BytesMut::with_capacity(5 + key.len());
            body.put_u8(op);
            body.put_u32(hold);
            body.put_slice(key.as_bytes());
            [header(KIND_HELLO, 0, body.len()), body.freeze()]
        }
        RelayMessage::Media(Media {
            kind,
            flags,
            timestamp,
            payload,
        }) => {
            let mut byte = match kind {
                MediaKind::Audio => KIND_AUDIO,
                MediaKind::Video => KIND_VIDEO,
                MediaKind::Metadata => KIND_METADATA,
            };
            if *kind != MediaKind::Metadata {
                if flags.keyframe {
                    byte |= FLAG_KEYFRAME;
                }
                if flags.sequence_header {
                    byte |= FLAG_SEQUENCE_HEADER;
                }
            }
            [header(byte, *timestamp, payload.len()), payload.clone()]
        }
        RelayMessage::Unpublished => empty(KIND_UNPUBLISHED),
        RelayMessage::Published => empty(KIND_PUBLISHED),
        RelayMessage::Keepalive => empty(KIND_KEEPALIVE),
        RelayMessage::Refused(why) => with_text(KIND_REFUSED, why),
        RelayMessage::Accepted => empty(KIND_ACCEPTED),
        RelayMessage::Taken(why) => with_text(KIND_TAKEN, why),
    }
}

/// Fuzz entry point (`node/fuzz`, target `relay_wire`; its corpus is replayed by a unit
/// test): feeds `data` in uneven pieces; every decoded message must survive re-encoding, and
/// the decoder must stop at the first error without panicking.
pub fn fuzz_decoder(data: &[u8]) {
    let decoder = Decoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    for piece in data.chunks(37) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    let mut again = BytesMut::new();
                    for part in encode(&message) {
                        again.extend_from_slice(&part);
                    }
                    let decoded = decoder
                        .decode(&mut again)
                        .expect("our own encoding decodes");
                    assert_eq!(
                        decoded,
                        Some(message),
                        "relay message changed in a round trip"
                    );
                    assert!(again.is_empty());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(message: RelayMessage) {
        let mut buf = BytesMut::new();
        for part in encode(&message) {
            buf.extend_from_slice(&part);
        }
        let decoder = Decoder::new(1 << 20);
        // Byte by byte: nothing until the last byte, then exactly the message.
        let all = buf.split().freeze();
        for (i, b) in all.iter().enumerate() {
            buf.put_u8(*b);
            let got = decoder.decode(&mut buf).unwrap();
            if i + 1 < all.len() {
                assert_eq!(got, None, "early message at byte {i}");
            } else {
                assert_eq!(got, Some(message.clone()));
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn every_message_roundtrips_byte_by_byte() {
        roundtrip(RelayMessage::Hello(Hello::Push {
            key: "live/cam".into(),
        }));
        roundtrip(RelayMessage::Hello(Hello::Pull {
            key: "live/cam".into(),
            hold_ms: 10_000,
        }));
        roundtrip(RelayMessage::Hello(Hello::Ping));
        roundtrip(RelayMessage::Media(Media {
            kind: MediaKind::Video,
            flags: FrameFlags {
                keyframe: true,
                sequence_header: false,
            },
            timestamp: 0xdead_beef,
            payload: Bytes::from_static(b"\x17\x01frame"),
        }));
        roundtrip(RelayMessage::Media(Media {
            kind: MediaKind::Audio,
            flags: FrameFlags {
                keyframe: false,
                sequence_header: true,
            },
            timestamp: 1,
            payload: Bytes::new(),
        }));
        roundtrip(RelayMessage::Media(Media {
            kind: MediaKind::Metadata,
            flags: FrameFlags::default(),
            timestamp: 0,
            payload: Bytes::from_static(b"\x02\x00\x0aonMetaData"),
        }));
        roundtrip(RelayMessage::Unpublished);
        roundtrip(RelayMessage::Published);
        roundtrip(RelayMessage::Keepalive);
        roundtrip(RelayMessage::Refused("no publisher".into()));
        roundtrip(RelayMessage::Accepted);
        roundtrip(RelayMessage::Taken(
            "live/a is already being published".into(),
        ));
    }

    #[test]
    fn flags_only_on_audio_and_video() {
        let decoder = Decoder::new(1 << 20);
        for byte in [
            KIND_METADATA | FLAG_KEYFRAME,
            KIND_KEEPALIVE | FLAG_SEQUENCE_HEADER,
        ] {
            let mut buf = BytesMut::from(&header(byte, 0, 0)[..]);
            assert_eq!(decoder.decode(&mut buf), Err(WireError::UnknownKind(byte)));
        }
    }

    #[test]
    fn oversized_body_is_refused_from_the_header_alone() {
        let mut buf = BytesMut::from(&header(KIND_VIDEO, 0, 2 << 20)[..]);
        let err = Decoder::new(1 << 20).decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            WireError::TooLarge {
                len: 2 << 20,
                max: 1 << 20
            }
        );
    }

    #[test]
    fn unknown_kind_and_bad_hello_are_errors() {
        let decoder = Decoder::new(1024);
        let mut buf = BytesMut::from(&header(0x7f, 0, 0)[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap_err(),
            WireError::UnknownKind(0x7f)
        );
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&header(KIND_HELLO, 0, 7));
        buf.extend_from_slice(&[OP_PUSH, 0, 0, 0, 0, b'.', b'/']);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(WireError::BadHello(_))
        ));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&header(KIND_HELLO, 0, 2));
        buf.extend_from_slice(&[OP_PUSH, 0]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(WireError::BadHello(_))
        ));
    }

    #[test]
    fn two_messages_in_one_buffer_come_out_in_order() {
        let mut buf = BytesMut::new();
        for m in [RelayMessage::Published, RelayMessage::Keepalive] {
            for part in encode(&m) {
                buf.extend_from_slice(&part);
            }
        }
        let decoder = Decoder::new(16);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(RelayMessage::Published)
        );
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Some(RelayMessage::Keepalive)
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn fuzz_corpus_replays_cleanly() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/relay_wire");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            fuzz_decoder(&std::fs::read(entry.unwrap().path()).unwrap());
            count += 1;
        }
        assert!(count > 0, "empty corpus in {}", dir.display());
    }
}
