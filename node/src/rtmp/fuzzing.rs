//! Entry points shared by the fuzz targets in `node/fuzz` and the unit test that replays their
//! committed corpus. Each must return normally for any input; a panic is a bug.

use bytes::BytesMut;

use super::amf0;
use super::chunk::{ChunkDecoder, ChunkLimits};
use super::message::{ABORT, Message, SET_CHUNK_SIZE};
use super::server::{ServerConfig, ServerEvent, ServerSession};

/// Decodes AMF0 and checks that re-encoding is stable.
pub fn amf0_decode(data: &[u8]) {
    if let Ok(values) = amf0::decode_all(data) {
        let mut once = BytesMut::new();
        amf0::encode_all(&values, &mut once);
        let again = amf0::decode_all(&once).expect("our own encoding must decode");
        let mut twice = BytesMut::new();
        amf0::encode_all(&again, &mut twice);
        assert_eq!(once, twice, "AMF0 re-encoding is not stable");
    }
}

/// The first two bytes pick the initial chunk size; the rest is fed in two parts, honouring
/// Set Chunk Size and Abort messages found in the stream.
pub fn chunk_decoder(data: &[u8]) {
    let Some((size, data)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limits = ChunkLimits {
        max_message_size: 1 << 20,
        max_chunk_streams: 16,
    };
    let mut decoder = ChunkDecoder::new(limits);
    let _ = decoder.set_chunk_size(u32::from(u16::from_be_bytes(*size)));
    let (first, second) = data.split_at(data.len() / 2);
    let mut buf = BytesMut::new();
    for part in [first, second] {
        buf.extend_from_slice(part);
        loop {
            let before = buf.len();
            let Ok(Some(raw)) = decoder.decode(&mut buf) else {
                break;
            };
            assert!(buf.len() < before, "a message without consuming input");
            match Message::parse(&raw) {
                Ok(Message::SetChunkSize(n)) if raw.type_id == SET_CHUNK_SIZE => {
                    let _ = decoder.set_chunk_size(n);
                }
                Ok(Message::Abort(csid)) if raw.type_id == ABORT => decoder.abort(csid),
                _ => {}
            }
        }
    }
}

/// A valid simple handshake, then `data` in small pieces; publish and play requests are
/// accepted so media paths are reached too.
pub fn server_session(data: &[u8]) {
    let mut session = ServerSession::new(ServerConfig::default());
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[3]);
    buf.extend_from_slice(&[0; 2 * super::handshake::PACKET_SIZE]);
    assert!(session.feed(&mut buf).is_ok(), "valid handshake rejected");
    for piece in data.chunks(97) {
        buf.extend_from_slice(piece);
        if session.feed(&mut buf).is_err() {
            return;
        }
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::Publish { stream_id, .. } => session.accept_publish(stream_id),
                ServerEvent::Play { stream_id, .. } => session.accept_play(stream_id),
                _ => {}
            }
        }
        let _ = session.take_output();
    }
}
