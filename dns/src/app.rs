//! The running server: binds the sockets, starts every task (the UDP engine, TCP, `/metrics`,
//! the control loop with its probers and watchers) under one [`TaskTracker`], and stops them
//! all on SIGTERM or SIGINT: a [`CancellationToken`] tells every task to stop accepting work,
//! and the process waits at most [`SHUTDOWN_GRACE`] for them to finish.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Listen, UdpEngine};
use crate::control::{Control, Loaded, Membership};
use crate::handler::{self, Handler};
use crate::metrics::Metrics;
use crate::server::{self, Shared};
use crate::{history, http};
use skein_history::HistoryStore;

/// How long the tasks get to finish after SIGTERM or SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What `skein-dns --config FILE` runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration file, re-read when it changes.
    pub config: PathBuf,
    /// Cluster seeds from the command line; they override `[cluster] seeds`.
    pub cluster_seeds: Vec<String>,
}

/// Serves until SIGTERM or SIGINT, then stops every task; `Ok` once all have ended within
/// [`SHUTDOWN_GRACE`].
pub fn run(options: &RunOptions) -> anyhow::Result<()> {
    let loaded = Loaded::load(&options.config)?;
    let listen = loaded.config.listen.clone();
    let seeds = if options.cluster_seeds.is_empty() {
        loaded.config.cluster.seeds.clone()
    } else {
        options.cluster_seeds.clone()
    };
    let membership = if seeds.is_empty() {
        Membership::Static
    } else {
        Membership::Cluster { seeds }
    };
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let history = if loaded.config.history.enabled {
        Some(Arc::new(history::open(&loaded.config.history)?))
    } else {
        None
    };
    let metrics = Arc::new(Metrics::default());
    let (control, shared) = Control::new(
        loaded,
        membership,
        metrics.clone(),
        stop.clone(),
        tasks.clone(),
    );

    let workers = if listen.udp_workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        listen.udp_workers
    };
    let mut udp_sockets = Vec::new();
    for addr in &listen.udp {
        let socks = server::bind_udp(*addr, workers).with_context(|| format!("bind UDP {addr}"))?;
        tracing::info!(%addr, sockets = socks.len(), engine = ?listen.udp_engine, "listening on UDP");
        udp_sockets.extend(socks);
    }
    // The hickory engine answers on tokio worker threads; the batched one has its own threads.
    let runtime_threads = match listen.udp_engine {
        UdpEngine::Hickory => workers,
        UdpEngine::Batched => 1,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(runtime_threads)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        // Installed before anything answers, so a server that has answered stops cleanly.
        let signal = stop_signal()?;
        start(
            &listen,
            udp_sockets,
            &shared,
            history.clone(),
            &stop,
            &tasks,
        )
        .await?;
        if let Some(store) = history {
            tasks.spawn(history::run(metrics, store, stop.clone()));
        }
        tasks.spawn(control.run(options.config.clone()));
        let name = signal.await;
        tracing::info!(signal = name, "stopping: no new queries or connections");
        stop.cancel();
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            anyhow::bail!(
                "{} task(s) still running {} s after {name}; exiting anyway",
                tasks.len(),
                SHUTDOWN_GRACE.as_secs()
            );
        }
        tracing::info!("all tasks stopped");
        Ok(())
    });
    // A config reload may still be reading the file on a blocking thread; do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Resolves with the name of the first SIGTERM or SIGINT.
fn stop_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

/// Starts the DNS engines and `/metrics` as tracked tasks that end when `stop` is cancelled.
async fn start(
    listen: &Listen,
    udp_sockets: Vec<UdpSocket>,
    shared: &Arc<Shared>,
    history: Option<Arc<HistoryStore>>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<()> {
    let handler = Handler::new(shared.clone());
    if !udp_sockets.is_empty() {
        match listen.udp_engine {
            UdpEngine::Hickory => serve_udp_hickory(udp_sockets, &handler, stop, tasks)?,
            UdpEngine::Batched => serve_udp_batched(udp_sockets, shared, stop, tasks)?,
        }
    }
    for addr in &listen.tcp {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind TCP {addr}"))?;
        tracing::info!(%addr, max_connections = listen.tcp_max_connections, "listening on TCP");
        tasks.spawn(handler::serve_tcp(
            l,
            handler.clone(),
            listen.tcp_max_connections,
            Duration::from_millis(listen.tcp_idle_timeout_ms),
            stop.clone(),
            tasks.clone(),
        ));
    }
    if let Some(addr) = listen.metrics {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind metrics {addr}"))?;
        tracing::info!(%addr, "serving /metrics");
        let metrics = shared.metrics.clone();
        let view = shared.clone();
        let name = addr.to_string();
        let routes = move |target: &str| match target.split_once('?').unwrap_or((target, "")) {
            ("/api/v1/history", query) => match &history {
                Some(store) => {
                    let (status, body) = history::serve(store, &name, query);
                    (status, "application/json", body)
                }
                None => (
                    404,
                    "text/plain",
                    "history is off (history.enabled = false)\n".to_string(),
                ),
            },
            (path, _) => match path {
                "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
                "/api/v1/view" => {
                    let mut answer: serde_json::Value =
                        serde_json::from_str(&view.view()).unwrap_or_default();
                    answer["counts"] = view.metrics.counts();
                    (200, "application/json", answer.to_string())
                }
                "/healthz" => (200, "text/plain", "ok\n".to_string()),
                _ => (404, "text/plain", "not found\n".to_string()),
            },
        };
        tasks.spawn(http::serve(l, routes, stop.clone(), tasks.clone()));
    }
    Ok(())
}

/// hickory-server's UDP loop over all sockets; it has its own shutdown, triggered by `stop`.
fn serve_udp_hickory(
    sockets: Vec<UdpSocket>,
    handler: &Handler,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<()> {
    let mut udp = hickory_server::Server::new(handler.clone());
    for sock in sockets {
        sock.set_nonblocking(true)?;
        udp.register_socket(tokio::net::UdpSocket::from_std(sock)?);
    }
    let stop = stop.clone();
    tasks.spawn(async move {
        let result = tokio::select! {
            r = udp.block_until_done() => r,
            () = stop.cancelled() => udp.shutdown_gracefully().await,
        };
        match result {
            Ok(()) => tracing::info!("UDP server stopped"),
            Err(e) => tracing::error!(error = %e, "UDP server stopped"),
        }
    });
    Ok(())
}

/// One thread per socket; each is joined by a tracked blocking task, so waiting for the
/// tracker waits for the threads.
#[cfg(target_os = "linux")]
fn serve_udp_batched(
    sockets: Vec<UdpSocket>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<()> {
    for (i, sock) in sockets.into_iter().enumerate() {
        let (shared, stop) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("udp-{i}"))
            .spawn(move || server::udp_worker(sock, shared, stop))?;
        tasks.spawn_blocking(move || {
            if thread.join().is_err() {
                tracing::error!(worker = i, "UDP worker thread panicked");
            }
        });
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn serve_udp_batched(
    _: Vec<UdpSocket>,
    _: &Arc<Shared>,
    _: &CancellationToken,
    _: &TaskTracker,
) -> anyhow::Result<()> {
    anyhow::bail!("listen.udp_engine = \"batched\" needs Linux (recvmmsg/sendmmsg)")
}

/// What `check-config` reports about a valid file.
#[derive(Debug, Clone)]
pub struct ConfigSummary {
    /// Number of zones.
    pub zones: usize,
    /// Service names of all zones, absolute, sorted.
    pub service_names: Vec<String>,
    /// Number of static regions.
    pub regions: usize,
    /// Number of static edges.
    pub edges: usize,
    /// Whether a geo database is configured (and opened).
    pub geo_database: bool,
}

/// Loads a configuration file as the server would (zones built, geo databases opened).
pub fn check_config(path: &Path) -> anyhow::Result<ConfigSummary> {
    let loaded = Loaded::load(path)?;
    let c = &loaded.config;
    Ok(ConfigSummary {
        zones: c.zones.len(),
        service_names: loaded.zones.service_names(),
        regions: c.regions.len(),
        edges: c.regions.iter().map(|r| r.edges.len()).sum(),
        geo_database: loaded.geo.is_some(),
    })
}

/// The filter when neither `--log` nor `RUST_LOG` gives one.
const DEFAULT_LOG: &str = "info";

/// Logs to stderr like the node does (fmt format without targets, `RUST_LOG` honoured), with
/// `given` (`--log`) taking precedence; colours only on a terminal.
pub fn init_logging(given: Option<&str>) -> anyhow::Result<()> {
    let from_env = std::env::var("RUST_LOG").ok();
    let filter = log_filter(given, from_env.as_deref());
    let env_filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .with_context(|| format!("bad log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(env_filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

/// The filter in force: `given`, else a non-empty `RUST_LOG`, else [`DEFAULT_LOG`]. hickory-server
/// logs every UDP query at info, so it is kept to warnings unless the filter names it.
fn log_filter(given: Option<&str>, rust_log: Option<&str>) -> String {
    let filter = given
        .or(rust_log.filter(|f| !f.trim().is_empty()))
        .unwrap_or(DEFAULT_LOG);
    if filter.contains("hickory") {
        filter.to_string()
    } else {
        format!("{filter},hickory_server=warn,hickory_proto=error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_flag_then_rust_log_then_info_and_hickory_quiet_unless_named() {
        let quiet = ",hickory_server=warn,hickory_proto=error";
        assert_eq!(log_filter(None, None), format!("info{quiet}"));
        assert_eq!(log_filter(None, Some(" ")), format!("info{quiet}"));
        assert_eq!(log_filter(None, Some("debug")), format!("debug{quiet}"));
        assert_eq!(
            log_filter(Some("warn"), Some("debug")),
            format!("warn{quiet}")
        );
        assert_eq!(
            log_filter(Some("hickory_server=info"), None),
            "hickory_server=info"
        );
    }
}
