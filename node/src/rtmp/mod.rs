//! RTMP protocol, sans-IO.
pub mod amf0;
pub mod chunk;
