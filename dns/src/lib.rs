//! Skein GeoDNS: an authoritative DNS server that answers the service name with healthy,
//! load-aware edge addresses of the client's nearest region.
//!
//! The engine ([`answer::resolve`]) is pure: a question in, an answer out, over an immutable
//! [`answer::Snapshot`]. Two UDP engines feed it: hickory-server with our
//! [`handler::Handler`] as its `RequestHandler` (also serving TCP), and the batched engine in
//! [`server`] (`recvmmsg`/`sendmmsg` with our own `wire` codec, [`answer::respond`]). Health
//! probes, cluster watching and config reloads build new snapshots.

pub mod answer;
pub mod app;
pub mod automap;
pub mod cluster;
pub mod config;
pub mod control;
pub mod ecs;
pub mod fuzzing;
pub mod geo;
pub mod handler;
pub mod health;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod server;
pub mod wire;
pub mod zone;
