//! One media message as the hub shares it: the payload plus its serialized forms, each built
//! once on first use and then shared by every subscriber of that output format.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

use crate::media::{FrameFlags, MediaKind, flv};
use crate::rtmp::chunk;
use crate::rtmp::message as msg;

/// The message stream id that the shared RTMP serialization is made for. Our server hands out
/// stream id 1 to the first `createStream` of a connection, which is the one players use.
pub const SHARED_STREAM_ID: u32 = 1;

/// One audio, video or metadata message, shared by `Arc` among all players of a stream.
#[derive(Debug)]
pub struct Frame {
    /// Audio, video or metadata.
    pub kind: MediaKind,
    /// Output timestamp in milliseconds (already rebased by the hub).
    pub timestamp: u32,
    /// The message body: an FLV tag body (audio/video) or AMF0 `onMetaData`.
    pub payload: Bytes,
    /// Key frame and sequence header, as classified where the stream was published.
    pub flags: FrameFlags,
    chunk_size: u32,
    rtmp: OnceLock<Bytes>,
    flv: OnceLock<Bytes>,
}

impl Frame {
    /// A frame whose serialized forms use RTMP chunks of `chunk_size` bytes.
    pub fn new(
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
        flags: FrameFlags,
        chunk_size: u32,
    ) -> Self {
        Self {
            kind,
            timestamp,
            payload,
            flags,
            chunk_size,
            rtmp: OnceLock::new(),
            flv: OnceLock::new(),
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    fn rtmp_ids(&self) -> (u32, u8) {
        match self.kind {
            MediaKind::Audio => (msg::CSID_AUDIO, msg::AUDIO),
            MediaKind::Video => (msg::CSID_VIDEO, msg::VIDEO),
            MediaKind::Metadata => (msg::CSID_DATA, msg::DATA_AMF0),
        }
    }

    /// RTMP chunks for message stream `SHARED_STREAM_ID`, built once for all players.
    pub fn rtmp_chunks(&self) -> &Bytes {
        self.rtmp
            .get_or_init(|| self.encode_rtmp(SHARED_STREAM_ID, self.timestamp))
    }

    /// RTMP chunks for another stream id or timestamp: the rare per-player path.
    pub fn encode_rtmp(&self, stream_id: u32, timestamp: u32) -> Bytes {
        let (csid, type_id) = self.rtmp_ids();
        let chunks = self.payload.len().div_ceil(self.chunk_size as usize).max(1);
        let mut out = BytesMut::with_capacity(self.payload.len() + chunks * 8 + 16);
        chunk::encode_message(
            &mut out,
            csid,
            timestamp,
            type_id,
            stream_id,
            &self.payload,
            self.chunk_size as usize,
        );
        out.freeze()
    }

    /// The FLV tag for HTTP-FLV players, built once for all of them.
    pub fn flv_tag(&self) -> &Bytes {
        self.flv.get_or_init(|| {
            let tag_type = match self.kind {
                MediaKind::Audio => flv::TAG_AUDIO,
                MediaKind::Video => flv::TAG_VIDEO,
                MediaKind::Metadata => flv::TAG_SCRIPT,
            };
            flv::tag(tag_type, self.timestamp, &self.payload)
        })
    }
}
