//! The `skein` command line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, Membership};
use crate::config::Config;
use crate::node::RunningNode;
use crate::{admin, bench, demo};

#[derive(Debug, Parser)]
#[command(
    name = "skein",
    version,
    about = "Skein media node: RTMP publish and play, HTTP-FLV, clustering over QUIC, API and metrics",
    long_about = "Skein media node.\n\nA node takes RTMP publishes (rtmp://HOST/APP/KEY), serves them to RTMP and HTTP-FLV \
players (http://HOST:8080/APP/KEY.flv) from a GOP cache so playback starts on a keyframe at once, \
and exposes a JSON API (/api/v1/...) and Prometheus metrics (/metrics).\n\n\
Nodes form a cluster: `skein init --region R` on the first, then the printed `skein join ...` on \
the others. Each stream lives on an origin chosen by consistent hashing of its name; the other \
nodes push to and pull from it over mutually authenticated QUIC, and membership (origins, \
voters) is decided through Raft.\n\n\
Start with `skein demo` for a local cluster that prints ready-to-paste ffmpeg/ffplay commands."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a media node. Once `init` or `join` has put a cluster identity into the data
    /// directory, `run` restarts that cluster member; otherwise it runs a standalone node.
    Run(RunArgs),
    /// Bootstrap a new cluster with this node as its first member (creates the cluster CA),
    /// print the `skein join` command for the other nodes, and run.
    Init(InitArgs),
    /// Join a cluster through one or more seeds and run. Idempotent: a node that already
    /// joined from this data directory keeps its id, uuid and certificate.
    Join(JoinArgs),
    /// Show the cluster: nodes, regions, roles, voters, health, streams and load.
    Status(StatusArgs),
    /// Manage join tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Make the node behind --api leave the cluster (an origin first lets its streams move
    /// to other origins), then stop.
    Leave(AdminArgs),
    /// Remove another node (by id or name) from the cluster, e.g. one that died for good.
    Remove {
        /// Node id or name, as in `skein status`.
        node: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Break-glass recovery after losing the Raft majority (UNSAFE; see docs/operations.md).
    Recover(RecoverArgs),
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
    /// Bearer token for admin API calls (overrides http.admin_token). A cluster member
    /// without one keeps a generated token in DATA_DIR/admin.token.
    #[arg(long, env = "SKEIN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Cluster data directory: identity, keys, certificates, Raft log (overrides cluster.data_dir).
    #[arg(long, env = "SKEIN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Internal QUIC address for Raft, joins and the relay; announced to the other nodes and
    /// never a public port (overrides cluster.internal).
    #[arg(long, env = "SKEIN_INTERNAL")]
    pub internal: Option<SocketAddr>,
    /// IP announced for the public RTMP/HTTP ports (overrides cluster.advertise_ip).
    #[arg(long, env = "SKEIN_ADVERTISE_IP")]
    pub advertise_ip: Option<std::net::IpAddr>,
    /// What this node may do: edge, origin or edge,origin (overrides cluster.roles).
    #[arg(long, env = "SKEIN_ROLES")]
    pub roles: Option<String>,
    /// Coordinates of this node's region, "LAT,LON", published for GeoDNS when the region has
    /// none (overrides cluster.region_coordinates).
    #[arg(long, env = "SKEIN_REGION_COORDINATES", allow_hyphen_values = true)]
    pub region_coordinates: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Lifetime of the first join token, e.g. 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// Origins the cluster keeps (overrides cluster.origin_target).
    #[arg(long)]
    pub origin_target: Option<usize>,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Internal addresses of one or more members, comma separated (host:port).
    pub seeds: String,
    /// Join token ID.SECRET from `skein init` or `skein token create`.
    #[arg(long, env = "SKEIN_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// sha256:... hash of the cluster CA; the join fails unless the seed proves this CA.
    #[arg(long)]
    pub ca_hash: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// HTTP address of any cluster member.
    #[arg(long, env = "SKEIN_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// Print the raw JSON of GET /api/v1/cluster.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// HTTP address of the node to ask.
    #[arg(long, env = "SKEIN_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// Admin token; default: read from DATA_DIR/admin.token of a local member.
    #[arg(long, env = "SKEIN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Data directory of the local member, to read its admin token.
    #[arg(long, env = "SKEIN_DATA_DIR", default_value = "skein-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token and print the join command.
    Create {
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Required: rewrite this (stopped) node's membership to itself alone as the only voter.
    /// Entries not applied here are lost; the old majority must be wiped and re-joined.
    #[arg(long, required = true)]
    pub force_new_cluster: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Parses `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 24h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit in {text:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
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
        if let Some(d) = &self.data_dir {
            config.cluster.data_dir = d.clone();
        }
        if let Some(a) = self.internal {
            config.cluster.internal = a;
        }
        if let Some(ip) = self.advertise_ip {
            config.cluster.advertise_ip = ip.to_string();
        }
        if let Some(r) = &self.roles {
            config.cluster.roles = r.clone();
        }
        if let Some(c) = &self.region_coordinates {
            config.cluster.region_coordinates = c
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow::anyhow!("--region-coordinates must be LAT,LON"))?;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Runs the node as `membership` says until Ctrl-C/SIGTERM (or until it left its cluster).
async fn serve(mut config: Config, membership: Membership) -> anyhow::Result<()> {
    if !matches!(membership, Membership::Standalone) {
        config.http.admin_token = cluster::admin_token(&config)?;
    }
    let (node, join_info) = RunningNode::start_member(config, membership).await?;
    if let Some(info) = join_info {
        use std::io::Write;
        let region = &node.node.config.node.region;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "cluster initialised. Join other nodes with (token valid for the --token-ttl given):\n\n  {}\n\n(replace --region {region} with each node's region)",
            info.command(region)
        );
        let _ = out.flush();
    }
    node.wait(stop_signal()).await;
    Ok(())
}

fn parse_seeds(list: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let mut seeds = Vec::new();
    for seed in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr = seed
            .to_socket_addrs()
            .with_context(|| format!("seed {seed:?} is not host:port"))?
            .next()
            .with_context(|| format!("seed {seed:?} resolves to no address"))?;
        seeds.push(addr);
    }
    anyhow::ensure!(
        !seeds.is_empty(),
        "give at least one seed (host:port of a member)"
    );
    Ok(seeds)
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    // Logs go to stderr: stdout is for what the command prints (join command, URLs, tables).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
            let membership = Membership::from_data_dir(&config.cluster.data_dir);
            runtime.block_on(serve(config, membership))
        }
        Command::Init(args) => {
            init_logging();
            let mut config = args.run.config()?;
            if args.run.region.is_none() {
                anyhow::bail!("skein init needs --region: the region this first node serves");
            }
            if let Some(n) = args.origin_target {
                config.cluster.origin_target = n;
                config.validate()?;
            }
            let membership = Membership::Init {
                token_ttl: args.token_ttl,
            };
            runtime.block_on(serve(config, membership))
        }
        Command::Join(args) => {
            init_logging();
            let config = args.run.config()?;
            let seeds = parse_seeds(&args.seeds)?;
            let membership = Membership::Join {
                seeds,
                token: args.token,
                ca_hash: args.ca_hash,
            };
            runtime.block_on(serve(config, membership))
        }
        Command::Status(args) => admin::status(&args.api, args.json),
        Command::Token(TokenCommand::Create { ttl, admin }) => admin::create_token(&admin, ttl),
        Command::Leave(admin) => admin::leave(&admin),
        Command::Remove { node, admin } => admin::remove(&admin, &node),
        Command::Recover(args) => {
            init_logging();
            let config = args.run.config()?;
            runtime.block_on(cluster::recover_force_new_cluster(&config))
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
