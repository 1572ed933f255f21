//! The shared state of a running node, which the [`Cluster`](crate::Cluster) handle, the RPC
//! server and the background loops all hold: Raft, the cluster transport, the committed state,
//! the leader's heartbeat table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use openraft::{Instant as _, Raft, RaftMetrics, ServerState};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::join_guard::SourceSlots;
use crate::relay::RelayStream;
use crate::state::ClusterState;
use crate::status::{self, ClusterStatus, LiveInfo};
use crate::store::StateMachine;
use crate::transport::ClusterTransport;
use crate::typecfg::TypeConfig;
use crate::types::{LoadReport, NodeId};

/// The last heartbeat the leader got from a node.
pub(crate) struct Heard {
    pub(crate) at: Instant,
    pub(crate) load: LoadReport,
}

pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) config: ClusterConfig,
    pub(crate) raft: Raft<TypeConfig, StateMachine>,
    pub(crate) transport: Arc<ClusterTransport>,
    pub(crate) state: watch::Receiver<Arc<ClusterState>>,
    /// Leader-side heartbeat table (memory only).
    pub(crate) heard: Mutex<HashMap<NodeId, Heard>>,
    /// This node's latest load, sent with every heartbeat.
    pub(crate) load: Mutex<LoadReport>,
    pub(crate) relay_tx: mpsc::Sender<RelayStream>,
    pub(crate) relay_rx: Mutex<Option<mpsc::Receiver<RelayStream>>>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// To wait, at shutdown, until storage is released (so the directory can be reopened).
    pub(crate) db: std::sync::Weak<redb::Database>,
    /// Open join connections per source address.
    pub(crate) join_sources: Arc<SourceSlots>,
    /// Expiry of the certificate in use (unix ms).
    pub(crate) cert_expires_at_ms: Mutex<Option<u64>>,
}

impl Inner {
    /// The leader as known here, except that a leader of several voters that no quorum has
    /// acknowledged for two election timeouts does not name itself: openraft keeps the role
    /// until it hears a higher term, but a majority it cannot reach may have elected another
    /// leader by then.
    pub(crate) fn known_leader(&self, m: &RaftMetrics<TypeConfig>) -> Option<NodeId> {
        let leader = m.current_leader?;
        let several_voters = m
            .membership_config
            .membership()
            .voter_ids()
            .nth(1)
            .is_some();
        let lease = 2 * self.config.election_timeout;
        let lapsed = m
            .last_quorum_acked
            .as_ref()
            .is_some_and(|at| at.elapsed() > lease);
        (leader != self.id || !several_voters || !lapsed).then_some(leader)
    }

    /// Status as seen from this node; with loads and heartbeats only when it is the leader.
    pub(crate) fn local_status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let heard = if m.state == ServerState::Leader {
            let now = Instant::now();
            self.heard
                .lock()
                .iter()
                .map(|(id, h)| {
                    (
                        *id,
                        (now.duration_since(h.at).as_millis() as u64, h.load.clone()),
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        let state = self.state.borrow().clone();
        status::build(
            &state,
            LiveInfo {
                reported_by: self.id,
                leader: self.known_leader(&m),
                term: m.current_term,
                last_applied: m.last_applied.map(|l| l.index),
                heard,
            },
        )
    }
}

/// Wall-clock milliseconds since the epoch, as stored in commands and tokens.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
