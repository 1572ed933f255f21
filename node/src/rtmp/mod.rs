//! RTMP protocol, sans-IO: bytes in, events and bytes out. The async drivers own the sockets.
//!
//! Layers, bottom up: [`handshake`], [`chunk`] (message framing), [`amf0`] and [`message`]
//! (payloads), and the [`server`] and [`client`] sessions tying them together.

pub mod amf0;
pub mod chunk;
pub mod client;
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod message;
pub mod server;
mod session;
#[cfg(test)]
mod tests;

pub use amf0::{Amf0Error, Value};
pub use chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, RawMessage, encode_message};
pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use handshake::{ClientHandshake, HandshakeError, HandshakeProgress, ServerHandshake};
pub use message::{Message, MessageError, UserControl};
pub use server::{ServerConfig, ServerEvent, ServerSession};
pub use session::SessionError;
