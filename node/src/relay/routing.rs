//! Where a stream lives: its owner on the consistent-hash ring of the last committed origin
//! pool, minus the origins this node has itself seen die. Routing never waits for Raft: a dead
//! origin is routed around at once, and the committed pool catches up later.
//!
//! The edge mesh: in a region with at least `mesh_min_edges` live edges (committed up, edge
//! role, not in the origin pool, not seen dead here), one edge per stream — the first of the
//! region's edges on a consistent-hash ring of them — is the stream's regional relay: it pulls
//! from the owner, and the region's other nodes pull from it. The relative order of two edges
//! for a key does not depend on which other edges are on the ring, so two nodes with different
//! views can never pick each other as relay; a node that serves pulls of a stream always pulls
//! it from the owner (`Relay::upstream`), so chains are at most edge → relay edge → owner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use skein_raft::ring::Ring;
use skein_raft::{ClusterState, NodeHealth, NodeId};
use tokio::sync::watch;

/// This node's view of which origin owns each stream: the committed origin pool's
/// consistent-hash ring, minus origins this node has seen die.
pub struct Routing {
    me: NodeId,
    state: watch::Receiver<Arc<ClusterState>>,
    dead: Mutex<HashMap<NodeId, Instant>>,
    /// The ring of the last origin set asked for.
    origin_ring: RingCache,
    /// The ring of the last set of this region's mesh edges asked for.
    edge_ring: RingCache,
    /// Fewest live edges in the region for the mesh to form; 0: never.
    mesh_min_edges: usize,
    /// Bumped whenever the dead set changes, so tasks re-route.
    epoch: watch::Sender<u64>,
}

impl Routing {
    /// Routing for node `me`, following the committed cluster state in `state`; the region's
    /// edge mesh forms with at least `mesh_min_edges` live edges (0: never).
    pub fn new(
        me: NodeId,
        state: watch::Receiver<Arc<ClusterState>>,
        mesh_min_edges: usize,
    ) -> Self {
        Self {
            me,
            state,
            dead: Mutex::new(HashMap::new()),
            origin_ring: RingCache::default(),
            edge_ring: RingCache::default(),
            mesh_min_edges,
            epoch: watch::Sender::new(0),
        }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Whether this node is in the committed origin pool (active or draining).
    pub fn is_origin(&self) -> bool {
        self.state.borrow().origins.contains_key(&self.me)
    }

    /// Origins this node routes to: committed live origins it has not seen die.
    pub fn origins(&self) -> Vec<NodeId> {
        let dead = self.dead.lock();
        self.state
            .borrow()
            .live_origins()
            .into_iter()
            .filter(|n| !dead.contains_key(n))
            .collect()
    }

    /// The owner of `stream` (`app/key`), `None` while no origin is reachable.
    pub fn owner(&self, stream: &str) -> Option<NodeId> {
        self.origin_ring.ring(self.origins()).owner(stream)
    }

    /// This region's edges in the mesh: committed up, edge role, not in the origin pool, not
    /// seen dead here. Empty while there are fewer than `mesh_min_edges` (the mesh is off).
    pub fn mesh_edges(&self) -> Vec<NodeId> {
        let state = self.state.borrow();
        let Some(region) = state.nodes.get(&self.me).map(|n| n.region.as_str()) else {
            return Vec::new();
        };
        let dead = self.dead.lock();
        mesh_edges(
            &state,
            region,
            |n| dead.contains_key(&n),
            self.mesh_min_edges,
        )
    }

    /// The regional relay edge of `stream`: the first of the region's mesh edges on their
    /// ring; `None` while the mesh is off.
    pub fn relay_edge(&self, stream: &str) -> Option<NodeId> {
        let edges = self.mesh_edges();
        if edges.is_empty() {
            return None;
        }
        self.edge_ring.ring(edges).owner(stream)
    }

    /// Where this node pulls `stream` from when it pulls for its own viewers: the regional
    /// relay edge when the mesh is on and this node is not it, else the owner. `None` while no
    /// origin is reachable; `Some(me)` when this node owns the stream.
    pub fn upstream(&self, stream: &str) -> Option<NodeId> {
        let owner = self.owner(stream)?;
        Some(pull_source(self.me, owner, || self.relay_edge(stream)))
    }

    /// Routes around `node` from now on, until a probe reaches it again.
    pub fn mark_dead(&self, node: NodeId) -> bool {
        if node == self.me {
            return false;
        }
        let newly = self.dead.lock().insert(node, Instant::now()).is_none();
        if newly {
            tracing::warn!(node, "relay peer unreachable; routing around it");
            self.bump();
        }
        newly
    }

    /// Routes to `node` again after a probe reached it.
    pub fn clear(&self, node: NodeId) {
        if self.dead.lock().remove(&node).is_some() {
            tracing::info!(node, "relay peer reachable again");
            self.bump();
        }
    }

    /// Nodes currently routed around.
    pub fn dead(&self) -> Vec<NodeId> {
        self.dead.lock().keys().copied().collect()
    }

    /// Forgets marks of nodes nothing routes to any more: neither origins nor edges of this
    /// node's region.
    pub fn forget_unrouted(&self) {
        let state = self.state.borrow().clone();
        let region = state.nodes.get(&self.me).map(|n| n.region.clone());
        let routed = |n: &NodeId| {
            state.origins.contains_key(n)
                || state
                    .nodes
                    .get(n)
                    .is_some_and(|info| info.roles.edge && Some(&info.region) == region.as_ref())
        };
        let changed = {
            let mut dead = self.dead.lock();
            let before = dead.len();
            dead.retain(|n, _| routed(n));
            dead.len() != before
        };
        if changed {
            self.bump();
        }
    }

    /// Wakes every watcher to re-route (something routing depends on changed).
    pub fn bump(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// A watcher that wakes on changes after this call, to re-route.
    pub fn watcher(&self) -> RouteWatcher {
        let mut state = self.state.clone();
        state.mark_unchanged();
        let mut epoch = self.epoch.subscribe();
        epoch.mark_unchanged();
        RouteWatcher { state, epoch }
    }
}

/// The edges of `region` in its mesh: committed up, edge role, not in the origin pool, not
/// `routed_around`; empty when fewer than `min_edges` remain (or `min_edges` is 0: never).
pub fn mesh_edges(
    state: &ClusterState,
    region: &str,
    routed_around: impl Fn(NodeId) -> bool,
    min_edges: usize,
) -> Vec<NodeId> {
    if min_edges == 0 {
        return Vec::new();
    }
    let edges: Vec<NodeId> = state
        .nodes
        .values()
        .filter(|n| {
            n.region == region
                && n.roles.edge
                && n.health == NodeHealth::Up
                && !state.origins.contains_key(&n.id)
                && !routed_around(n.id)
        })
        .map(|n| n.id)
        .collect();
    if edges.len() < min_edges {
        return Vec::new();
    }
    edges
}

/// Where node `me` pulls a stream owned by `owner` from for its own viewers: the owner when
/// `me` is the owner, else the region's relay edge (asked only then) unless that is `me` or
/// the mesh is off.
pub fn pull_source(
    me: NodeId,
    owner: NodeId,
    relay_edge: impl FnOnce() -> Option<NodeId>,
) -> NodeId {
    if owner == me {
        return owner;
    }
    match relay_edge() {
        Some(edge) if edge != me => edge,
        _ => owner,
    }
}

/// The ring of the last member set asked for: every play asks for a route, and the sets
/// change rarely.
#[derive(Default)]
struct RingCache(Mutex<Option<(Vec<NodeId>, Arc<Ring>)>>);

impl RingCache {
    fn ring(&self, members: Vec<NodeId>) -> Arc<Ring> {
        let mut cached = self.0.lock();
        match &*cached {
            Some((set, ring)) if *set == members => ring.clone(),
            _ => {
                let ring = Arc::new(Ring::new(members.iter().copied()));
                *cached = Some((members, ring.clone()));
                ring
            }
        }
    }
}

/// Wakes up when the committed state or the local dead set changes.
pub struct RouteWatcher {
    state: watch::Receiver<Arc<ClusterState>>,
    epoch: watch::Receiver<u64>,
}

impl RouteWatcher {
    /// Cancel-safe. Pends forever once both sources are closed (the node is stopping).
    pub async fn changed(&mut self) {
        tokio::select! {
            Ok(()) = self.state.changed() => {}
            Ok(()) = self.epoch.changed() => {}
            else => std::future::pending().await,
        }
    }
}
