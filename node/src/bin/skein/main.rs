//! `skein`: the media node's command line. Each command's arguments and work live in their own
//! module: `run` (run, init, join, recover, check-config), `admin` (status, join tokens, leave,
//! remove), `stream_auth` (publish and play tokens, stream signing keys), `demo` and `bench`. This is the only place that parses argv.

mod admin;
mod bench;
mod demo;
mod duration;
mod process;
mod run;
mod stream_auth;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use process::init_logging;

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a media node. Once `init` or `join` has put a cluster identity into the data
    /// directory, `run` restarts that cluster member; otherwise it runs a standalone node.
    Run(run::RunArgs),
    /// Bootstrap a new cluster with this node as its first member (creates the cluster CA),
    /// print the `skein join` command for the other nodes, and run. Idempotent: on a data
    /// directory that already holds a member it reopens that member, like `run`.
    Init(run::InitArgs),
    /// Join a cluster through one or more seeds and run. Idempotent: a node that already
    /// joined from this data directory keeps its id, uuid and certificate.
    Join(run::JoinArgs),
    /// Show the cluster: nodes, regions, roles, voters, health, streams and load; then the
    /// answering node's edge mesh and, per stream it relays, whom it pulls from and serves.
    Status(admin::StatusArgs),
    /// Mint tokens: join tokens for new nodes, publish and play tokens for streams.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the stream signing keys that publish and play tokens are signed with.
    #[command(subcommand)]
    StreamKey(stream_auth::StreamKeyCommand),
    /// Make the node behind --api leave the cluster (an origin first lets its streams move
    /// to other origins), then stop.
    Leave(admin::AdminArgs),
    /// Remove another node (by id or name) from the cluster, e.g. one that died for good.
    Remove {
        /// Node id or name, as in `skein status`.
        node: String,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Break-glass recovery after losing the Raft majority (UNSAFE; see docs/operations.md).
    Recover(run::RecoverArgs),
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

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token (for `skein join`) and print the join command.
    #[command(visible_alias = "join")]
    Create {
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = duration::parse_duration)]
        ttl: Duration,
        /// The first successful join consumes the token.
        #[arg(long)]
        single_use: bool,
        /// Print the API's JSON (`token`, `ca_hash`, `seeds`, `ttl_secs`, `command`) instead of
        /// the text, for scripts (the boot scripts of a deployment store it in a secret).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Mint a token that lets its holder publish one stream (rtmp://HOST/APP/KEY?token=...).
    Publish(stream_auth::StreamTokenArgs),
    /// Mint a token that lets its holder play one stream (RTMP or HTTP-FLV, ?token=...).
    Play(stream_auth::StreamTokenArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Run(args) => {
            init_logging();
            runtime.block_on(run::run(args))
        }
        Command::Init(args) => {
            init_logging();
            runtime.block_on(run::init(args))
        }
        Command::Join(args) => {
            init_logging();
            runtime.block_on(run::join(args))
        }
        Command::Status(args) => admin::status(&args.api, args.json),
        Command::Token(TokenCommand::Create {
            ttl,
            single_use,
            json,
            admin,
        }) => admin::create_token(&admin, ttl, single_use, json),
        Command::Token(TokenCommand::Publish(args)) => {
            stream_auth::mint(&args, skein_node::auth::Action::Publish)
        }
        Command::Token(TokenCommand::Play(args)) => {
            stream_auth::mint(&args, skein_node::auth::Action::Play)
        }
        Command::StreamKey(command) => stream_auth::manage(&command),
        Command::Leave(admin) => admin::leave(&admin),
        Command::Remove { node, admin } => admin::remove(&admin, &node),
        Command::Recover(args) => {
            init_logging();
            runtime.block_on(run::recover(args))
        }
        Command::CheckConfig { file } => run::check_config(&file),
        Command::Demo(args) => {
            init_logging();
            runtime.block_on(demo::run(args))
        }
        Command::Bench(command) => runtime.block_on(bench::run(command)),
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
