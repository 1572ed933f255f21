//! The operator commands that talk to a running node's HTTP API: `skein status`,
//! `skein token create`, `skein leave`, `skein remove`, and the HTTP helpers the other admin
//! commands share.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use skein_raft::{ClusterStatus, NodeStatus, OriginState, RaftRole};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// HTTP address of any cluster member.
    #[arg(long, env = "SKEIN_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// Print the raw JSON of GET /api/v1/cluster.
    #[arg(long)]
    pub json: bool,
}

/// Where an admin command takes the admin token from (else `DATA_DIR/admin.token`).
#[derive(Debug, Clone, Default, Args)]
pub struct AdminTokenArgs {
    /// Admin token; default: read from --token-file, else DATA_DIR/admin.token of a local
    /// member. Prefer those or SKEIN_ADMIN_TOKEN: arguments are visible to every user.
    #[arg(long, env = "SKEIN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin token (its first line).
    #[arg(long, env = "SKEIN_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// HTTP address of the node to ask.
    #[arg(long, env = "SKEIN_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    #[command(flatten)]
    pub token: AdminTokenArgs,
    /// Data directory of the local member, to read its admin token.
    #[arg(long, env = "SKEIN_DATA_DIR", default_value = "skein-data")]
    pub data_dir: PathBuf,
}

/// An HTTP client whose calls give up after `timeout`; non-2xx answers are read, not errors.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// How long an operator command waits for the node (a leave may wait for streams to move).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub fn url(api: &str, path: &str) -> String {
    let base = api.trim_end_matches('/');
    if base.contains("://") {
        format!("{base}{path}")
    } else {
        format!("http://{base}{path}")
    }
}

/// Reads a response; a non-2xx status becomes an error carrying the server's message.
pub fn read(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
    api: &str,
) -> anyhow::Result<Value> {
    let mut response = response.with_context(|| format!("cannot reach {api} ({what})"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("{what}: cannot read the answer"))?;
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if !status.is_success() {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        bail!("{what} failed ({status}): {message}");
    }
    Ok(value)
}

pub fn token(args: &AdminArgs) -> anyhow::Result<String> {
    if let Some(t) = &args.token.admin_token {
        return Ok(t.clone());
    }
    if let Some(path) = &args.token.token_file {
        return crate::run::read_secret_file(path, "admin token");
    }
    let path = args.data_dir.join("admin.token");
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .with_context(|| {
            format!(
                "no admin token: pass --token-file FILE (or SKEIN_ADMIN_TOKEN), or run this on the node with --data-dir pointing at its data directory ({} not readable)",
                path.display()
            )
        })
}

/// `GET /api/v1/cluster` of the node behind `api`, as JSON, waiting at most `timeout`.
fn fetch_status_json(api: &str, timeout: Duration) -> anyhow::Result<Value> {
    read(
        agent(timeout).get(url(api, "/api/v1/cluster")).call(),
        "cluster status",
        api,
    )
}

/// The cluster status as the node behind `api` sees it, waiting at most `timeout`.
pub fn fetch_status(api: &str, timeout: Duration) -> anyhow::Result<ClusterStatus> {
    let value = fetch_status_json(api, timeout)?;
    serde_json::from_value(value).context("unexpected cluster status document")
}

pub fn status(api: &str, json: bool) -> anyhow::Result<()> {
    if json {
        let value = fetch_status_json(api, COMMAND_TIMEOUT)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print!("{}", render_status(&fetch_status(api, COMMAND_TIMEOUT)?));
    let relay = read(
        agent(COMMAND_TIMEOUT).get(url(api, "/api/v1/relay")).call(),
        "relay view",
        api,
    )?;
    print!("{}", render_relay(&relay));
    Ok(())
}

/// The relay lines of `skein status`, for the node that answers: its region's edge mesh, and
/// for each stream it pulls or serves, where it reads it from, its relay edge and the nodes it
/// serves it to.
pub fn render_relay(view: &Value) -> String {
    let list = |ids: &Value| -> String {
        let ids: Vec<String> = ids
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(Value::to_string)
            .collect();
        if ids.is_empty() {
            "-".to_owned()
        } else {
            ids.join(",")
        }
    };
    let mut out = format!(
        "\nrelay of node {}: mesh edges {}\n",
        view["node"],
        list(&view["mesh_edges"])
    );
    let keys = |field: &str| -> Vec<String> {
        view[field]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut streams = keys("pulls_from");
    streams.extend(keys("served_pulls"));
    streams.sort();
    streams.dedup();
    for stream in streams {
        let from = match &view["pulls_from"][&stream] {
            Value::Null => "-".to_owned(),
            from => from.to_string(),
        };
        let relay_edge = match &view["relay_edges"][&stream] {
            Value::Null => "-".to_owned(),
            edge => edge.to_string(),
        };
        out.push_str(&format!(
            "  {stream}  pulls from {from}  relay edge {relay_edge}  serves {}\n",
            list(&view["served_pulls"][&stream])
        ));
    }
    out
}

/// The `skein status` table.
pub fn render_status(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let leader = status
        .leader
        .and_then(|l| status.nodes.iter().find(|n| n.id == l))
        .map_or("none".to_owned(), |n| format!("{} ({})", n.id, n.name));
    out.push_str(&format!(
        "leader: {leader}   term: {}   origins: {} live of target {}   voters: {:?}{}\n\n",
        status.term,
        status.origin_pool.live.len(),
        status.origin_pool.target,
        status.voters,
        if status.voters_changing {
            " (changing)"
        } else {
            ""
        }
    ));
    let header = [
        "ID", "NAME", "REGION", "ROLES", "RAFT", "HEALTH", "ORIGIN", "STREAMS", "CONNS", "CPU",
        "EGRESS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for n in &status.nodes {
        rows.push(node_row(n));
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn node_row(n: &NodeStatus) -> Vec<String> {
    let raft = match n.raft {
        RaftRole::Voter if n.leader => "voter*",
        RaftRole::Voter => "voter",
        RaftRole::Learner => "learner",
        RaftRole::None => "-",
    };
    let origin = match n.origin {
        Some(OriginState::Active) => "active",
        Some(OriginState::Draining) => "draining",
        None => "-",
    };
    let (streams, conns, cpu, egress) = match &n.load {
        Some(l) => (
            format!("{}o/{}e", l.origin_streams.len(), l.edge_streams),
            l.connections.to_string(),
            format!("{:.0}%", l.cpu * 100.0),
            format!("{:.1}Mb/s", l.egress_bps as f64 / 1e6),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    vec![
        n.id.to_string(),
        n.name.clone(),
        n.region.clone(),
        n.roles.to_string(),
        raft.into(),
        format!("{:?}", n.health).to_lowercase(),
        origin.into(),
        streams,
        conns,
        cpu,
        egress,
    ]
}

pub fn create_token(
    args: &AdminArgs,
    ttl: Duration,
    single_use: bool,
    json: bool,
) -> anyhow::Result<()> {
    let token = token(args)?;
    let value = read(
        agent(COMMAND_TIMEOUT)
            .post(url(&args.api, "/api/v1/cluster/tokens"))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(serde_json::json!({ "ttl_secs": ttl.as_secs(), "single_use": single_use })),
        "token create",
        &args.api,
    )?;
    if json {
        println!("{value}");
        return Ok(());
    }
    println!(
        "token {} (valid {} s{})\n\n  {}",
        value["token"].as_str().unwrap_or_default(),
        value["ttl_secs"],
        if single_use { ", single use" } else { "" },
        value["command"].as_str().unwrap_or_default()
    );
    Ok(())
}

pub fn leave(args: &AdminArgs) -> anyhow::Result<()> {
    let token = token(args)?;
    let value = read(
        agent(COMMAND_TIMEOUT)
            .post(url(&args.api, "/api/v1/cluster/leave"))
            .header("Authorization", &format!("Bearer {token}"))
            .send_empty(),
        "leave",
        &args.api,
    )?;
    println!("node {} left the cluster and is stopping", value["left"]);
    Ok(())
}

pub fn remove(args: &AdminArgs, node: &str) -> anyhow::Result<()> {
    let token = token(args)?;
    let value = read(
        agent(COMMAND_TIMEOUT)
            .delete(url(&args.api, &format!("/api/v1/cluster/nodes/{node}")))
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
        "remove",
        &args.api,
    )?;
    println!("node {} removed from the cluster", value["removed"]);
    Ok(())
}
