//! What the API says about a stream's media: codecs from the sequence headers, picture size and
//! frame rate from `onMetaData`.

use serde::Serialize;

use super::tag;
use crate::rtmp::amf0;

/// Codecs, picture size and frame rate of a stream, as far as the publisher revealed them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MediaInfo {
    /// Video codec from the video sequence header, e.g. `H.264`.
    pub video_codec: Option<&'static str>,
    /// Audio codec from the audio sequence header, e.g. `AAC`.
    pub audio_codec: Option<&'static str>,
    /// Picture width in pixels, from `onMetaData`.
    pub width: Option<u32>,
    /// Picture height in pixels, from `onMetaData`.
    pub height: Option<u32>,
    /// Frames per second, from `onMetaData`.
    pub frame_rate: Option<f64>,
    /// Bit rate the publisher declared in its metadata (kbit/s), when it did.
    pub declared_kbps: Option<f64>,
}

impl MediaInfo {
    /// Takes the video codec from a video sequence header (FLV video tag body).
    pub fn update_from_video_header(&mut self, payload: &[u8]) {
        self.video_codec = tag::video_codec_name(payload).or(self.video_codec);
    }

    /// Takes the audio codec from an audio sequence header (FLV audio tag body).
    pub fn update_from_audio_header(&mut self, payload: &[u8]) {
        self.audio_codec = tag::audio_codec_name(payload).or(self.audio_codec);
    }

    /// `payload` is an `onMetaData` data message: the name, then an object or ECMA array.
    /// Metadata that does not parse is ignored: it is informative only.
    pub fn update_from_metadata(&mut self, payload: &[u8]) {
        let Ok(values) = amf0::decode_all(payload) else {
            return;
        };
        let Some(props) = values.iter().find(|v| {
            v.get("width").is_some()
                || v.get("height").is_some()
                || v.get("videodatarate").is_some()
        }) else {
            return;
        };
        let number = |key: &str| props.get(key).and_then(amf0::Value::as_f64);
        let positive = |v: f64| (v.is_finite() && v > 0.0).then_some(v);
        if let Some(w) = number("width").and_then(positive) {
            self.width = Some(w as u32);
        }
        if let Some(h) = number("height").and_then(positive) {
            self.height = Some(h as u32);
        }
        self.frame_rate = number("framerate").and_then(positive).or(self.frame_rate);
        let kbps = number("videodatarate").unwrap_or(0.0) + number("audiodatarate").unwrap_or(0.0);
        self.declared_kbps = positive(kbps).or(self.declared_kbps);
    }
}
