//! The `skein` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::node::RunningNode;
use crate::{bench, demo};

#[derive(Debug, Parser)]
#[command(
    name = "skein",
    version,
    about = "Skein media node: RTMP publish and play, HTTP-FLV, API and metrics",
    long_about = "Skein media node.\n\nA node takes RTMP publishes (rtmp://HOST/APP/KEY), serves them to RTMP and HTTP-FLV \
players (http://HOST:8080/APP/KEY.flv) from a GOP cache so playback starts on a keyframe at once, \
and exposes a JSON API (/api/v1/...) and Prometheus metrics (/metrics).\n\n\
Start with `skein demo` for a local setup that prints ready-to-paste ffmpeg/ffplay commands."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a media node.
    Run(RunArgs),
    /// Check a configuration file and print the effective configuration.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Start a local setup on loopback and print the URLs to publish to and play from.
    Demo(demo::DemoArgs),
    /// Load generator: many RTMP players on one stream, or many publishers.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML configuration file; every setting has a default, so the file is optional.
    #[arg(long, short, env = "SKEIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// RTMP listen address (overrides rtmp.listen).
    #[arg(long, env = "SKEIN_RTMP_LISTEN")]
    pub rtmp_listen: Option<SocketAddr>,
    /// HTTP listen address for HTTP-FLV, API and metrics (overrides http.listen).
    #[arg(long, env = "SKEIN_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Node name (overrides node.name).
    #[arg(long, env = "SKEIN_NODE_NAME")]
    pub name: Option<String>,
    /// Region (overrides node.region).
    #[arg(long, env = "SKEIN_REGION")]
    pub region: Option<String>,
    /// Bearer token for admin API calls (overrides http.admin_token).
    #[arg(long, env = "SKEIN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl RunArgs {
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(a) = self.rtmp_listen {
            config.rtmp.listen = a;
        }
        if let Some(a) = self.http_listen {
            config.http.listen = a;
        }
        if let Some(n) = &self.name {
            config.node.name = n.clone();
        }
        if let Some(r) = &self.region {
            config.node.region = r.clone();
        }
        if let Some(t) = &self.admin_token {
            config.http.admin_token = t.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Cancelled on Ctrl-C or SIGTERM.
pub fn stop_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("stopping");
        trigger.cancel();
    });
    stop
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Run(args) => {
            init_logging();
            let config = args.config()?;
            runtime.block_on(async {
                let node = RunningNode::start(config).await?;
                node.wait(stop_signal()).await;
                Ok(())
            })
        }
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            println!("{} is valid; effective configuration:\n", file.display());
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Demo(args) => {
            init_logging();
            runtime.block_on(demo::run(args))
        }
        Command::Bench(command) => runtime.block_on(bench::run(command)),
    }
}
