//! FLV container pieces for HTTP-FLV playback: the file header and one tag per media message.
//! RTMP audio/video/data payloads are already FLV tag bodies, so a tag is an 11-byte header, the
//! payload, and the 4-byte previous-tag-size trailer.

use bytes::{BufMut, Bytes, BytesMut};

/// FLV tag type 8: audio.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type 9: video.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type 18: script data (`onMetaData`).
pub const TAG_SCRIPT: u8 = 18;

/// The 9-byte FLV header plus the zero PreviousTagSize0 that precedes the first tag.
pub fn header(has_audio: bool, has_video: bool) -> Bytes {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    Bytes::from(vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
}

/// One FLV tag: header, body and trailing PreviousTagSize. The timestamp is split into 24 low
/// bits and an 8-bit extension, as the format requires.
pub fn tag(tag_type: u8, timestamp: u32, body: &[u8]) -> Bytes {
    let data_size = body.len() as u32;
    let mut out = BytesMut::with_capacity(11 + body.len() + 4);
    out.put_u8(tag_type);
    out.put_uint(u64::from(data_size), 3);
    out.put_uint(u64::from(timestamp & 0x00FF_FFFF), 3);
    out.put_u8((timestamp >> 24) as u8);
    out.put_uint(0, 3); // stream id, always 0
    out.put_slice(body);
    out.put_u32(data_size + 11);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_flags_follow_tracks() {
        assert_eq!(header(true, true)[4], 5);
        assert_eq!(header(false, true)[4], 1);
        assert_eq!(header(true, false)[4], 4);
        assert_eq!(header(true, true).len(), 13);
    }

    #[test]
    fn tag_layout_with_extended_timestamp() {
        let t = tag(TAG_VIDEO, 0x1234_5678, b"abc");
        assert_eq!(t.len(), 11 + 3 + 4);
        assert_eq!(t[0], TAG_VIDEO);
        assert_eq!(&t[1..4], &[0, 0, 3]);
        assert_eq!(&t[4..7], &[0x34, 0x56, 0x78]);
        assert_eq!(t[7], 0x12);
        assert_eq!(&t[11..14], b"abc");
        assert_eq!(&t[14..], &14u32.to_be_bytes());
    }
}
