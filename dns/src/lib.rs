//! Skein GeoDNS: an authoritative DNS server that answers the service name with healthy,
//! load-aware edge addresses of the client's nearest region.
//!
//! The binary (`skein-dns`) only reads its arguments and prints; everything it runs is here:
//! [`run`] serves a configuration until SIGTERM or SIGINT, [`check_config`] validates one,
//! [`write_demo_mmdb`] writes the demo geolocation database. The answer planner
//! ([`automap`], with [`AnswerConfig`]) and the health hysteresis ([`Tracker`], with
//! [`HealthConfig`]) are public for models of the whole system (the scale model in
//! `skein-tests`).
//!
//! # Layout
//!
//! **The query path.** A UDP or TCP packet reaches one of two engines. With the hickory
//! engine (default) hickory-server parses it and calls `handler::Handler`, our
//! `RequestHandler`, which reads the request into an `answer::Question` with our strict
//! parser (`wire`) over the bytes hickory received; the batched
//! UDP engine (`server`, Linux `recvmmsg`/`sendmmsg`) parses it with our own codec (`wire`,
//! `ecs` for EDNS Client Subnet) instead. Both then run the answer engine,
//! `answer::resolve`: pure, a question and a client address in, an answer out, over an
//! immutable `answer::Snapshot` that holds
//!
//! - the zone data (`zone::Zones`: SOA, NS with glue, static records, service names),
//! - every client address's home region and widest ECS scope (`region_map::RegionMap`,
//!   worked out from the geolocation database, `geo::GeoDb` (MMDB), the regions'
//!   coordinates and the configured overrides),
//! - the answer plan (`automap::Plan`): per region and address family, which edges get
//!   clients in proportion to their spare capacity, and where a failed or full region's
//!   clients spill.
//!
//! Per-thread query state (the snapshot in use, scratch buffers, rate limiter:
//! `ratelimit`) is `server::Worker`, so queries take no lock.
//!
//! **Keeping the snapshot current.** `control::Control` owns membership and health: it runs
//! a prober per edge (`health`: RTMP handshake and `/api/v1/health`, with rise/fall
//! hysteresis), watches the config file for changes and, with cluster seeds, the cluster's
//! membership (`cluster`, over the small HTTP client in `http`), and publishes a new snapshot
//! after every change. `metrics` counts queries and serves `/metrics`; `history` samples
//! those counters and the health view every interval into a `skein-history` store (rates by
//! response code, answers by region, each edge's state) served as `/api/v1/history`.
//!
//! **Configuration.** `config::Config` is the file read once into typed values; every
//! error names its field ([`FieldError`]).
//!
//! **Lifecycle.** `app` binds the sockets and runs every task under one tracker; a signal
//! cancels them all and the process waits at most [`SHUTDOWN_GRACE`] for them.
//!
//! Module dependencies have no cycle: the lowest layer (`ecs`, `wire`, `config`) knows
//! nothing of the query path, and the query path (`zone`, `geo`, `region_map`, `automap`,
//! `answer`) nothing
//! of what drives it (`server`, `handler`, `control`, `app`).

#![warn(missing_docs)]

mod answer;
mod app;
pub mod automap;
mod cluster;
mod config;
mod control;
mod ecs;
mod fuzzing;
mod geo;
mod handler;
mod health;
mod history;
mod http;
mod metrics;
mod ratelimit;
mod region_map;
mod server;
mod wire;
mod zone;

pub use answer::Scratch;
pub use app::{ConfigSummary, RunOptions, SHUTDOWN_GRACE, check_config, init_logging, run};
pub use config::{AnswerConfig, FieldError, HealthConfig};
pub use fuzzing::Harness;
pub use geo::write_demo_mmdb;
pub use health::Tracker;
