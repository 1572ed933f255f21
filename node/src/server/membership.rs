//! The node as a cluster member: joining (init, join or reopen) through `skein-raft`,
//! [`ClusterLink`] (the Raft member and the relay, as drivers and the API reach them), the
//! region's coordinates, the admin token, an origin's drain and leaving. It knows nothing of
//! the node's context; the assembly (`server`) wires it in.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use skein_raft::{
    Cluster, ClusterConfig, Command, JoinInfo, NodeId, OriginState, PublicAddrs, Region, Settings,
};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::relay::{Relay, RelaySettings};

/// How this node becomes (or stays) a cluster member.
#[derive(Debug, Clone)]
pub enum Membership {
    /// Not in a cluster: a single media node.
    Standalone,
    /// Bootstrap a new cluster (`skein init`); the first join token lives this long.
    Init {
        /// Lifetime of the first join token.
        token_ttl: Duration,
    },
    /// Join through seeds (`skein join`); a node that already joined just reopens.
    Join {
        /// Internal addresses of members to ask.
        seeds: Vec<SocketAddr>,
        /// The join token, `ID.SECRET`.
        token: String,
        /// `sha256:…` of the cluster CA the seeds must prove.
        ca_hash: String,
    },
    /// Reopen the membership kept in the data directory (`skein run`).
    Reopen,
}

impl Membership {
    /// `skein run`: a cluster member when the data directory says so, else standalone.
    pub fn from_data_dir(dir: &Path) -> Self {
        if Cluster::is_member(dir) {
            Membership::Reopen
        } else {
            Membership::Standalone
        }
    }
}

/// A node's cluster side, reachable from every connection through `Node::cluster`.
pub struct ClusterLink {
    /// The Raft member.
    pub cluster: Arc<Cluster>,
    /// Media to and from the other nodes.
    pub relay: Arc<Relay>,
    /// Cancelled once the node has left the cluster, so it stops.
    left: CancellationToken,
}

/// Joins or opens the cluster as `membership` says; `None` for a standalone node. After `init`
/// also returns what `skein join` needs.
pub(super) async fn join(
    node_config: &Config,
    membership: Membership,
    public: PublicAddrs,
) -> anyhow::Result<Option<(Arc<Cluster>, Option<JoinInfo>)>> {
    let section = &node_config.cluster;
    let mut config = ClusterConfig::new(
        &section.data_dir,
        &node_config.node.name,
        &node_config.node.region,
        section.internal,
        public,
    );
    config.roles = section.roles;
    config.settings = Settings {
        origin_target: section.origin_target,
        cert_lifetime_ms: section.cert_lifetime_secs.saturating_mul(1000),
        ..Settings::default()
    };
    let data_dir = section.data_dir.display().to_string();
    let (cluster, info) = match membership {
        Membership::Standalone => return Ok(None),
        Membership::Init { token_ttl } => {
            let (cluster, info) = Cluster::init(config, token_ttl)
                .await
                .with_context(|| format!("cannot initialise a cluster in {data_dir}"))?;
            (cluster, Some(info))
        }
        Membership::Join {
            seeds,
            token,
            ca_hash,
        } => {
            let cluster = Cluster::join(config, &seeds, &token, &ca_hash)
                .await
                .context("cannot join the cluster")?;
            (cluster, None)
        }
        Membership::Reopen => {
            let cluster = Cluster::open(config)
                .await
                .with_context(|| format!("cannot reopen the cluster member in {data_dir}"))?;
            (cluster, None)
        }
    };
    tracing::info!(
        node = cluster.node_id(),
        internal = %section.internal,
        region = %node_config.node.region,
        "cluster member"
    );
    Ok(Some((Arc::new(cluster), info)))
}

/// The relay's settings from the node's configuration.
pub(super) fn relay_settings(config: &Config) -> RelaySettings {
    RelaySettings {
        pull_hold: Duration::from_millis(config.cluster.pull_hold_ms),
        timeout: Duration::from_millis(config.cluster.relay_timeout_ms),
        max_message: config.rtmp.max_message_size as usize,
        pull_linger: Duration::from_secs(5),
        mesh_min_edges: config.cluster.mesh_min_edges,
    }
}

/// The addresses other nodes, `skein status` and GeoDNS use to reach our public ports.
pub(super) fn public_addrs(config: &Config, rtmp: SocketAddr, http: SocketAddr) -> PublicAddrs {
    let advertised = |bound: SocketAddr| -> SocketAddr {
        let ip = match config.cluster.advertise_ip {
            Some(ip) => ip,
            None if bound.ip().is_unspecified() => config.cluster.internal.ip(),
            None => bound.ip(),
        };
        SocketAddr::new(ip, bound.port())
    };
    PublicAddrs {
        rtmp: advertised(rtmp),
        http: advertised(http),
    }
}

/// What this node's configuration says about its region: coordinates (published once, when
/// the region has none) and VIPs (published when they differ from the committed ones).
pub(super) struct RegionFacts {
    name: String,
    coordinates: Option<[f64; 2]>,
    vips: Vec<IpAddr>,
}

impl RegionFacts {
    pub(super) fn from_config(config: &Config) -> Self {
        Self {
            name: config.node.region.clone(),
            coordinates: config.cluster.region_coordinates,
            vips: config.cluster.region_vips.clone(),
        }
    }

    /// Nothing to publish.
    pub(super) fn is_empty(&self) -> bool {
        self.coordinates.is_none() && self.vips.is_empty()
    }

    /// The committed region updated with these facts, or `None` when it already has them.
    fn update(&self, committed: &Region) -> Option<Region> {
        let mut region = committed.clone();
        if let Some([lat, lon]) = self.coordinates
            && (region.lat.is_none() || region.lon.is_none())
        {
            region.lat = Some(lat);
            region.lon = Some(lon);
        }
        if !self.vips.is_empty() && region.vips != self.vips {
            region.vips.clone_from(&self.vips);
        }
        (region != *committed).then_some(region)
    }
}

/// Publishes the region's coordinates when the cluster has none yet (GeoDNS needs them) and
/// its VIPs when they differ. The leader may not be known right after start, so this retries
/// for a while.
pub(super) async fn publish_region(link: Arc<ClusterLink>, facts: RegionFacts) {
    let name = &facts.name;
    for _ in 0..60 {
        let known = link.cluster.state().borrow().regions.get(name).cloned();
        let Some(region) = known else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let Some(update) = facts.update(&region) else {
            return;
        };
        match link.cluster.upsert_region(update.clone()).await {
            Ok(()) => {
                tracing::info!(
                    region = %name,
                    lat = ?update.lat,
                    lon = ?update.lon,
                    vips = ?update.vips,
                    "region published"
                );
                return;
            }
            Err(e) => tracing::debug!(region = %name, "cannot publish the region yet: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::warn!(region = %name, "gave up publishing the region's coordinates and VIPs");
}

impl ClusterLink {
    /// The cluster side of a member: the Raft member and the relay over its transport.
    pub(super) fn new(cluster: Arc<Cluster>, relay: Arc<Relay>) -> Self {
        Self {
            cluster,
            relay,
            left: CancellationToken::new(),
        }
    }

    /// Cancelled once this node has left the cluster (`skein leave`), so it stops.
    pub(super) fn left(&self) -> CancellationToken {
        self.left.clone()
    }

    /// `skein leave`: an origin first leaves the ring and waits (bounded) until its streams
    /// have moved, then the node leaves the registry and stops.
    pub async fn leave(&self) -> anyhow::Result<()> {
        if self.is_active_origin() {
            self.write_drain()
                .await
                .context("cannot drain this origin")?;
            self.wait_streams_moved(Duration::from_secs(15)).await;
        }
        let me = self.cluster.node_id();
        self.cluster
            .leave()
            .await
            .context("cannot leave the cluster")?;
        tracing::info!(node = me, "left the cluster; stopping");
        self.left.cancel();
        Ok(())
    }

    /// A stopping node: an active origin leaves the ring and waits until its streams moved,
    /// all within `bound`. Failures are logged, not fatal: the node stops anyway and the
    /// leader's health watch takes it out of the pool.
    pub async fn drain_origin(&self, bound: Duration) {
        if !self.is_active_origin() {
            return;
        }
        let drain = async {
            match self.write_drain().await {
                Ok(()) => self.wait_streams_moved(bound).await,
                Err(e) => tracing::warn!("cannot take this origin out of the ring: {e:#}"),
            }
        };
        if tokio::time::timeout(bound, drain).await.is_err() {
            tracing::warn!(
                streams = self.relay.origin_streams().len(),
                "origin streams not all moved within {bound:?}"
            );
        }
    }

    fn is_active_origin(&self) -> bool {
        let me = self.cluster.node_id();
        self.cluster
            .state()
            .borrow()
            .origins
            .get(&me)
            .is_some_and(|slot| slot.state == OriginState::Active)
    }

    async fn write_drain(&self) -> anyhow::Result<()> {
        tracing::info!("draining this origin so its streams move away");
        self.cluster
            .write(Command::DrainOrigin {
                node: self.cluster.node_id(),
                now_ms: unix_ms(),
            })
            .await?;
        Ok(())
    }

    async fn wait_streams_moved(&self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        while !self.relay.origin_streams().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resolves `skein remove NODE`: a node id or a node name.
    pub fn resolve(&self, node: &str) -> anyhow::Result<NodeId> {
        let state = self.cluster.state().borrow().clone();
        if let Ok(id) = node.parse::<NodeId>()
            && state.nodes.contains_key(&id)
        {
            return Ok(id);
        }
        let named: Vec<NodeId> = state
            .nodes
            .values()
            .filter(|n| n.name == node)
            .map(|n| n.id)
            .collect();
        match named[..] {
            [id] => Ok(id),
            [] => anyhow::bail!("no node {node:?} in the cluster"),
            _ => anyhow::bail!("several nodes are named {node:?}; use the node id"),
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The admin token of a cluster member: the configured one, else one kept in the data
/// directory (created on first use, readable by the owner only) so `skein token create`,
/// `leave` and `remove` on the same machine work without configuring one.
pub fn admin_token(config: &Config) -> anyhow::Result<String> {
    if !config.http.admin_token.is_empty() {
        return Ok(config.http.admin_token.clone());
    }
    let path = config.cluster.data_dir.join("admin.token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_owned());
    }
    std::fs::create_dir_all(&config.cluster.data_dir)
        .with_context(|| format!("cannot create {}", config.cluster.data_dir.display()))?;
    let token: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect()
    };
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// `skein recover --force-new-cluster [--ca-key FILE]`: with the node stopped, makes it the
/// only voter of its stored membership, installing the CA key from `ca_key` if given. Unsafe by
/// nature; see docs/operations.md.
pub async fn recover_force_new_cluster(
    config: &Config,
    ca_key: Option<&Path>,
) -> anyhow::Result<()> {
    let section = &config.cluster;
    let unused: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let cluster_config = ClusterConfig::new(
        &section.data_dir,
        &config.node.name,
        &config.node.region,
        section.internal,
        PublicAddrs {
            rtmp: unused,
            http: unused,
        },
    );
    let ca_key_pem = match ca_key {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the CA key {}", path.display()))?,
        ),
        None => None,
    };
    let holds_key = Cluster::recover_force_new_cluster(&cluster_config, ca_key_pem.as_deref())
        .with_context(|| {
            format!(
                "cannot recover {} (is the node still running? is --ca-key the cluster's ca.key?)",
                section.data_dir.display()
            )
        })?;
    if !holds_key {
        eprintln!(
            "warning: this node does not hold the cluster CA key ({}): it cannot sign joins or certificate renewals until given one; run the recovery again with --ca-key FILE (a backup of ca.key from a former voter)",
            Cluster::ca_key_path(&section.data_dir).display()
        );
    }
    tracing::warn!(
        data_dir = %section.data_dir.display(),
        "membership forced to this node alone; start it with `skein run`, then wipe and re-join the old members"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(lat: Option<f64>, vips: &[&str]) -> Region {
        Region {
            name: "a".into(),
            lat,
            lon: lat,
            vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
        }
    }

    fn facts(coordinates: Option<[f64; 2]>, vips: &[&str]) -> RegionFacts {
        RegionFacts {
            name: "a".into(),
            coordinates,
            vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn region_facts_publish_missing_coordinates_and_changed_vips_only() {
        let wanted = facts(Some([1.0, 2.0]), &["192.0.2.80"]);
        let update = wanted.update(&region(None, &[])).unwrap();
        assert_eq!((update.lat, update.lon), (Some(1.0), Some(2.0)));
        assert_eq!(update.vips, vec!["192.0.2.80".parse::<IpAddr>().unwrap()]);
        // Coordinates already known are never overwritten; equal VIPs need no write.
        assert!(wanted.update(&region(Some(9.0), &["192.0.2.80"])).is_none());
        let moved = wanted.update(&region(Some(9.0), &["192.0.2.81"])).unwrap();
        assert_eq!(moved.lat, Some(9.0));
        assert_eq!(moved.vips, vec!["192.0.2.80".parse::<IpAddr>().unwrap()]);
        // No VIPs configured: the committed ones stay.
        assert!(
            facts(None, &[])
                .update(&region(None, &["192.0.2.9"]))
                .is_none()
        );
    }
}
