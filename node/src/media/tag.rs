//! What an FLV audio or video tag body says about itself: key frame, sequence header (decoder
//! configuration) and codec, including the Enhanced RTMP extended headers (v1 video, v2 audio).
//! RTMP audio and video message payloads are these tag bodies.

use super::MediaKind;

/// How a media message is classified, once, at the node where it enters the cluster; relays
/// carry the flags with the payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameFlags {
    /// A video key frame (sequence headers are flagged as key frames too).
    pub keyframe: bool,
    /// Decoder configuration: AVC/HEVC/AV1 sequence start, AAC AudioSpecificConfig, ...
    pub sequence_header: bool,
}

impl FrameFlags {
    /// Reads the flags from the tag body's header.
    pub fn classify(kind: MediaKind, payload: &[u8]) -> Self {
        match kind {
            MediaKind::Video => Self {
                keyframe: is_video_keyframe(payload),
                sequence_header: is_video_sequence_header(payload),
            },
            MediaKind::Audio => Self {
                keyframe: false,
                sequence_header: is_audio_sequence_header(payload),
            },
            MediaKind::Metadata => Self::default(),
        }
    }
}

const VIDEO_EX_HEADER: u8 = 0x80;
const VIDEO_FRAME_KEY: u8 = 1;
const VIDEO_PACKET_SEQUENCE_START: u8 = 0;
const AUDIO_FORMAT_AAC: u8 = 10;
const AUDIO_FORMAT_EX_HEADER: u8 = 9;

/// True for key frames (including sequence headers, which are flagged as key frames).
pub fn is_video_keyframe(payload: &[u8]) -> bool {
    let Some(&b) = payload.first() else {
        return false;
    };
    let frame_type = if b & VIDEO_EX_HEADER != 0 {
        (b >> 4) & 0x07
    } else {
        b >> 4
    };
    frame_type == VIDEO_FRAME_KEY
}

/// True for decoder configuration: AVC/HEVC packet type 0 or an enhanced SequenceStart.
pub fn is_video_sequence_header(payload: &[u8]) -> bool {
    match payload {
        [b, ..] if b & VIDEO_EX_HEADER != 0 => b & 0x0F == VIDEO_PACKET_SEQUENCE_START,
        // 7 = AVC, 12 = HEVC (the widespread pre-enhanced-RTMP extension).
        [b, 0, ..] => matches!(b & 0x0F, 7 | 12),
        _ => false,
    }
}

/// True for an AAC AudioSpecificConfig or an enhanced audio SequenceStart.
pub fn is_audio_sequence_header(payload: &[u8]) -> bool {
    match payload {
        [b, ..] if b >> 4 == AUDIO_FORMAT_EX_HEADER => b & 0x0F == 0,
        [b, 0, ..] => b >> 4 == AUDIO_FORMAT_AAC,
        _ => false,
    }
}

/// The codec of a video tag body, from its header.
pub fn video_codec_name(payload: &[u8]) -> Option<&'static str> {
    let &b = payload.first()?;
    if b & VIDEO_EX_HEADER != 0 {
        return Some(match payload.get(1..5)? {
            b"avc1" => "H.264",
            b"hvc1" => "H.265",
            b"av01" => "AV1",
            b"vp09" => "VP9",
            b"vp08" => "VP8",
            _ => return None,
        });
    }
    Some(match b & 0x0F {
        2 => "Sorenson H.263",
        3 => "Screen Video",
        4 => "VP6",
        5 => "VP6 Alpha",
        6 => "Screen Video 2",
        7 => "H.264",
        12 => "H.265",
        _ => return None,
    })
}

/// The codec of an audio tag body, from its header.
pub fn audio_codec_name(payload: &[u8]) -> Option<&'static str> {
    let &b = payload.first()?;
    Some(match b >> 4 {
        0 | 3 => "PCM",
        1 => "ADPCM",
        2 | 14 => "MP3",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        AUDIO_FORMAT_EX_HEADER => match payload.get(1..5)? {
            b"Opus" => "Opus",
            b"fLaC" => "FLAC",
            b"ac-3" => "AC-3",
            b"ec-3" => "E-AC-3",
            b".mp3" => "MP3",
            b"mp4a" => "AAC",
            _ => return None,
        },
        AUDIO_FORMAT_AAC => "AAC",
        11 => "Speex",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_helpers() {
        let avc_seq = [0x17, 0x00, 0, 0, 0, 1];
        let avc_key = [0x17, 0x01, 0, 0, 0];
        let avc_inter = [0x27, 0x01, 0, 0, 0];
        let hevc_seq = [0x1C, 0x00, 0, 0, 0];
        assert!(is_video_sequence_header(&avc_seq));
        assert!(is_video_keyframe(&avc_seq));
        assert!(!is_video_sequence_header(&avc_key));
        assert!(is_video_keyframe(&avc_key));
        assert!(!is_video_keyframe(&avc_inter));
        assert!(is_video_sequence_header(&hevc_seq));
        assert_eq!(video_codec_name(&avc_key), Some("H.264"));
        assert_eq!(video_codec_name(&hevc_seq), Some("H.265"));

        // Enhanced RTMP: ex header bit, key frame, SequenceStart, FourCC.
        let av1_seq = [0x90, b'a', b'v', b'0', b'1', 0x81];
        let hevc_frames = [0x91, b'h', b'v', b'c', b'1', 0, 0, 0];
        let hevc_inter = [0xA3, b'h', b'v', b'c', b'1'];
        assert!(is_video_sequence_header(&av1_seq));
        assert!(is_video_keyframe(&av1_seq));
        assert!(!is_video_sequence_header(&hevc_frames));
        assert!(is_video_keyframe(&hevc_frames));
        assert!(!is_video_keyframe(&hevc_inter));
        assert_eq!(video_codec_name(&av1_seq), Some("AV1"));
        assert_eq!(video_codec_name(&hevc_frames), Some("H.265"));
        assert_eq!(video_codec_name(&[0x90, b'x']), None);
        assert!(!is_video_keyframe(&[]));
        assert!(!is_video_sequence_header(&[0x17]));
    }

    #[test]
    fn audio_helpers() {
        let aac_seq = [0xAF, 0x00, 0x12, 0x10];
        let aac_raw = [0xAF, 0x01, 0x21];
        let mp3 = [0x2F, 0xFF];
        let opus_seq = [0x90, b'O', b'p', b'u', b's'];
        let opus_frame = [0x91, b'O', b'p', b'u', b's', 1];
        assert!(is_audio_sequence_header(&aac_seq));
        assert!(!is_audio_sequence_header(&aac_raw));
        assert!(!is_audio_sequence_header(&[0x2F, 0x00]));
        assert!(is_audio_sequence_header(&opus_seq));
        assert!(!is_audio_sequence_header(&opus_frame));
        assert_eq!(audio_codec_name(&aac_raw), Some("AAC"));
        assert_eq!(audio_codec_name(&mp3), Some("MP3"));
        assert_eq!(audio_codec_name(&opus_frame), Some("Opus"));
        assert_eq!(audio_codec_name(&[]), None);
        assert!(!is_audio_sequence_header(&[]));
    }
}
