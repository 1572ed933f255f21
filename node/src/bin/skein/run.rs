//! `skein run`, `init`, `join` and `recover`: the commands that serve (or repair) a node, their
//! arguments, and `check-config`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use skein_node::config::{Config, NodeSection};
use skein_node::server::RunningNode;
use skein_node::server::membership::{self, Membership};
use skein_raft::Roles;

use crate::duration::parse_duration;
use crate::process::stop_signal;

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
    /// File holding the admin token (overrides http.admin_token_file); keeps the secret out
    /// of the process's arguments.
    #[arg(long, env = "SKEIN_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
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
    #[arg(long, env = "SKEIN_ROLES", value_parser = Roles::parse)]
    pub roles: Option<Roles>,
    /// Coordinates of this node's region, "LAT,LON", published for GeoDNS when the region has
    /// none (overrides cluster.region_coordinates).
    #[arg(long, env = "SKEIN_REGION_COORDINATES", allow_hyphen_values = true, value_parser = parse_coordinates)]
    pub region_coordinates: Option<[f64; 2]>,
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
    /// Join token ID.SECRET from `skein init` or `skein token create`. Prefer --token-file or
    /// SKEIN_JOIN_TOKEN: arguments are visible to every user of the machine.
    #[arg(
        long,
        env = "SKEIN_JOIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the join token (its first line).
    #[arg(long, env = "SKEIN_JOIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// sha256:... hash of the cluster CA; the join fails unless the seed proves this CA.
    #[arg(long)]
    pub ca_hash: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Required: rewrite this (stopped) node's membership to itself alone as the only voter.
    /// Entries not applied here are lost; the old majority must be wiped and re-joined.
    #[arg(long, required = true)]
    pub force_new_cluster: bool,
    /// The cluster CA private key (a backup of `ca.key` from a voter), for a node that does
    /// not hold it: without it the recovered node cannot sign joins or renewals.
    #[arg(long, value_name = "FILE")]
    pub ca_key: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
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
        if let Some(path) = &self.admin_token_file {
            config.http.admin_token_file = Some(path.clone());
            if self.admin_token.is_none() {
                config.http.admin_token.clear();
            }
        }
        config.resolve_admin_token()?;
        if let Some(d) = &self.data_dir {
            config.cluster.data_dir = d.clone();
        }
        if let Some(a) = self.internal {
            config.cluster.internal = a;
        }
        if let Some(ip) = self.advertise_ip {
            config.cluster.advertise_ip = Some(ip);
        }
        if let Some(roles) = self.roles {
            config.cluster.roles = roles;
        }
        if let Some(coordinates) = self.region_coordinates {
            config.cluster.region_coordinates = Some(coordinates);
        }
        config.validate()?;
        Ok(config)
    }
}

/// The first line of a file holding a secret (a token), trimmed.
pub fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} from {}", path.display()))?;
    let secret = text.lines().next().unwrap_or_default().trim();
    anyhow::ensure!(
        !secret.is_empty(),
        "{} (the {what}) is empty",
        path.display()
    );
    Ok(secret.to_owned())
}

/// `LAT,LON` in degrees.
fn parse_coordinates(text: &str) -> Result<[f64; 2], String> {
    let parsed: Option<Vec<f64>> = text.split(',').map(|x| x.trim().parse().ok()).collect();
    match parsed.as_deref() {
        Some(&[lat, lon]) => Ok([lat, lon]),
        _ => Err(format!("{text:?} is not LAT,LON (e.g. 50.11,8.68)")),
    }
}

/// `skein run`: a cluster member when the data directory holds an identity, else standalone.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let membership = Membership::from_data_dir(&config.cluster.data_dir);
    serve(config, membership).await
}

/// `skein init`: bootstraps a cluster with this node as its first member.
pub async fn init(args: InitArgs) -> anyhow::Result<()> {
    let mut config = args.run.config()?;
    // The region may come from the flag or the file; the built-in default is no answer.
    if args.run.region.is_none() && config.node.region == NodeSection::default().region {
        anyhow::bail!(
            "skein init needs a region: --region R or node.region in the configuration file"
        );
    }
    if let Some(n) = args.origin_target {
        config.cluster.origin_target = n;
        config.validate()?;
    }
    // Idempotent like `join`, so a service unit can always start the first node with `init`.
    let membership = match Membership::from_data_dir(&config.cluster.data_dir) {
        Membership::Reopen => {
            tracing::info!(
                data_dir = %config.cluster.data_dir.display(),
                "already initialised: reopening this member"
            );
            Membership::Reopen
        }
        _ => Membership::Init {
            token_ttl: args.token_ttl,
        },
    };
    serve(config, membership).await
}

/// `skein join`: joins through the seeds (or reopens a node that already joined).
pub async fn join(args: JoinArgs) -> anyhow::Result<()> {
    let config = args.run.config()?;
    let token = match (args.token, &args.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => read_secret_file(path, "join token")?,
        (None, None) => anyhow::bail!(
            "no join token: pass --token-file FILE (or SKEIN_JOIN_TOKEN), as printed by skein init or skein token create"
        ),
    };
    let membership = Membership::Join {
        seeds: parse_seeds(&args.seeds)?,
        token,
        ca_hash: args.ca_hash,
    };
    serve(config, membership).await
}

/// `skein recover --force-new-cluster`.
pub async fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    let config = args.run.config()?;
    membership::recover_force_new_cluster(&config, args.ca_key.as_deref()).await
}

/// `skein check-config FILE`: validates and prints the effective configuration.
pub fn check_config(file: &Path) -> anyhow::Result<()> {
    let mut config = Config::load(file)?;
    config.resolve_admin_token()?;
    // The effective configuration ends up in terminals and tickets; the secrets do not.
    let config = config.redacted();
    println!("{} is valid; effective configuration:\n", file.display());
    print!("{}", toml::to_string_pretty(&config)?);
    Ok(())
}

/// Runs the node as `membership` says until Ctrl-C/SIGTERM (or until it left its cluster).
async fn serve(mut config: Config, membership: Membership) -> anyhow::Result<()> {
    if !matches!(membership, Membership::Standalone) {
        config.http.admin_token = membership::admin_token(&config)?;
    }
    let (node, join_info) = RunningNode::start_member(config, membership).await?;
    if let Some(info) = join_info {
        use std::io::Write;
        let region = &node.node.config.node.region;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "cluster initialised. Join other nodes with (token valid for the --token-ttl given):\n\n  {}\n\n(replace --region {region} with each node's region)\n\nThe cluster CA private key is in {} (owner only; voters get a copy, others none). Back it up somewhere safe: if every voter is lost, `skein recover --force-new-cluster --ca-key FILE` needs it.",
            info.command(region),
            skein_raft::Cluster::ca_key_path(&node.node.config.cluster.data_dir).display()
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
