//! Membership from the cluster: poll `GET /api/v1/cluster` on the seeds, turn regions and
//! edge nodes into region configs, keep the last copy on disk.
//!
//! Consumed shape (the `ClusterStatus` of skein-raft; extra fields ignored):
//! `{"regions":[{"name","lat","lon","vips":[ip]}],
//!   "nodes":[{"name","region","roles":{"edge":true,"origin":false},
//!             "public_addr":{"rtmp":"ip:port","http":"ip:port"}}]}`
//! A region gets coordinates when one of its nodes publishes them (`--region-coordinates`);
//! until then it is skipped, since nearest-region answers need them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::config::{EdgeConfig, RegionConfig, validate_region};
use crate::http;

#[derive(Debug, Deserialize)]
struct ClusterDoc {
    #[serde(default)]
    regions: Vec<ClusterRegion>,
    #[serde(default)]
    nodes: Vec<ClusterNode>,
}

#[derive(Debug, Deserialize)]
struct ClusterRegion {
    name: String,
    lat: Option<f64>,
    lon: Option<f64>,
    #[serde(default)]
    vips: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ClusterNode {
    name: String,
    region: String,
    #[serde(default)]
    roles: NodeRoles,
    public_addr: Option<PublicAddr>,
}

/// What a node may do; only edges serve viewers, so only they are handed out.
#[derive(Debug, Default, Deserialize)]
struct NodeRoles {
    #[serde(default)]
    edge: bool,
}

#[derive(Debug, Deserialize)]
struct PublicAddr {
    rtmp: Option<String>,
    http: Option<String>,
}

/// Parses the cluster document into regions with their edges. Nodes that are not edges, have
/// no usable public address, or name an unknown region are skipped (with a reason).
pub fn parse_membership(body: &[u8]) -> Result<(Vec<RegionConfig>, Vec<String>), String> {
    let doc: ClusterDoc = serde_json::from_slice(body).map_err(|e| format!("cluster JSON: {e}"))?;
    let mut skipped = Vec::new();
    let mut regions: Vec<RegionConfig> = Vec::new();
    for r in doc.regions {
        let (Some(lat), Some(lon)) = (r.lat, r.lon) else {
            skipped.push(format!(
                "region {}: no coordinates yet (a node of it publishes them with --region-coordinates)",
                r.name
            ));
            continue;
        };
        let mut vips = Vec::new();
        for v in &r.vips {
            match v.parse() {
                Ok(ip) => vips.push(ip),
                Err(_) => skipped.push(format!("region {}: VIP {v:?} is not an IP", r.name)),
            }
        }
        let region = RegionConfig {
            name: r.name,
            lat,
            lon,
            vips,
            edges: Vec::new(),
        };
        match validate_region(&region) {
            Ok(()) if !regions.iter().any(|x| x.name == region.name) => regions.push(region),
            Ok(()) => skipped.push(format!("region {}: listed twice", region.name)),
            Err(e) => skipped.push(format!("region {}: {e}", region.name)),
        }
    }
    for n in doc.nodes {
        if !n.roles.edge {
            continue;
        }
        let Some(region) = regions.iter_mut().find(|r| r.name == n.region) else {
            skipped.push(format!("node {}: unknown region {:?}", n.name, n.region));
            continue;
        };
        let addr = |a: Option<&String>| a.and_then(|s| s.parse::<SocketAddr>().ok());
        let (Some(rtmp), Some(web)) = (
            addr(n.public_addr.as_ref().and_then(|p| p.rtmp.as_ref())),
            addr(n.public_addr.as_ref().and_then(|p| p.http.as_ref())),
        ) else {
            skipped.push(format!(
                "node {}: public_addr.rtmp/http missing or not ip:port",
                n.name
            ));
            continue;
        };
        region.edges.push(EdgeConfig {
            name: n.name,
            addrs: vec![rtmp.ip()],
            probe_addr: None,
            rtmp_port: rtmp.port(),
            http_port: web.port(),
            max_connections: None,
            max_egress_bps: None,
        });
    }
    Ok((regions, skipped))
}

/// Reads the cached membership, if any, with the time it was written.
pub fn load_cache(path: &Path) -> Option<(Vec<RegionConfig>, SystemTime)> {
    let text = std::fs::read(path).ok()?;
    let written = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    match serde_json::from_slice(&text) {
        Ok(r) => Some((r, written)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable cluster cache");
            None
        }
    }
}

/// Writes the membership atomically (temp file + rename).
pub fn save_cache(path: &Path, regions: &[RegionConfig]) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(regions).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, path)
}

fn resolve(seed: &str) -> Option<SocketAddr> {
    let seed = seed.trim_start_matches("http://").trim_end_matches('/');
    seed.to_socket_addrs().ok()?.next()
}

/// What the watcher reports.
#[derive(Debug)]
pub enum Update {
    /// The cluster answered with a new membership.
    Membership(Vec<RegionConfig>),
    /// The cluster answered with the membership already in use.
    Confirmed,
    Error(String),
}

/// A member that accepts the connection but never answers must not stall the watch: each seed
/// gets this long.
const SEED_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /api/v1/cluster` on one seed, given up after `within`.
async fn ask(addr: SocketAddr, within: Duration) -> Result<http::Response, String> {
    tokio::time::timeout(within, http::get(addr, "/api/v1/cluster"))
        .await
        .map_err(|_| format!("{addr}: no answer within {within:?}"))?
}

/// Polls the seeds forever; sends a membership whenever it differs from the last one.
pub async fn watch(
    seeds: Vec<String>,
    interval: Duration,
    cache: std::path::PathBuf,
    mut last: Option<Vec<RegionConfig>>,
    tx: mpsc::Sender<Update>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut errors = Vec::new();
        let mut got = None;
        for seed in &seeds {
            let Some(addr) = resolve(seed) else {
                errors.push(format!("{seed}: cannot resolve"));
                continue;
            };
            match ask(addr, SEED_TIMEOUT).await {
                Ok(r) if r.status == 200 => match parse_membership(&r.body) {
                    Ok((regions, skipped)) => {
                        for s in skipped {
                            tracing::debug!(seed = %seed, "cluster: skipped {s}");
                        }
                        got = Some(regions);
                        break;
                    }
                    Err(e) => errors.push(format!("{seed}: {e}")),
                },
                Ok(r) => errors.push(format!("{seed}: HTTP {}", r.status)),
                Err(e) => errors.push(e),
            }
        }
        let update = match got {
            Some(regions) if last.as_ref() != Some(&regions) => {
                if let Err(e) = save_cache(&cache, &regions) {
                    tracing::warn!(path = %cache.display(), error = %e, "cannot write cluster cache");
                }
                last = Some(regions.clone());
                Update::Membership(regions)
            }
            Some(_) => Update::Confirmed,
            None => Update::Error(errors.join("; ")),
        };
        if tx.send(update).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_seed_that_never_answers_is_given_up() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let (_silent, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let err = ask(addr, Duration::from_millis(200)).await.unwrap_err();
        assert!(err.contains("no answer within"), "{err}");
        holder.abort();
    }

    #[test]
    fn parses_tolerantly() {
        let body = br#"{
          "regions":[{"name":"a","lat":50.1,"lon":8.7,"vips":["127.0.1.100"],"extra":true},
                     {"name":"b","lat":38.9,"lon":-77.0},
                     {"name":"c","lat":null,"lon":null,"vips":[]}],
          "nodes":[
            {"id":1,"name":"edge-a1","region":"a","roles":{"edge":true,"origin":false},
             "public_addr":{"rtmp":"127.0.1.1:1935","http":"127.0.1.1:8080"},"health":"up"},
            {"id":2,"name":"origin-1","region":"a","roles":{"edge":false,"origin":true},
             "public_addr":{"rtmp":"127.0.1.9:1935","http":"127.0.1.9:8080"}},
            {"id":3,"name":"edge-x","region":"zz","roles":{"edge":true,"origin":true},
             "public_addr":{"rtmp":"127.0.9.1:1935","http":"127.0.9.1:8080"}},
            {"id":4,"name":"edge-b1","region":"b","roles":{"edge":true,"origin":true},"raft":"voter",
             "public_addr":{"rtmp":"127.0.2.1:1936","http":"127.0.2.1:8081"}}
          ],
          "origins":[1]}"#;
        let (regions, skipped) = parse_membership(body).unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!(
            regions[0].vips,
            vec!["127.0.1.100".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(regions[0].edges.len(), 1);
        assert_eq!(regions[1].edges[0].rtmp_port, 1936);
        assert_eq!(regions[1].edges[0].http_port, 8081);
        assert_eq!(skipped.len(), 2, "{skipped:?}"); // region c without coordinates, edge-x
        assert!(parse_membership(b"not json").is_err());
        assert!(parse_membership(br#"{"regions": 5}"#).is_err());
    }

    #[test]
    fn cache_round_trip() {
        let path =
            std::env::temp_dir().join(format!("skein-dns-cache-{}.json", std::process::id()));
        let (regions, _) =
            parse_membership(br#"{"regions":[{"name":"a","lat":1,"lon":2}],"nodes":[]}"#).unwrap();
        save_cache(&path, &regions).unwrap();
        assert_eq!(load_cache(&path).map(|(r, _)| r), Some(regions));
        std::fs::remove_file(path).ok();
    }
}
