//! A local publish, pushed to the stream's owner. Follows the owner: when the ring changes or
//! the owner dies, the push moves to the new owner and starts again from the cached GOP, so the
//! new owner's viewers start on a keyframe.
//!
//! The owner decides who publishes a stream cluster-wide: it answers a push with `Accepted`,
//! or with `Taken` when another publisher has the stream. The first answer is the publish's
//! verdict; a `Taken` later (a new owner with another publisher, or replacement by a newer
//! publisher) stops the local publisher, so viewers never see two publishers interleaved.

use std::sync::Arc;
use std::time::Duration;

use skein_raft::NodeId;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::conn::RelayError;
use super::routing::RouteWatcher;
use super::wire::{Hello, RelayMessage};
use super::{BATCH, PushVerdict, Relay, drain_feed};
use crate::hub::{FeedPolicy, PlayerFeed};

enum PushEnd {
    /// The local publisher is gone.
    Unpublished,
    /// The owner changed; push to the new one.
    Rerouted,
}

/// Where the verdict of a publish goes: to the waiting publish first, then (once it has been
/// given) a refusal stops the publisher.
struct Verdict {
    first: Option<oneshot::Sender<PushVerdict>>,
    publisher: CancellationToken,
}

impl Verdict {
    fn accepted(&mut self) {
        if let Some(first) = self.first.take() {
            let _ = first.send(PushVerdict::Accepted);
        }
    }

    fn taken(&mut self, stream: &str, why: String) {
        match self.first.take() {
            Some(first) => {
                let _ = first.send(PushVerdict::Taken(why));
            }
            None => {
                tracing::warn!(stream = %stream, "stopping the local publisher: {why}");
                self.publisher.cancel();
            }
        }
    }
}

pub(super) async fn run(
    relay: Arc<Relay>,
    stream: String,
    publisher: CancellationToken,
    first_verdict: oneshot::Sender<PushVerdict>,
) {
    relay.metrics.relay_pushes.inc();
    let _gauge = scopeguard(&relay);
    let mut verdict = Verdict {
        first: Some(first_verdict),
        publisher,
    };
    let mut watcher = relay.routing.watcher();
    let mut waiting_logged = false;
    loop {
        let owner = relay.routing.owner(&stream);
        let Some(owner) = owner.filter(|o| *o != relay.routing.me()) else {
            if owner.is_none() && !waiting_logged {
                tracing::warn!(stream = %stream, "no reachable origin; push waits for one");
                waiting_logged = true;
            }
            // We own the stream (our hub decided on the publisher) or no origin is reachable
            // yet (a publish is not refused for that; a later owner may still refuse it).
            verdict.accepted();
            let _ = tokio::time::timeout(Duration::from_secs(1), watcher.changed()).await;
            continue;
        };
        waiting_logged = false;
        match push_once(&relay, &stream, owner, &mut watcher, &mut verdict).await {
            Ok(PushEnd::Unpublished) => return,
            Ok(PushEnd::Rerouted) => {
                tracing::info!(stream = %stream, from = owner, "stream owner changed; moving the push");
            }
            Err(RelayError::Taken(why)) => {
                tracing::info!(stream = %stream, owner, "origin refused the push: {why}");
                verdict.taken(&stream, why);
                return;
            }
            Err(e) => {
                tracing::warn!(stream = %stream, owner, "push to node {owner} failed: {e}");
                relay.peer_failed(owner, &e);
                if !e.peer_lost() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

async fn push_once(
    relay: &Arc<Relay>,
    stream: &str,
    owner: NodeId,
    watcher: &mut RouteWatcher,
    verdict: &mut Verdict,
) -> Result<PushEnd, RelayError> {
    let Some(subscription) = relay.hub.subscribe(stream, false) else {
        return Ok(PushEnd::Unpublished);
    };
    let mut feed = PlayerFeed::new(
        subscription,
        FeedPolicy {
            max_skips_per_minute: 10,
            wait_for_publisher: Duration::ZERO,
        },
    );
    let mut conn = relay
        .connect(
            owner,
            Hello::Push {
                key: stream.to_owned(),
            },
        )
        .await?;
    tracing::info!(stream = %stream, owner, "pushing to origin");
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            item = feed.next() => {
                let end = drain_feed(item, &mut feed, &mut batch);
                conn.tx.send(&batch).await?;
                let unpublished = batch.last() == Some(&RelayMessage::Unpublished);
                batch.clear();
                if let Some(end) = end {
                    return Err(RelayError::Feed(end));
                }
                if unpublished {
                    conn.tx.finish();
                    return Ok(PushEnd::Unpublished);
                }
            }
            message = conn.rx.recv() => {
                match message? {
                    Some(RelayMessage::Keepalive) => {}
                    Some(RelayMessage::Accepted) => verdict.accepted(),
                    Some(RelayMessage::Taken(why)) => return Err(RelayError::Taken(why)),
                    Some(RelayMessage::Refused(why)) => return Err(RelayError::Refused(why)),
                    Some(other) => {
                        return Err(RelayError::Refused(format!("unexpected {other:?} from the origin")));
                    }
                    None => return Err(RelayError::Closed),
                }
            }
            _ = conn.tx.keepalive_due() => conn.tx.keepalive().await?,
            _ = watcher.changed() => {
                if relay.routing.owner(stream) != Some(owner) {
                    conn.tx.finish();
                    return Ok(PushEnd::Rerouted);
                }
            }
        }
    }
}

/// Decrements the push gauge however the task ends (aborted included).
fn scopeguard(relay: &Arc<Relay>) -> impl Drop + use<> {
    struct Gauge(Arc<Relay>);
    impl Drop for Gauge {
        fn drop(&mut self) {
            self.0.metrics.relay_pushes.dec();
        }
    }
    Gauge(relay.clone())
}
