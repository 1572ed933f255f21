//! The media relay between cluster nodes, over the cluster's mutually authenticated QUIC
//! endpoint: one connection per peer pair (kept by `skein-raft`), one QUIC stream per media
//! stream.
//!
//! - A publish on a node that does not own the stream is pushed to the owner (`push`); the
//!   node keeps serving its own viewers from its hub.
//! - A play on a node without the stream opens ONE pull from the owner (`pull`), published
//!   into the local hub, so every local viewer shares it.
//! - The owner side (`serve`) takes pushes into its hub and serves pulls from it, holding a
//!   pull for a stream that is not published yet for `pull_hold`.
//! - The edge mesh: in a region with enough edges, the region's other nodes pull a stream from
//!   its regional relay edge instead of the owner (`routing`); a node asked for a stream it
//!   neither owns nor has pulls it from the owner for the asking nodes.
//! - Either side sends keep-alives; a peer silent for the relay timeout is dead: the stream is
//!   re-routed at once on the ring minus that peer (`routing`), and a prober clears the mark
//!   when the peer answers again.

mod conn;
mod probe;
mod pull;
mod push;
mod routing;
mod serve;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use skein_raft::{Cluster, NodeId, PeerFailure, StreamLoad};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use conn::RelayError;
pub use routing::{Routing, mesh_edges, pull_source};

use crate::hub::{
    FeedEnd, FeedItem, Hub, PlayerFeed, PublishError, PublisherHandle, PublisherInfo,
};
use crate::metrics::Metrics;
use conn::RelayConn;

/// How the relay behaves; from the `[cluster]` section of the config.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How long an owner holds a pull for a stream that has no publisher yet.
    pub pull_hold: Duration,
    /// A peer silent this long is dead.
    pub timeout: Duration,
    /// Largest media message accepted from a peer.
    pub max_message: usize,
    /// A pull without local viewers for this long is closed.
    pub pull_linger: Duration,
    /// Fewest live edges in a region for its edge mesh to form; 0: no mesh.
    pub mesh_min_edges: usize,
}

/// The node's side of the media relay: its routing view, its pulls, and the pushes and pulls
/// it serves as an owner.
pub struct Relay {
    cluster: Arc<Cluster>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    routing: Routing,
    settings: RelaySettings,
    /// Streams with a pull task (at most one each), with the node it pulls from (once
    /// connected).
    pulls: Mutex<HashMap<String, Option<NodeId>>>,
    /// Streams pushed to this node, by the node pushing them.
    pushed_in: Mutex<HashMap<String, NodeId>>,
    /// Streams whose pushing node was lost mid-stream: their publisher handle, kept (with a
    /// number telling it from a later one) for `pull_hold` so viewers stay while the
    /// broadcaster reconnects through another node; the next push takes it over.
    orphaned: Mutex<HashMap<String, (u64, PublisherHandle)>>,
    /// Numbers the orphaned handles.
    orphans: std::sync::atomic::AtomicU64,
    /// Pulls this node serves, per stream: the nodes pulling it.
    served_pulls: Mutex<HashMap<String, Vec<NodeId>>>,
    /// Every relay task, tracked with the node's connection tasks.
    tasks: TaskTracker,
    /// Ends every relay task when the node stops.
    shutdown: CancellationToken,
}

impl Relay {
    /// Starts serving incoming relay streams and probing dead peers until `shutdown`; every
    /// relay task is spawned on `tasks`.
    pub fn start(
        cluster: Arc<Cluster>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        settings: RelaySettings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let routing = Routing::new(cluster.node_id(), cluster.state(), settings.mesh_min_edges);
        let relay = Arc::new(Self {
            cluster,
            hub,
            metrics,
            routing,
            settings,
            pulls: Mutex::new(HashMap::new()),
            pushed_in: Mutex::new(HashMap::new()),
            orphaned: Mutex::new(HashMap::new()),
            orphans: std::sync::atomic::AtomicU64::new(0),
            served_pulls: Mutex::new(HashMap::new()),
            tasks,
            shutdown,
        });
        if let Some(listener) = relay.cluster.relay_listener() {
            relay.spawn(serve::accept_loop(relay.clone(), listener));
        }
        relay.spawn(probe::run(relay.clone()));
        relay
    }

    /// Runs a relay task until it ends or the node stops.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = task => {}
            }
        })
    }

    /// Where streams live, as this node sees it.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// How long an owner holds a pull for a stream that has no publisher yet.
    pub fn pull_hold(&self) -> Duration {
        self.settings.pull_hold
    }

    /// Whether this node must fetch `stream` from another node to play it: it is not the
    /// owner (or no owner is reachable yet, in which case the pull waits for one).
    pub fn is_remote(&self, stream: &str) -> bool {
        self.routing.owner(stream) != Some(self.routing.me())
    }

    /// Pushes a local publish to the stream's owner for as long as the returned guard lives.
    /// The owner decides whether this publisher is the stream's one publisher: the guard's
    /// [`PushGuard::verdict`] tells the first answer; a later refusal (the owner moved to a node
    /// that has another publisher, or a newer publisher replaced this one) cancels `publisher`.
    pub fn push(self: &Arc<Self>, stream: &str, publisher: CancellationToken) -> PushGuard {
        let (verdict_tx, verdict) = oneshot::channel();
        let task = push::run(self.clone(), stream.to_owned(), publisher, verdict_tx);
        PushGuard {
            _task: TaskGuard(self.spawn(task)),
            verdict: Some(verdict),
            wait: self.settings.timeout,
        }
    }

    /// Takes a push of `key` from `peer` into the hub if the stream has no other publisher:
    /// the same node pushing again replaces its older push (that connection is half dead), and
    /// `hub.publish_replace` lets any push replace. Returns the handle and the token the hub
    /// cancels when a newer publisher replaces this one.
    fn admit_push(
        &self,
        key: &str,
        peer: NodeId,
    ) -> Result<(PublisherHandle, CancellationToken), String> {
        let info = self.publisher_info(peer);
        let replaced = info.cancel.clone();
        // Held across the hub call so two pushes of one key are decided one after the other.
        let mut pushed = self.pushed_in.lock();
        let mut orphaned = self.orphaned.lock();
        let replace = pushed.get(key) == Some(&peer)
            || self.hub.replaces_publishers()
            || orphaned.contains_key(key);
        match self.hub.publish_pushed(key, info, replace) {
            Ok(handle) => {
                pushed.insert(key.to_owned(), peer);
                // Replaced already: dropping the old handle unpublishes nothing.
                orphaned.remove(key);
                Ok((handle, replaced))
            }
            Err(PublishError::Taken(_)) => Err(format!(
                "stream {key} is already being published on another node"
            )),
        }
    }

    /// Keeps the publisher handle of a push whose node was lost, for `pull_hold`: viewers see a
    /// gap, not an unpublish, while the broadcaster reconnects through another node (whose
    /// push takes the stream over, its timestamps continuing the old ones). Unpublished if no
    /// push comes in time.
    fn orphan_push(self: &Arc<Self>, key: &str, handle: PublisherHandle) {
        let number = self
            .orphans
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.orphaned
            .lock()
            .insert(key.to_owned(), (number, handle));
        tracing::info!(stream = %key, "pushing node lost; holding the stream for a new push");
        let relay = self.clone();
        let key = key.to_owned();
        self.spawn(async move {
            tokio::time::sleep(relay.settings.pull_hold).await;
            let mut orphaned = relay.orphaned.lock();
            if orphaned.get(&key).is_some_and(|(n, _)| *n == number) {
                tracing::info!(stream = %key, "no new push in time; stream unpublished");
                orphaned.remove(&key);
            }
        });
    }

    /// Makes sure one pull of `stream` runs. Call after subscribing the viewer, so a pull that
    /// is about to end for lack of viewers sees it.
    pub fn ensure_pull(self: &Arc<Self>, stream: &str) {
        let mut pulls = self.pulls.lock();
        if !pulls.contains_key(stream) {
            pulls.insert(stream.to_owned(), None);
            self.spawn(pull::run(self.clone(), stream.to_owned()));
        }
    }

    /// Where this node's pull of `stream` reads from: the owner while other nodes pull the
    /// stream from this one (so mesh chains stay one relay edge deep), else the routing's
    /// choice (the regional relay edge, or the owner).
    fn upstream(&self, stream: &str) -> Option<NodeId> {
        if self.served_pulls.lock().contains_key(stream) {
            self.routing.owner(stream)
        } else {
            self.routing.upstream(stream)
        }
    }

    /// Records the node the pull of `stream` reads from now.
    fn pulling_from(&self, stream: &str, source: NodeId) {
        if let Some(current) = self.pulls.lock().get_mut(stream) {
            *current = Some(source);
        }
    }

    /// Ends a pull unless a viewer arrived meanwhile; decided under the same lock as
    /// `ensure_pull`, so no viewer is left without one.
    fn end_pull_if_unwatched(&self, stream: &str) -> bool {
        let mut pulls = self.pulls.lock();
        let watched = self.hub.get(stream).is_some_and(|s| s.player_count() > 0);
        if !watched {
            pulls.remove(stream);
        }
        !watched
    }

    /// Whether the hub's publisher of `stream` is only a relayed copy that a local publisher
    /// may take over (the owner decides between publishers): this node's pull of it (for
    /// viewers and mesh peers), or a push whose node was lost (held for its broadcaster).
    pub fn holds_relayed_copy(&self, stream: &str) -> bool {
        if self.orphaned.lock().contains_key(stream) {
            return true;
        }
        let pulled = self.pulls.lock().contains_key(stream);
        pulled
            && !self.pushed_in.lock().contains_key(stream)
            && self
                .hub
                .get(stream)
                .is_some_and(|s| s.snapshot().publisher.is_some_and(|p| p.client_id == 0))
    }

    /// Forgets the held push of `stream` once a local publisher has taken the stream over
    /// (so no later push replaces that publisher as if it were the held one).
    pub fn took_over(&self, stream: &str) {
        self.orphaned.lock().remove(stream);
    }

    /// Streams pushed to this node as their origin, with their bit rates (for load reports).
    pub fn origin_streams(&self) -> Vec<StreamLoad> {
        let keys: Vec<String> = self.pushed_in.lock().keys().cloned().collect();
        keys.into_iter()
            .map(|key| {
                let bitrate_bps = self.hub.get(&key).map_or(0, |s| s.snapshot().bitrate_bps);
                StreamLoad { key, bitrate_bps }
            })
            .collect()
    }

    /// Streams this node pulls from an origin.
    pub fn pulled_streams(&self) -> usize {
        self.pulls.lock().len()
    }

    /// What `/api/v1/relay` shows: this node's routing view and its relay streams.
    pub fn view(&self) -> RelayView {
        let pulls_from: std::collections::BTreeMap<String, Option<NodeId>> =
            self.pulls.lock().clone().into_iter().collect();
        let relay_edges = pulls_from
            .keys()
            .chain(self.served_pulls.lock().keys())
            .filter_map(|stream| Some((stream.clone(), self.routing.relay_edge(stream)?)))
            .collect();
        RelayView {
            node: self.routing.me(),
            origins: self.routing.origins(),
            routed_around: self.routing.dead(),
            mesh_edges: self.routing.mesh_edges(),
            relay_edges,
            pulls: pulls_from.keys().cloned().collect(),
            pulls_from,
            pushed_in: self.pushed_in.lock().clone().into_iter().collect(),
            served_pulls: self.served_pulls.lock().clone().into_iter().collect(),
        }
    }

    async fn connect(&self, node: NodeId, hello: wire::Hello) -> Result<RelayConn, RelayError> {
        let open = self.cluster.open_relay(node);
        let stream = match tokio::time::timeout(self.settings.timeout, open).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(match e.peer_failure() {
                    Some(PeerFailure::Unreachable) => RelayError::Connect {
                        node,
                        why: e.to_string(),
                    },
                    // Not a dead peer: only a view of the registry that has not caught up.
                    Some(PeerFailure::Unknown) => RelayError::UnknownPeer(node),
                    // Alive, but it will not take us, or the problem is ours: nothing to route
                    // around.
                    Some(PeerFailure::Refused) | None => RelayError::NotAllowed {
                        node,
                        why: e.to_string(),
                    },
                });
            }
            Err(_) => {
                return Err(RelayError::Connect {
                    node,
                    why: format!("no answer within {:?}", self.settings.timeout),
                });
            }
        };
        let mut conn = RelayConn::new(stream, self.settings.max_message, self.settings.timeout);
        conn.tx.send(&[wire::RelayMessage::Hello(hello)]).await?;
        Ok(conn)
    }

    /// Marks a peer dead after a failure that says it is gone.
    fn peer_failed(&self, node: NodeId, error: &RelayError) {
        if error.peer_lost() && self.routing.mark_dead(node) {
            self.metrics.relay_peers_lost_total.inc();
        }
    }

    /// What the hub shows as the publisher of a relayed stream: the peer's internal address.
    fn publisher_info(&self, peer: NodeId) -> PublisherInfo {
        let addr = self
            .cluster
            .state()
            .borrow()
            .nodes
            .get(&peer)
            .map(|n| n.internal_addr)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        PublisherInfo {
            // Client ids start at 1; 0 marks a publisher that is another node.
            client_id: 0,
            peer: addr,
            cancel: CancellationToken::new(),
        }
    }
}

/// What `/api/v1/relay` shows.
#[derive(Debug, serde::Serialize)]
pub struct RelayView {
    /// This node.
    pub node: NodeId,
    /// Origins this node routes to (committed pool minus those it sees dead).
    pub origins: Vec<NodeId>,
    /// Origins this node currently sees dead.
    pub routed_around: Vec<NodeId>,
    /// This region's edges in the mesh (empty: the mesh is off here).
    pub mesh_edges: Vec<NodeId>,
    /// The regional relay edge of each stream this node pulls or serves (mesh on only).
    pub relay_edges: std::collections::BTreeMap<String, NodeId>,
    /// Streams this node pulls (one pull each, shared by its viewers).
    pub pulls: Vec<String>,
    /// The node each pull reads from: the owner or the regional relay edge (`null` while it
    /// connects).
    pub pulls_from: std::collections::BTreeMap<String, Option<NodeId>>,
    /// Streams pushed to this node, with the pushing node.
    pub pushed_in: std::collections::BTreeMap<String, NodeId>,
    /// Streams other nodes pull from this one, with the pulling nodes.
    pub served_pulls: std::collections::BTreeMap<String, Vec<NodeId>>,
}

/// Aborts its task when dropped.
pub struct TaskGuard(JoinHandle<()>);

/// A running push of a local publish; dropping it ends the push.
pub struct PushGuard {
    _task: TaskGuard,
    verdict: Option<oneshot::Receiver<PushVerdict>>,
    /// How long a publish waits for the owner's answer: the relay timeout.
    wait: Duration,
}

/// The owner's first answer to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushVerdict {
    /// This publisher is the stream's publisher (the owner took the push, or this node owns
    /// the stream, or no owner could be asked within the wait: a publish is not refused for
    /// an unreachable owner).
    Accepted,
    /// Another publisher has the stream; the text says where, for the publisher's client.
    Taken(String),
}

impl PushGuard {
    /// Waits up to the relay timeout for the owner's first answer; no answer in time counts
    /// as accepted (the push keeps trying, and a later refusal stops the publisher).
    pub async fn verdict(&mut self) -> PushVerdict {
        let Some(verdict) = self.verdict.take() else {
            return PushVerdict::Accepted;
        };
        match tokio::time::timeout(self.wait, verdict).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(_)) | Err(_) => PushVerdict::Accepted,
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Messages forwarded in one vectored write at most.
const BATCH: usize = 64;

/// Appends the feed item just received, and whatever else is ready, to `batch` (up to
/// [`BATCH`] messages), stopping after an unpublish. Returns the feed's end if it came.
fn drain_feed(
    first: Result<FeedItem, FeedEnd>,
    feed: &mut PlayerFeed,
    batch: &mut Vec<wire::RelayMessage>,
) -> Option<FeedEnd> {
    let mut item = Some(first);
    while let Some(next) = item {
        match next {
            Ok(FeedItem::Frame(frame)) => batch.push(wire::RelayMessage::Media(wire::Media {
                kind: frame.kind,
                flags: frame.flags,
                timestamp: frame.timestamp,
                payload: frame.payload.clone(),
            })),
            Ok(FeedItem::Published) => batch.push(wire::RelayMessage::Published),
            Ok(FeedItem::Unpublished) => {
                batch.push(wire::RelayMessage::Unpublished);
                return None;
            }
            Err(end) => return Some(end),
        }
        item = if batch.len() < BATCH {
            feed.try_next()
        } else {
            None
        };
    }
    None
}
