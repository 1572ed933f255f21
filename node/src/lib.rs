//! The Skein media node.
pub mod rtmp;
