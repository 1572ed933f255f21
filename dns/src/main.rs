//! `skein-dns`: authoritative GeoDNS for the Skein service name.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

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
            skein_dns::write_demo_mmdb(&out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        None => {
            let Some(config) = cli.config else {
                anyhow::bail!("missing --config FILE (see --help)");
            };
            skein_dns::init_logging(cli.log.as_deref())?;
            skein_dns::run(&skein_dns::RunOptions {
                config,
                cluster_seeds: cli.cluster,
            })
        }
    }
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    let c = skein_dns::check_config(file)?;
    println!(
        "{}: ok — {} zone(s), service names {}, {} region(s), {} edge(s), geo database: {}",
        file.display(),
        c.zones,
        c.service_names.join(" "),
        c.regions,
        c.edges,
        if c.geo_database {
            "yes"
        } else {
            "none (default region for everyone)"
        }
    );
    Ok(())
}
