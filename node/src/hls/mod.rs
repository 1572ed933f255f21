//! HLS and Low-Latency HLS output, sans IO: the decoder configurations read from the sequence
//! headers ([`codec`]), the fMP4 boxes ([`fmp4`]), the segmenter that cuts a stream's frames
//! into segments and parts named from the stream's own timestamps ([`segmenter`]), and the
//! playlist writer with the blocking-reload rule ([`playlist`]). The HTTP driver is
//! `server::http::hls`.

pub mod codec;
pub mod fmp4;
pub mod fuzzing;
pub mod playlist;
pub mod segmenter;

pub use playlist::{Reload, Resource};
pub use segmenter::{Part, Segment, Segmenter, SegmenterConfig};
