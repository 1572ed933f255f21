//! Samples the machine and the process once a second: CPU, resident memory, and the node's
//! ingress/egress bit rates from the traffic counters. The API, the health endpoint (read by
//! GeoDNS for load-aware answers) and `/metrics` all report these samples.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::metrics::Traffic;

/// One sample of machine and process load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Load {
    /// Machine CPU use, 0..1 over all cores.
    pub cpu: f64,
    /// This process's CPU use in cores (1.0 = one core busy).
    pub process_cpu_cores: f64,
    /// Resident memory of this process in bytes.
    pub memory_rss_bytes: u64,
    /// Bits per second sent to clients over the last sample interval.
    pub egress_bps: u64,
    /// Bits per second received from clients over the last sample interval.
    pub ingress_bps: u64,
}

/// Holds the latest [`Load`] sample; [`run`](Self::run) updates it.
pub struct Monitor {
    load: RwLock<Load>,
    started: Instant,
}

impl Monitor {
    /// A monitor with an all-zero sample, its uptime counted from now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            load: RwLock::new(Load::default()),
            started: Instant::now(),
        })
    }

    /// The latest sample.
    pub fn load(&self) -> Load {
        self.load.read().clone()
    }

    /// Time since the monitor was created (the node's uptime).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Samples forever, once a second; `on_tick` runs after each sample with the elapsed time.
    pub async fn run(self: Arc<Self>, traffic: Arc<Traffic>, on_tick: impl Fn(Duration)) {
        let pid = Pid::from_u32(std::process::id());
        let mut system = System::new();
        let mut last = Instant::now();
        let mut last_in = traffic.bytes_in.get();
        let mut last_out = traffic.bytes_out.get();
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            system.refresh_cpu_usage();
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            );
            let now = Instant::now();
            let elapsed = now.duration_since(last);
            let secs = elapsed.as_secs_f64().max(0.001);
            let bytes_in = traffic.bytes_in.get();
            let bytes_out = traffic.bytes_out.get();
            let process = system.process(pid);
            let sample = Load {
                cpu: f64::from(system.global_cpu_usage()) / 100.0,
                process_cpu_cores: process.map_or(0.0, |p| f64::from(p.cpu_usage()) / 100.0),
                memory_rss_bytes: process.map_or(0, |p| p.memory()),
                egress_bps: ((bytes_out - last_out) as f64 * 8.0 / secs) as u64,
                ingress_bps: ((bytes_in - last_in) as f64 * 8.0 / secs) as u64,
            };
            *self.load.write() = sample;
            (last, last_in, last_out) = (now, bytes_in, bytes_out);
            on_tick(elapsed);
        }
    }
}
