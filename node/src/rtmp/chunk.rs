//! The RTMP chunk stream: splitting messages into chunks and reassembling them.
//!
//! Timestamps follow the spec (and ffmpeg, librtmp, rml_rtmp): a fmt 1/2 header carries a delta
//! that is added with 32-bit wrapping arithmetic, and a fmt 3 header that starts a new message
//! reuses the timestamp field of the previous header on that chunk stream (for a fmt 0 header,
//! that field is the absolute timestamp).

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

/// Chunk size every RTMP connection starts with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size we accept from a peer or use ourselves. The spec allows up to
/// 0x7FFFFFFF, but nothing sane goes beyond a few hundred KiB.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Highest chunk stream id a 3-byte basic header can carry.
pub const MAX_CSID: u32 = 65_599;

const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Most we reserve up front for a message spread over chunks. Covers nearly all media in one
/// allocation, while a peer announcing huge lengths on many chunk streams can not make us
/// reserve far more memory than it actually sends; bigger messages grow as they arrive.
const MAX_RESERVE: usize = 1024 * 1024;

/// A reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream id the message travelled on (2..=[`MAX_CSID`]).
    pub csid: u32,
    /// Absolute timestamp in milliseconds (wraps at 2^32).
    pub timestamp: u32,
    /// Message type id, e.g. [`AUDIO`](super::message::AUDIO).
    pub type_id: u8,
    /// Message stream id (0 for NetConnection-level messages).
    pub stream_id: u32,
    /// The reassembled message body.
    pub payload: Bytes,
}

/// Resource limits that protect the decoder against hostile peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest message length accepted in a header.
    pub max_message_size: u32,
    /// Largest number of distinct chunk stream ids per connection.
    pub max_chunk_streams: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_size: 8 * 1024 * 1024,
            max_chunk_streams: 64,
        }
    }
}

/// Why the chunk stream from a peer could not be decoded; the connection is dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// Set Chunk Size of 0 or above 2^31 - 1.
    #[error("chunk size {0} is outside 1..=2147483647")]
    InvalidChunkSize(u32),
    /// Set Chunk Size above our [`MAX_CHUNK_SIZE`].
    #[error("chunk size {size} exceeds our limit of {limit}")]
    ChunkSizeTooLarge {
        /// The requested chunk size in bytes.
        size: u32,
        /// [`MAX_CHUNK_SIZE`].
        limit: u32,
    },
    /// A message header announcing more than [`ChunkLimits::max_message_size`] bytes.
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge {
        /// The message length in the header, in bytes.
        size: u32,
        /// [`ChunkLimits::max_message_size`].
        limit: u32,
    },
    /// A new chunk stream id beyond [`ChunkLimits::max_chunk_streams`] (the limit).
    #[error("more than {0} chunk streams in use")]
    TooManyChunkStreams(usize),
    /// A fmt 1/2/3 header on a chunk stream that never had a fmt 0 header.
    #[error("chunk header fmt {fmt} on chunk stream {csid} which has no previous header")]
    UnknownChunkStream {
        /// The chunk stream id.
        csid: u32,
        /// The header format (1, 2 or 3).
        fmt: u8,
    },
}

/// Per chunk stream state needed to expand compressed headers.
#[derive(Debug, Default)]
struct StreamState {
    timestamp: u32,
    /// Timestamp field of the last fmt 0/1/2 header; fmt 3 starting a new message adds it.
    field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last fmt 0/1/2 header used the extended timestamp field.
    extended: bool,
    /// Payload of the message being reassembled (empty when between messages).
    partial: BytesMut,
    /// True while a message spans several chunks and more are expected.
    in_progress: bool,
}

/// Incremental chunk stream decoder.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: usize,
    streams: HashMap<u32, StreamState>,
}

/// A parsed basic + message header, not yet applied to stream state.
struct Header {
    fmt: u8,
    csid: u32,
    /// Bytes taken by the basic and message header (without the extended timestamp).
    len: usize,
    field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses the basic and message header at the front of `buf`, or `None` if incomplete.
fn parse_header(buf: &[u8]) -> Option<Header> {
    let first = *buf.first()?;
    let fmt = first >> 6;
    let (csid, basic_len) = match first & 0x3F {
        0 => (64 + u32::from(*buf.get(1)?), 2),
        1 => (
            64 + u32::from(*buf.get(1)?) + 256 * u32::from(*buf.get(2)?),
            3,
        ),
        n => (u32::from(n), 1),
    };
    let msg_len = [11, 7, 3, 0][fmt as usize];
    let h = buf.get(basic_len..basic_len + msg_len)?;
    let mut header = Header {
        fmt,
        csid,
        len: basic_len + msg_len,
        field: 0,
        length: 0,
        type_id: 0,
        stream_id: 0,
    };
    if fmt <= 2 {
        header.field = be24(&h[0..3]);
    }
    if fmt <= 1 {
        header.length = be24(&h[3..6]);
        header.type_id = h[6];
    }
    if fmt == 0 {
        // The message stream id is the one little-endian field in RTMP.
        header.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
    }
    Some(header)
}

impl ChunkDecoder {
    /// A decoder at the default chunk size of 128 bytes.
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE as usize,
            streams: HashMap::new(),
        }
    }

    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, n: u32) -> Result<(), ChunkError> {
        if n == 0 || n > 0x7FFF_FFFF {
            return Err(ChunkError::InvalidChunkSize(n));
        }
        if n > MAX_CHUNK_SIZE {
            return Err(ChunkError::ChunkSizeTooLarge {
                size: n,
                limit: MAX_CHUNK_SIZE,
            });
        }
        self.chunk_size = n as usize;
        Ok(())
    }

    /// The peer's current chunk size in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size as u32
    }

    /// Handles an Abort Message: drops the partly received message on `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(state) = self.streams.get_mut(&csid) {
            state.partial = BytesMut::new();
            state.in_progress = false;
        }
    }

    /// Consumes whole chunks from the front of `buf` until a message completes (returned) or
    /// the next chunk is incomplete (`Ok(None)`, the partial chunk stays in `buf`).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(header) = parse_header(buf) else {
                return Ok(None);
            };
            let before = buf.len();
            if let Some(message) = self.decode_chunk(&header, buf)? {
                return Ok(Some(message));
            }
            if buf.len() == before {
                return Ok(None);
            }
        }
    }

    /// Processes the single chunk whose header is `h`. Leaves `buf` untouched if the chunk is
    /// incomplete; callers tell the two cases apart by the length of `buf`.
    fn decode_chunk(
        &mut self,
        h: &Header,
        buf: &mut BytesMut,
    ) -> Result<Option<RawMessage>, ChunkError> {
        if !self.streams.contains_key(&h.csid) {
            if h.fmt != 0 {
                return Err(ChunkError::UnknownChunkStream {
                    csid: h.csid,
                    fmt: h.fmt,
                });
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(ChunkError::TooManyChunkStreams(
                    self.limits.max_chunk_streams,
                ));
            }
        }
        let state = self.streams.entry(h.csid).or_default();

        let continuation = h.fmt == 3 && state.in_progress;
        let mut header_len = h.len;
        let mut field = h.field;
        let has_extended = if h.fmt == 3 {
            state.extended
        } else {
            h.field == EXTENDED_TIMESTAMP
        };
        if has_extended {
            let Some(ext) = buf.get(header_len..header_len + 4) else {
                return Ok(None);
            };
            let ext = be32(ext);
            // Like SRS/nginx: some senders (librtmp) omit the extended field on continuation
            // chunks, others (ffmpeg, FMS) repeat it. Only take it if it matches.
            if !continuation || ext == state.field {
                header_len += 4;
                field = ext;
            }
        }

        // Resolve the header of a new message without touching `state` yet.
        let (timestamp, length, type_id, stream_id) = match h.fmt {
            _ if continuation => (
                state.timestamp,
                state.length,
                state.type_id,
                state.stream_id,
            ),
            0 => (field, h.length, h.type_id, h.stream_id),
            1 => (
                state.timestamp.wrapping_add(field),
                h.length,
                h.type_id,
                state.stream_id,
            ),
            2 => (
                state.timestamp.wrapping_add(field),
                state.length,
                state.type_id,
                state.stream_id,
            ),
            _ => (
                state
                    .timestamp
                    .wrapping_add(field_for_fmt3(state, has_extended, field)),
                state.length,
                state.type_id,
                state.stream_id,
            ),
        };
        if length > self.limits.max_message_size {
            return Err(ChunkError::MessageTooLarge {
                size: length,
                limit: self.limits.max_message_size,
            });
        }
        let received = if continuation { state.partial.len() } else { 0 };
        let body = (length as usize - received).min(self.chunk_size);
        if buf.len() < header_len + body {
            return Ok(None);
        }

        // The chunk is complete: commit.
        if !continuation {
            if h.fmt != 3 {
                state.field = field;
                state.extended = has_extended;
            }
            state.timestamp = timestamp;
            state.length = length;
            state.type_id = type_id;
            state.stream_id = stream_id;
            // A new header while a message was in progress abandons that message.
            state.partial = BytesMut::new();
            state.in_progress = false;
        }
        let _ = buf.split_to(header_len);
        let payload = if !continuation && body == length as usize {
            // Whole message in one chunk: no copy.
            buf.split_to(body).freeze()
        } else {
            if !continuation {
                state.partial.reserve((length as usize).min(MAX_RESERVE));
            }
            state.partial.extend_from_slice(&buf[..body]);
            let _ = buf.split_to(body);
            if state.partial.len() < length as usize {
                state.in_progress = true;
                return Ok(None);
            }
            state.in_progress = false;
            state.partial.split().freeze()
        };
        Ok(Some(RawMessage {
            csid: h.csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        }))
    }
}

/// The delta a fmt 3 header starting a new message applies.
fn field_for_fmt3(state: &StreamState, has_extended: bool, field: u32) -> u32 {
    if has_extended { field } else { state.field }
}

fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    debug_assert!((2..=MAX_CSID).contains(&csid), "csid {csid} out of range");
    match csid {
        0..=63 => out.put_u8((fmt << 6) | csid as u8),
        64..=319 => out.put_slice(&[fmt << 6, (csid - 64) as u8]),
        _ => {
            let id = csid - 64;
            out.put_slice(&[(fmt << 6) | 1, id as u8, (id >> 8) as u8]);
        }
    }
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_slice(&v.to_be_bytes()[1..]);
}

/// Writes one message as chunks: a fmt 0 header, then fmt 3 continuations (repeating the
/// extended timestamp when present, as ffmpeg and FMS do).
///
/// Stateless, so one serialization can be shared by every player of a stream. `csid` must be
/// in 2..=65599; a `chunk_size` of 0 is treated as 1.
pub fn encode_message(
    out: &mut BytesMut,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) {
    let chunk_size = chunk_size.max(1);
    let extended = timestamp >= EXTENDED_TIMESTAMP;
    let ext_len = if extended { 4 } else { 0 };
    let basic = basic_header_len(csid);
    let chunks = payload.len().div_ceil(chunk_size).max(1);
    out.reserve(basic + 11 + ext_len + (chunks - 1) * (basic + ext_len) + payload.len());

    put_basic_header(out, 0, csid);
    put_u24(out, timestamp.min(EXTENDED_TIMESTAMP));
    put_u24(out, payload.len() as u32);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    for (i, chunk) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            put_basic_header(out, 3, csid);
        }
        if extended {
            out.put_u32(timestamp);
        }
        out.put_slice(chunk);
    }
    if payload.is_empty() && extended {
        out.put_u32(timestamp);
    }
}

/// What the peer knows about one of our chunk streams.
#[derive(Debug, Clone, Copy)]
struct SentHeader {
    timestamp: u32,
    field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Stateful encoder that compresses headers (fmt 1/2/3) per chunk stream.
///
/// It must own every chunk stream it writes on: a message written to the same csid by other
/// means would desynchronise the peer's header state.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    sent: HashMap<u32, SentHeader>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder at the default chunk size of 128 bytes, with no header state.
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            sent: HashMap::new(),
        }
    }

    /// Changes the chunk size used from now on (clamped to 1..=[`MAX_CHUNK_SIZE`]). The caller
    /// must tell the peer with a Set Chunk Size message first.
    pub fn set_chunk_size(&mut self, n: u32) {
        self.chunk_size = n.clamp(1, MAX_CHUNK_SIZE);
    }

    /// Our current outgoing chunk size in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Appends `msg` to `out` as chunks, compressing the header against the previous one on
    /// the same chunk stream.
    pub fn encode(&mut self, out: &mut BytesMut, msg: &RawMessage) {
        let length = msg.payload.len() as u32;
        let prev = self.sent.get(&msg.csid).copied();
        // Backwards timestamps get a full header: some peers do not wrap deltas.
        let (fmt, field) = match prev {
            Some(p) if p.stream_id == msg.stream_id && msg.timestamp >= p.timestamp => {
                let delta = msg.timestamp - p.timestamp;
                if p.type_id != msg.type_id || p.length != length {
                    (1, delta)
                } else if p.field != delta {
                    (2, delta)
                } else {
                    (3, delta)
                }
            }
            _ => (0, msg.timestamp),
        };
        self.sent.insert(
            msg.csid,
            SentHeader {
                timestamp: msg.timestamp,
                field,
                length,
                type_id: msg.type_id,
                stream_id: msg.stream_id,
            },
        );

        let chunk_size = self.chunk_size as usize;
        let extended = field >= EXTENDED_TIMESTAMP;
        let ext_len = if extended { 4 } else { 0 };
        let basic = basic_header_len(msg.csid);
        let chunks = msg.payload.len().div_ceil(chunk_size).max(1);
        let first_len = basic + [11, 7, 3, 0][fmt as usize] + ext_len;
        out.reserve(first_len + (chunks - 1) * (basic + ext_len) + msg.payload.len());

        put_basic_header(out, fmt, msg.csid);
        if fmt <= 2 {
            put_u24(out, field.min(EXTENDED_TIMESTAMP));
        }
        if fmt <= 1 {
            put_u24(out, length);
            out.put_u8(msg.type_id);
        }
        if fmt == 0 {
            out.put_u32_le(msg.stream_id);
        }
        if msg.payload.is_empty() && extended {
            out.put_u32(field);
        }
        for (i, chunk) in msg.payload.chunks(chunk_size).enumerate() {
            if i > 0 {
                put_basic_header(out, 3, msg.csid);
            }
            if extended {
                out.put_u32(field);
            }
            out.put_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn decode_all(dec: &mut ChunkDecoder, wire: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut buf)? {
            out.push(m);
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(out)
    }

    /// Feeds `wire` one byte at a time, checking that partial chunks are never consumed.
    fn decode_bytewise(dec: &mut ChunkDecoder, wire: &[u8]) -> Vec<RawMessage> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in wire {
            buf.put_u8(b);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        out
    }

    fn dec() -> ChunkDecoder {
        ChunkDecoder::new(ChunkLimits::default())
    }

    /// Hand-written chunk header so the tests do not depend on our encoder.
    fn header(fmt: u8, csid: u32, fields: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_basic_header(&mut out, fmt, csid);
        out.put_slice(fields);
        out.to_vec()
    }

    fn fmt0(csid: u32, ts: u32, len: u32, type_id: u8, sid: u32) -> Vec<u8> {
        let mut f = ts.min(0xFFFFFF).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&len.to_be_bytes()[1..]);
        f.push(type_id);
        f.extend_from_slice(&sid.to_le_bytes());
        if ts >= 0xFFFFFF {
            f.extend_from_slice(&ts.to_be_bytes());
        }
        header(0, csid, &f)
    }

    #[test]
    fn all_four_header_types() {
        let mut wire = fmt0(4, 1000, 3, 9, 1);
        wire.extend_from_slice(b"abc");
        // fmt 1: delta 40, new length and type
        wire.extend(header(1, 4, &[0, 0, 40, 0, 0, 2, 8]));
        wire.extend_from_slice(b"de");
        // fmt 2: delta 20
        wire.extend(header(2, 4, &[0, 0, 20]));
        wire.extend_from_slice(b"fg");
        // fmt 3: everything repeated, delta 20 again
        wire.extend(header(3, 4, &[]));
        wire.extend_from_slice(b"hi");
        let got = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(
            got,
            vec![
                msg(4, 1000, 9, 1, b"abc"),
                msg(4, 1040, 8, 1, b"de"),
                msg(4, 1060, 8, 1, b"fg"),
                msg(4, 1080, 8, 1, b"hi"),
            ]
        );
        assert_eq!(decode_bytewise(&mut dec(), &wire), got);
    }

    #[test]
    fn fmt3_new_message_after_fmt0_reuses_the_absolute_field() {
        let mut wire = fmt0(3, 10, 1, 20, 0);
        wire.push(b'a');
        wire.extend(header(3, 3, &[]));
        wire.push(b'b');
        let got = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(got[1].timestamp, 20);
    }

    #[test]
    fn basic_header_sizes() {
        for csid in [2, 63, 64, 319, 320, 65_599] {
            let mut wire = BytesMut::new();
            encode_message(&mut wire, csid, 5, 8, 1, b"x", 128);
            let expected = basic_header_len(csid);
            assert_eq!(wire.len(), expected + 11 + 1, "csid {csid}");
            let got = decode_all(&mut dec(), &wire).unwrap();
            assert_eq!(got, vec![msg(csid, 5, 8, 1, b"x")]);
        }
        // Hand-checked encodings of the 2- and 3-byte forms.
        assert_eq!(header(0, 64, &[]), vec![0x00, 0x00]);
        assert_eq!(header(3, 65_599, &[]), vec![0xC1, 0xFF, 0xFF]);
    }

    #[test]
    fn extended_timestamp_on_fmt0_and_fmt3_continuations() {
        let ts = 0x0123_4567;
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 6, ts, 9, 1, &payload, 128);
        // 12-byte header + 4 ext, then two continuations of 1 + 4 bytes.
        assert_eq!(wire.len(), 12 + 4 + 2 * 5 + 300);
        assert_eq!(&wire[1..4], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(&wire[12..16], &ts.to_be_bytes());
        assert_eq!(
            &wire[16 + 128..16 + 128 + 5],
            &[0xC6, 0x01, 0x23, 0x45, 0x67]
        );
        let got = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(got, vec![msg(6, ts, 9, 1, &payload)]);
        assert_eq!(decode_bytewise(&mut dec(), &wire), got);
    }

    #[test]
    fn extended_timestamp_omitted_on_continuations_is_tolerated() {
        let ts = 0x0200_0000;
        let payload = [7u8; 200];
        let mut wire = fmt0(6, ts, 200, 9, 1);
        wire.extend_from_slice(&payload[..128]);
        wire.extend(header(3, 6, &[]));
        wire.extend_from_slice(&payload[128..]);
        let got = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(got, vec![msg(6, ts, 9, 1, &payload)]);
    }

    #[test]
    fn extended_delta_on_fmt1_and_fmt3_new_message() {
        let mut wire = fmt0(5, 0, 1, 8, 1);
        wire.push(1);
        let mut f = vec![0xFF, 0xFF, 0xFF, 0, 0, 1, 8];
        f.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        wire.extend(header(1, 5, &f));
        wire.push(2);
        // fmt 3 new message: repeats the extended delta
        wire.extend(header(3, 5, &0x0100_0000u32.to_be_bytes()));
        wire.push(3);
        let got = decode_all(&mut dec(), &wire).unwrap();
        let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![0, 0x0100_0000, 0x0200_0000]);
    }

    #[test]
    fn timestamp_delta_wraps_around() {
        let mut wire = fmt0(4, 0xFFFF_FFF0, 1, 9, 1);
        wire.push(0);
        wire.extend(header(2, 4, &[0, 0, 0x20]));
        wire.push(0);
        let got = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(got[1].timestamp, 0x10);
    }

    #[test]
    fn chunk_size_change_mid_stream() {
        let payload = [9u8; 1000];
        let mut d = dec();
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 4, 0, 9, 1, &payload, 128);
        assert_eq!(decode_all(&mut d, &wire).unwrap()[0].payload.len(), 1000);
        d.set_chunk_size(500).unwrap();
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 4, 1, 9, 1, &payload, 500);
        assert_eq!(wire.len(), 12 + 1 + 1000);
        assert_eq!(decode_all(&mut d, &wire).unwrap()[0].payload.len(), 1000);
    }

    #[test]
    fn message_larger_than_the_reservation() {
        let payload: Vec<u8> = (0..3 * MAX_RESERVE as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 7, 1, 9, 1, &payload, 65_536);
        let mut d = dec();
        d.set_chunk_size(65_536).unwrap();
        assert_eq!(
            decode_all(&mut d, &wire).unwrap(),
            vec![msg(7, 1, 9, 1, &payload)]
        );
    }

    #[test]
    fn set_chunk_size_validation() {
        let mut d = dec();
        assert_eq!(d.set_chunk_size(0), Err(ChunkError::InvalidChunkSize(0)));
        assert_eq!(
            d.set_chunk_size(0x8000_0000),
            Err(ChunkError::InvalidChunkSize(0x8000_0000))
        );
        assert!(matches!(
            d.set_chunk_size(MAX_CHUNK_SIZE + 1),
            Err(ChunkError::ChunkSizeTooLarge { .. })
        ));
        d.set_chunk_size(MAX_CHUNK_SIZE).unwrap();
        assert_eq!(d.chunk_size(), MAX_CHUNK_SIZE);
    }

    #[test]
    fn interleaved_chunk_streams() {
        let a = [1u8; 300];
        let v = [2u8; 200];
        let mut wire = fmt0(6, 10, 300, 9, 1);
        wire.extend_from_slice(&a[..128]);
        wire.extend(fmt0(4, 11, 200, 8, 1));
        wire.extend_from_slice(&v[..128]);
        wire.extend(header(3, 6, &[]));
        wire.extend_from_slice(&a[128..256]);
        wire.extend(header(3, 4, &[]));
        wire.extend_from_slice(&v[128..]);
        wire.extend(header(3, 6, &[]));
        wire.extend_from_slice(&a[256..]);
        let got = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(got, vec![msg(4, 11, 8, 1, &v), msg(6, 10, 9, 1, &a)]);
        assert_eq!(decode_bytewise(&mut dec(), &wire), got);
    }

    #[test]
    fn abort_discards_partial_message() {
        let mut d = dec();
        let mut wire = fmt0(6, 10, 300, 9, 1);
        wire.extend_from_slice(&[1u8; 128]);
        assert!(decode_all(&mut d, &wire).unwrap().is_empty());
        d.abort(6);
        // After the abort a fmt 3 header starts a new message (delta 10 reused).
        let mut wire = header(3, 6, &[]);
        wire.extend_from_slice(&[2u8; 128]);
        wire.extend(header(3, 6, &[]));
        wire.extend_from_slice(&[2u8; 128]);
        wire.extend(header(3, 6, &[]));
        wire.extend_from_slice(&[2u8; 44]);
        let got = decode_all(&mut d, &wire).unwrap();
        assert_eq!(got, vec![msg(6, 20, 9, 1, &[2u8; 300])]);
    }

    #[test]
    fn oversized_message_is_rejected() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_message_size: 1000,
            max_chunk_streams: 4,
        });
        let wire = fmt0(4, 0, 1001, 9, 1);
        assert_eq!(
            decode_all(&mut d, &wire),
            Err(ChunkError::MessageTooLarge {
                size: 1001,
                limit: 1000
            })
        );
    }

    #[test]
    fn too_many_chunk_streams() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_message_size: 1000,
            max_chunk_streams: 2,
        });
        let mut wire = Vec::new();
        for csid in 2..5 {
            wire.extend(fmt0(csid, 0, 0, 9, 1));
        }
        assert_eq!(
            decode_all(&mut d, &wire),
            Err(ChunkError::TooManyChunkStreams(2))
        );
    }

    #[test]
    fn unknown_csid_on_compressed_headers() {
        for (fmt, fields) in [
            (1u8, &[0u8, 0, 0, 0, 0, 1, 8][..]),
            (2, &[0, 0, 0]),
            (3, &[]),
        ] {
            let wire = header(fmt, 7, fields);
            assert_eq!(
                decode_all(&mut dec(), &wire),
                Err(ChunkError::UnknownChunkStream { csid: 7, fmt })
            );
        }
    }

    #[test]
    fn zero_length_messages() {
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 3, 0x0100_0000, 20, 0, b"", 128);
        encode_message(&mut wire, 3, 1, 20, 0, b"", 128);
        let got = decode_all(&mut dec(), &wire).unwrap();
        assert_eq!(
            got,
            vec![msg(3, 0x0100_0000, 20, 0, b""), msg(3, 1, 20, 0, b"")]
        );
    }

    #[test]
    fn encoder_compresses_headers() {
        let mut enc = ChunkEncoder::new();
        let mut wire = BytesMut::new();
        enc.encode(&mut wire, &msg(4, 0, 8, 1, b"aa"));
        assert_eq!(wire.len(), 12 + 2);
        wire.clear();
        enc.encode(&mut wire, &msg(4, 20, 8, 1, b"bbb"));
        assert_eq!(wire[0] >> 6, 1);
        wire.clear();
        enc.encode(&mut wire, &msg(4, 50, 8, 1, b"ccc"));
        assert_eq!(wire[0] >> 6, 2);
        wire.clear();
        enc.encode(&mut wire, &msg(4, 80, 8, 1, b"ddd"));
        assert_eq!(wire.len(), 1 + 3);
        wire.clear();
        enc.encode(&mut wire, &msg(4, 10, 8, 1, b"ddd"));
        assert_eq!(wire[0] >> 6, 0, "backwards timestamp uses fmt 0");
    }

    fn arb_messages() -> impl Strategy<Value = Vec<RawMessage>> {
        let one = (
            prop_oneof![2u32..10, 60u32..70, 315u32..325, 65_590u32..=65_599],
            prop_oneof![0u32..100, 0xFF_FFF0u32..0x100_0010, any::<u32>()],
            any::<u8>(),
            0u32..3,
            prop::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(
                |(csid, timestamp, type_id, stream_id, payload)| RawMessage {
                    csid,
                    timestamp,
                    type_id,
                    stream_id,
                    payload: payload.into(),
                },
            );
        prop::collection::vec(one, 1..12)
    }

    proptest! {
        #[test]
        fn encode_message_roundtrip(msgs in arb_messages(), chunk_size in 1usize..700) {
            let mut wire = BytesMut::new();
            for m in &msgs {
                encode_message(&mut wire, m.csid, m.timestamp, m.type_id, m.stream_id, &m.payload, chunk_size);
            }
            let mut d = dec();
            d.set_chunk_size(chunk_size as u32).unwrap();
            prop_assert_eq!(&decode_all(&mut d, &wire).unwrap(), &msgs);
            let mut d = dec();
            d.set_chunk_size(chunk_size as u32).unwrap();
            prop_assert_eq!(&decode_bytewise(&mut d, &wire), &msgs);
        }

        #[test]
        fn chunk_encoder_roundtrip(msgs in arb_messages(), chunk_size in 1u32..700) {
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(chunk_size);
            let mut wire = BytesMut::new();
            for m in &msgs {
                enc.encode(&mut wire, m);
            }
            let mut d = dec();
            d.set_chunk_size(chunk_size).unwrap();
            prop_assert_eq!(&decode_all(&mut d, &wire).unwrap(), &msgs);
        }

        /// Messages on different chunk streams, with their chunks interleaved at random.
        #[test]
        fn interleaved_roundtrip(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..400), 1..5),
            order in prop::collection::vec(0usize..5, 0..64),
            chunk_size in 1usize..200,
            timestamp in any::<u32>(),
        ) {
            // Encode each message on its own csid, then split the wire form into chunks.
            let mut per_stream: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut expected = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                let csid = 3 + i as u32;
                let m = msg(csid, timestamp, 9, 1, p);
                let mut wire = BytesMut::new();
                encode_message(&mut wire, csid, timestamp, 9, 1, p, chunk_size);
                let ext = if timestamp >= 0xFFFFFF { 4 } else { 0 };
                let mut chunks = Vec::new();
                let first = (12 + ext + p.len().min(chunk_size)).min(wire.len());
                chunks.push(wire.split_to(first).to_vec());
                while !wire.is_empty() {
                    let n = (1 + ext + chunk_size).min(wire.len());
                    chunks.push(wire.split_to(n).to_vec());
                }
                chunks.reverse();
                per_stream.push(chunks);
                expected.push(m);
            }
            let mut wire = Vec::new();
            let mut completed = Vec::new();
            for &i in &order {
                let i = i % payloads.len();
                if let Some(c) = per_stream[i].pop() {
                    wire.extend(c);
                    if per_stream[i].is_empty() { completed.push(i); }
                }
            }
            for (i, s) in per_stream.iter_mut().enumerate() {
                while let Some(c) = s.pop() {
                    wire.extend(c);
                    if s.is_empty() { completed.push(i); }
                }
            }
            let expected: Vec<RawMessage> = completed.iter().map(|&i| expected[i].clone()).collect();
            let mut d = dec();
            d.set_chunk_size(chunk_size as u32).unwrap();
            prop_assert_eq!(&decode_all(&mut d, &wire).unwrap(), &expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), cs in 1u32..300) {
            let mut d = dec();
            d.set_chunk_size(cs).unwrap();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = d.decode(&mut buf) {}
        }
    }
}
