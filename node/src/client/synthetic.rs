//! Synthetic media payloads for the load generator, benchmarks and tests: an H.264 sequence
//! header and frames of any size with the right FLV video tag header (so the hub classifies them
//! as a real encoder's), and AAC. The bodies are filler: only the headers are real.

use bytes::{BufMut, Bytes, BytesMut};

/// An AVC decoder configuration (SPS/PPS) as an FLV video tag body.
pub fn avc_sequence_header() -> Bytes {
    Bytes::from_static(&[
        0x17, 0x00, 0, 0, 0, // keyframe, AVC, sequence header, cts 0
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x04,
        0x68, 0xee, 0x3c, 0x80,
    ])
}

/// An AAC AudioSpecificConfig as an FLV audio tag body.
pub fn aac_sequence_header() -> Bytes {
    Bytes::from_static(&[0xaf, 0x00, 0x12, 0x10])
}

/// An AVC NALU video tag body of `size` bytes (at least 13), carrying `seq` so a receiver can
/// tell frames apart.
pub fn video_frame(keyframe: bool, size: usize, seq: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(size.max(16));
    out.put_u8(if keyframe { 0x17 } else { 0x27 });
    out.put_slice(&[0x01, 0, 0, 0]);
    out.put_u32((size.saturating_sub(9)) as u32);
    out.put_u32(seq);
    out.resize(size.max(13), 0xab);
    out.freeze()
}

/// A 200-byte AAC raw frame as an FLV audio tag body.
pub fn aac_frame() -> Bytes {
    let mut out = BytesMut::with_capacity(200);
    out.put_slice(&[0xaf, 0x01]);
    out.resize(200, 0x21);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{FrameFlags, MediaKind};

    #[test]
    fn classified_as_a_real_encoder_s_frames() {
        let video = |payload: &Bytes| FrameFlags::classify(MediaKind::Video, payload);
        assert!(video(&avc_sequence_header()).sequence_header);
        assert!(FrameFlags::classify(MediaKind::Audio, &aac_sequence_header()).sequence_header);
        let key = video_frame(true, 1000, 0);
        assert_eq!(key.len(), 1000);
        assert_eq!(
            video(&key),
            FrameFlags {
                keyframe: true,
                sequence_header: false
            }
        );
        assert!(!video(&video_frame(false, 1000, 1)).keyframe);
    }
}
