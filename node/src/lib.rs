//! The Skein media node: RTMP publish and play, a stream hub with GOP cache and zero-copy
//! fan-out, HTTP-FLV, the media relay between cluster nodes over QUIC, the JSON API and
//! Prometheus metrics.
//!
//! The modules are layers, each using only the ones above it in this list:
//!
//! - [`rtmp`] — the RTMP protocol, sans-IO: handshake, chunk stream, AMF0, messages, and the
//!   server and client sessions ([`rtmp::ServerSession`], [`rtmp::ClientSession`]).
//! - [`media`] — what a stream is made of: [`media::MediaKind`], the key frame / sequence
//!   header classification ([`media::FrameFlags`]), FLV tags, codec info.
//! - [`auth`] — who may publish and play, sans-IO: signed stream tokens, signing keys, the
//!   query string they travel in, per-app policies and the reasons for a refusal.
//! - [`config`] — the file format and its validation ([`config::Config`]).
//! - [`hub`] — the streams a node holds ([`hub::Hub`]): GOP cache, timeline, the shared ring,
//!   each frame serialized once per output format ([`hub::Frame`]), and each player's bounded
//!   feed ([`hub::PlayerFeed`]).
//! - [`metrics`] — the Prometheus registry.
//! - [`relay`] — node-to-node media over the cluster's QUIC transport: the sans-IO
//!   [`relay::wire`] format, routing by consistent hash, push, pull and the owner's side.
//! - [`server`] — everything that owns a socket or a task: [`server::RunningNode`] binds,
//!   spawns, drains and stops; the drivers (RTMP, HTTP) share the [`server::Node`] context and
//!   call the one [`server::admission`] path for every play and publish.
//! - [`client`] — the RTMP client driver and percentiles, for `skein bench`, benchmarks and
//!   tests.
//!
//! The `skein` binary (`src/bin/skein/`) holds the commands and is the only place that parses
//! argv or prints.

#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod config;
pub mod history;
pub mod hls;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod relay;
pub mod rtmp;
pub mod server;

pub use config::Config;
pub use server::{Node, RunningNode};
