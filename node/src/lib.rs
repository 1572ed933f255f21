//! The Skein media node: RTMP publish and play, a stream hub with GOP cache and zero-copy
//! fan-out, HTTP-FLV, the JSON API and Prometheus metrics.
//!
//! Protocol cores are sans-IO (`rtmp`, `flv`); `rtmp_server` and `http` are the async drivers
//! around them; `hub` owns the streams; `node` assembles a running node.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod flv;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod net;
pub mod node;
pub mod relay;
pub mod rtmp;
pub mod rtmp_client;
pub mod rtmp_server;
pub mod system;
