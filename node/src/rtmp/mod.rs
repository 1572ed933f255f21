//! RTMP protocol, sans-IO.
pub mod amf0;
pub mod chunk;
pub mod handshake;
pub mod message;
