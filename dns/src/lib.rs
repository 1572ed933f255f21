//! Skein GeoDNS: an authoritative DNS server that answers the service name with healthy,
//! load-aware edge addresses of the client's nearest region.
//!
//! The query path ([`answer::respond`]) is pure: bytes in, bytes out, over an immutable
//! [`answer::Snapshot`]. Health probes, cluster watching and config reloads build new snapshots;
//! the socket drivers in [`server`] only move bytes.

pub mod answer;
pub mod automap;
pub mod cluster;
pub mod config;
pub mod control;
pub mod ecs;
pub mod fuzzing;
pub mod geo;
pub mod health;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod server;
pub mod wire;
pub mod zone;
