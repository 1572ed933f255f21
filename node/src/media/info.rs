//! What the API says about a stream's media: codecs from the sequence headers, picture size and
//! frame rate from `onMetaData`.

use serde::Serialize;

use super::tag;
use crate::rtmp::amf0;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MediaInfo {
    pub video_codec: Option<&'static str>,
    pub audio_codec: Option<&'static str>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    /// Bit rate the publisher declared in its metadata (kbit/s), when it did.
    pub declared_kbps: Option<f64>,
}

impl MediaInfo {
    pub fn update_from_video_header(&mut self, payload: &[u8]) {
        self.video_codec = tag::video_codec_name(payload).or(self.video_codec);
    }

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
