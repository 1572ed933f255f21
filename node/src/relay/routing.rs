//! Where a stream lives: its owner on the consistent-hash ring of the last committed origin
//! pool, minus the origins this node has itself seen die. Routing never waits for Raft: a dead
//! origin is routed around at once, and the committed pool catches up later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use skein_raft::ring::Ring;
use skein_raft::{ClusterState, NodeId};
use tokio::sync::watch;

/// This node's view of which origin owns each stream: the committed origin pool's
/// consistent-hash ring, minus origins this node has seen die.
pub struct Routing {
    me: NodeId,
    state: watch::Receiver<Arc<ClusterState>>,
    dead: Mutex<HashMap<NodeId, Instant>>,
    /// The ring of the last origin set asked for: every play asks for an owner, and the set
    /// changes rarely.
    ring: Mutex<Option<(Vec<NodeId>, Arc<Ring>)>>,
    /// Bumped whenever the dead set changes, so tasks re-route.
    epoch: watch::Sender<u64>,
}

impl Routing {
    /// Routing for node `me`, following the committed cluster state in `state`.
    pub fn new(me: NodeId, state: watch::Receiver<Arc<ClusterState>>) -> Self {
        Self {
            me,
            state,
            dead: Mutex::new(HashMap::new()),
            ring: Mutex::new(None),
            epoch: watch::Sender::new(0),
        }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
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
        let origins = self.origins();
        if origins.is_empty() {
            return None;
        }
        let ring = {
            let mut cached = self.ring.lock();
            match &*cached {
                Some((set, ring)) if *set == origins => ring.clone(),
                _ => {
                    let ring = Arc::new(Ring::new(origins.iter().copied()));
                    *cached = Some((origins, ring.clone()));
                    ring
                }
            }
        };
        ring.owner(stream)
    }

    /// Routes around `node` from now on, until a probe reaches it again.
    pub fn mark_dead(&self, node: NodeId) -> bool {
        if node == self.me {
            return false;
        }
        let newly = self.dead.lock().insert(node, Instant::now()).is_none();
        if newly {
            tracing::warn!(node, "relay peer unreachable; routing around it");
            self.epoch.send_modify(|e| *e += 1);
        }
        newly
    }

    /// Routes to `node` again after a probe reached it.
    pub fn clear(&self, node: NodeId) {
        if self.dead.lock().remove(&node).is_some() {
            tracing::info!(node, "relay peer reachable again");
            self.epoch.send_modify(|e| *e += 1);
        }
    }

    /// Nodes currently routed around.
    pub fn dead(&self) -> Vec<NodeId> {
        self.dead.lock().keys().copied().collect()
    }

    /// Forgets marks of nodes that are no longer origins (nothing routes to them anyway).
    pub fn forget_non_origins(&self) {
        let state = self.state.borrow().clone();
        let before = self.dead.lock().len();
        self.dead
            .lock()
            .retain(|n, _| state.origins.contains_key(n));
        if self.dead.lock().len() != before {
            self.epoch.send_modify(|e| *e += 1);
        }
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
