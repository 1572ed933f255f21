//! `skein-dns`: authoritative GeoDNS for the Skein service name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skein_dns::config::UdpEngine;
use skein_dns::control::{Control, Loaded, Membership};
use skein_dns::handler::{self, Handler};
use skein_dns::metrics::Metrics;
use skein_dns::server::Shared;
use skein_dns::{geo, http, server};

/// Authoritative GeoDNS server: answers the service name with healthy, load-aware edge
/// addresses of the client's nearest region (client located by EDNS Client Subnet or the
/// resolver address). Probes every edge itself (RTMP handshake + /api/v1/health).
#[derive(Parser)]
#[command(name = "skein-dns", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Configuration file (TOML); changes are picked up while running.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Take regions and edges from the cluster: node API address(es), "host:port", comma
    /// separated. The last membership is cached on disk (`[cluster] cache`).
    #[arg(long, value_name = "SEED,...", value_delimiter = ',')]
    cluster: Vec<String>,
    /// Log filter (tracing syntax), e.g. "info" or "skein_dns=debug"; without it `RUST_LOG`
    /// is used, and without that "info". hickory-server and hickory-proto log at most warnings
    /// and errors unless the filter names them (at info hickory-server logs every UDP query).
    #[arg(long, env = "SKEIN_DNS_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file (and open its geo databases), then exit.
    CheckConfig { file: PathBuf },
    /// Write the demo MMDB: loopback ranges 127.0.1.0/24, 127.0.2.0/24, 127.0.3.0/24 and the
    /// documentation ranges in three places (Frankfurt, Virginia, Singapore).
    GenDemoMmdb {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::GenDemoMmdb { out }) => {
            geo::write_demo_mmdb(&out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        None => {
            let Some(config) = cli.config else {
                anyhow::bail!("missing --config FILE (see --help)");
            };
            init_logging(cli.log.as_deref())?;
            run(&config, cli.cluster)
        }
    }
}

/// The filter when neither `--log` nor `RUST_LOG` gives one.
const DEFAULT_LOG: &str = "info";

/// Logs to stderr like the node does (fmt format without targets, `RUST_LOG` honoured), with
/// `--log` taking precedence; colours only on a terminal.
fn init_logging(given: Option<&str>) -> anyhow::Result<()> {
    let from_env = std::env::var("RUST_LOG").ok().filter(|f| !f.trim().is_empty());
    let filter = given.map(str::to_string).or(from_env);
    let filter = filter.as_deref().unwrap_or(DEFAULT_LOG);
    let env_filter = tracing_subscriber::EnvFilter::try_new(quiet_hickory(filter))
        .with_context(|| format!("bad log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(env_filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

/// hickory-server logs every UDP query at info: keep it to warnings unless the filter names it.
fn quiet_hickory(filter: &str) -> String {
    if filter.contains("hickory") {
        filter.to_string()
    } else {
        format!("{filter},hickory_server=warn,hickory_proto=error")
    }
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    let loaded = Loaded::load(file)?;
    let c = &loaded.config;
    println!(
        "{}: ok — {} zone(s), service names {}, {} region(s), {} edge(s), geo database: {}",
        file.display(),
        c.zones.len(),
        loaded.zones.service_names().join(" "),
        c.regions.len(),
        c.regions.iter().map(|r| r.edges.len()).sum::<usize>(),
        if loaded.geo.is_some() {
            "yes"
        } else {
            "none (default region for everyone)"
        }
    );
    Ok(())
}

fn run(config_path: &Path, cluster_cli: Vec<String>) -> anyhow::Result<()> {
    let loaded = Loaded::load(config_path)?;
    let listen = loaded.config.listen.clone();
    let seeds = if cluster_cli.is_empty() {
        loaded.config.cluster.seeds.clone()
    } else {
        cluster_cli
    };
    let membership = if seeds.is_empty() {
        Membership::Static
    } else {
        Membership::Cluster { seeds }
    };
    let metrics = Arc::new(Metrics::default());
    let (control, shared) = Control::new(loaded, membership, metrics.clone());

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
    let mut runtime_threads = 1;
    match listen.udp_engine {
        UdpEngine::Hickory => runtime_threads = workers,
        UdpEngine::Batched => spawn_batched(udp_sockets.drain(..), &shared)?,
    }
    let handler = Handler::new(shared.clone());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(runtime_threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if !udp_sockets.is_empty() {
            let mut udp = hickory_server::Server::new(handler.clone());
            for sock in udp_sockets {
                sock.set_nonblocking(true)?;
                udp.register_socket(tokio::net::UdpSocket::from_std(sock)?);
            }
            tokio::spawn(async move {
                if let Err(e) = udp.block_until_done().await {
                    tracing::error!(error = %e, "UDP server stopped");
                }
            });
        }
        for addr in &listen.tcp {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind TCP {addr}"))?;
            tracing::info!(%addr, max_connections = listen.tcp_max_connections, "listening on TCP");
            tokio::spawn(handler::serve_tcp(
                l,
                handler.clone(),
                listen.tcp_max_connections,
                Duration::from_millis(listen.tcp_idle_timeout_ms),
            ));
        }
        if let Some(addr) = listen.metrics {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind metrics {addr}"))?;
            tracing::info!(%addr, "serving /metrics");
            let m = metrics.clone();
            tokio::spawn(http::serve(l, move |path| match path {
                "/metrics" => (200, "text/plain; version=0.0.4", m.render()),
                "/healthz" => (200, "text/plain", "ok\n".to_string()),
                _ => (404, "text/plain", "not found\n".to_string()),
            }));
        }
        control.run(config_path.to_path_buf()).await;
        anyhow::Ok(())
    })
}

#[cfg(target_os = "linux")]
fn spawn_batched(
    sockets: impl Iterator<Item = std::net::UdpSocket>,
    shared: &Arc<Shared>,
) -> anyhow::Result<()> {
    for (i, sock) in sockets.enumerate() {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("udp-{i}"))
            .spawn(move || server::udp_worker(sock, shared))?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn spawn_batched(
    _: impl Iterator<Item = std::net::UdpSocket>,
    _: &Arc<Shared>,
) -> anyhow::Result<()> {
    anyhow::bail!("listen.udp_engine = \"batched\" needs Linux (recvmmsg/sendmmsg)")
}
