//! The serving side: accept relay streams from other nodes, take pushes into the hub (as the
//! owner) and serve pulls from it — as the owner, or as a regional relay edge, which then pulls
//! the stream from the owner itself.

use std::sync::Arc;
use std::time::Duration;

use skein_raft::RelayListener;
use tokio_util::sync::CancellationToken;

use super::conn::{RelayConn, RelayError};
use super::wire::{HEADER_LEN, Hello, RelayMessage};
use super::{BATCH, Relay, drain_feed};
use crate::hub::{FeedPolicy, PlayerFeed};

pub(super) async fn accept_loop(relay: Arc<Relay>, mut listener: RelayListener) {
    while let Some(stream) = listener.accept().await {
        let task_relay = relay.clone();
        relay.spawn(async move {
            let relay = task_relay;
            let peer = stream.peer;
            let mut conn =
                RelayConn::new(stream, relay.settings.max_message, relay.settings.timeout);
            if let Err(e) = serve(&relay, &mut conn).await {
                tracing::info!(peer, "relay stream from node {peer} ended: {e}");
            }
        });
    }
}

async fn serve(relay: &Arc<Relay>, conn: &mut RelayConn) -> Result<(), RelayError> {
    let hello = match tokio::time::timeout(relay.settings.timeout, conn.rx.recv()).await {
        Ok(Ok(Some(RelayMessage::Hello(hello)))) => hello,
        Ok(Ok(Some(_))) => {
            let why = "first message must be a hello".to_owned();
            let _ = conn.tx.send(&[RelayMessage::Refused(why.clone())]).await;
            return Err(RelayError::Refused(why));
        }
        Ok(Ok(None)) => return Err(RelayError::Closed),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(RelayError::Timeout(relay.settings.timeout)),
    };
    match hello {
        Hello::Ping => {
            conn.tx.send(&[RelayMessage::Keepalive]).await?;
            conn.tx.finish();
            Ok(())
        }
        Hello::Push { key } => take_push(relay, conn, &key).await,
        Hello::Pull { key, hold_ms } => {
            let hold = Duration::from_millis(u64::from(hold_ms)).min(relay.settings.pull_hold);
            serve_pull(relay, conn, &key, hold).await
        }
    }
}

/// A peer pushes a stream it has a publisher for: publish it here until the peer stops or dies,
/// unless another publisher has the stream (then the push is answered `Taken`).
async fn take_push(relay: &Arc<Relay>, conn: &mut RelayConn, key: &str) -> Result<(), RelayError> {
    let peer = conn.peer;
    let (handle, replaced) = match relay.admit_push(key, peer) {
        Ok(admitted) => admitted,
        Err(why) => {
            tracing::info!(stream = %key, peer, "relay push refused: {why}");
            let _ = conn.tx.send(&[RelayMessage::Taken(why.clone())]).await;
            conn.tx.finish();
            return Err(RelayError::Taken(why));
        }
    };
    tracing::info!(stream = %key, peer, "relay push accepted");
    let mut push = TakenPush {
        handle: Some(handle),
        replaced,
    };
    let result = match conn.tx.send(&[RelayMessage::Accepted]).await {
        Ok(()) => pump_push(relay, conn, key, &mut push).await,
        Err(e) => Err(e),
    };
    {
        // A replaced push's entry belongs to whoever replaced it.
        let mut pushed = relay.pushed_in.lock();
        if !push.replaced.is_cancelled() && pushed.get(key) == Some(&peer) {
            pushed.remove(key);
        }
    }
    if let Err(e) = &result
        && e.peer_lost()
        && !push.replaced.is_cancelled()
        && let Some(handle) = push.handle.take()
    {
        relay.orphan_push(key, handle);
    }
    drop(push);
    tracing::info!(stream = %key, peer, "relay push ended");
    result
}

/// The hub side of an accepted push: its publisher (none between an unpublish and the next
/// frame) and the token the hub cancels when a newer publisher replaces it.
struct TakenPush {
    handle: Option<crate::hub::PublisherHandle>,
    replaced: CancellationToken,
}

async fn pump_push(
    relay: &Arc<Relay>,
    conn: &mut RelayConn,
    key: &str,
    push: &mut TakenPush,
) -> Result<(), RelayError> {
    loop {
        tokio::select! {
            message = conn.rx.recv() => {
                match message? {
                    None => return Ok(()),
                    Some(RelayMessage::Media(media)) => {
                        if push.handle.is_none() {
                            // The peer's publisher came back after an unpublish: decided again.
                            let (handle, replaced) = match relay.admit_push(key, conn.peer) {
                                Ok(admitted) => admitted,
                                Err(why) => return refuse_taken(conn, why).await,
                            };
                            push.handle = Some(handle);
                            push.replaced = replaced;
                        }
                        if let Some(publisher) = &push.handle {
                            publisher.push_classified(media.kind, media.timestamp, media.payload, media.flags);
                        }
                    }
                    Some(RelayMessage::Unpublished) => push.handle = None,
                    Some(RelayMessage::Published | RelayMessage::Keepalive) => {}
                    Some(other) => {
                        return Err(RelayError::Refused(format!("unexpected {other:?} in a push")));
                    }
                }
            }
            _ = push.replaced.cancelled(), if push.handle.is_some() => {
                push.handle = None;
                return refuse_taken(conn, format!("stream {key} was taken over by a newer publisher")).await;
            }
            _ = conn.tx.keepalive_due() => conn.tx.keepalive().await?,
        }
    }
}

/// Bytes a message takes on the wire, for the served-bytes counter (media bodies and headers;
/// control texts are not counted).
fn wire_len(message: &RelayMessage) -> u64 {
    let body = match message {
        RelayMessage::Media(media) => media.payload.len(),
        _ => 0,
    };
    (HEADER_LEN + body) as u64
}

/// Tells the pushing node that another publisher has the stream, and ends the push.
async fn refuse_taken(conn: &mut RelayConn, why: String) -> Result<(), RelayError> {
    tracing::info!(peer = conn.peer, "ending relay push: {why}");
    conn.tx.send(&[RelayMessage::Taken(why.clone())]).await?;
    conn.tx.finish();
    Err(RelayError::Taken(why))
}

/// A peer wants a stream: serve it from the hub, holding the request up to `hold` while it has
/// no publisher. An edge asked for a stream it neither owns nor has (it is the peer's regional
/// relay) pulls it from the owner.
async fn serve_pull(
    relay: &Arc<Relay>,
    conn: &mut RelayConn,
    key: &str,
    hold: Duration,
) -> Result<(), RelayError> {
    let peer = conn.peer;
    let subscription = relay
        .hub
        .subscribe(key, true)
        .expect("a waiting subscription always exists");
    tracing::info!(stream = %key, peer, published = subscription.published, "relay pull accepted");
    let first_served = {
        let mut served = relay.served_pulls.lock();
        let peers = served.entry(key.to_owned()).or_default();
        peers.push(peer);
        peers.len() == 1
    };
    if first_served {
        // This node's own pull (if any) now reads from the owner.
        relay.routing.bump();
    }
    // Origins do not chain pulls: an origin asked for a stream it does not own holds the
    // request (the publisher's push may be on its way), so two origins with different views
    // never pull from each other.
    if !subscription.published && !relay.routing.is_origin() && relay.is_remote(key) {
        relay.ensure_pull(key);
    }
    let mut feed = PlayerFeed::new(
        subscription,
        FeedPolicy {
            max_skips_per_minute: 10,
            wait_for_publisher: hold,
        },
    );
    let result = pump_pull(relay, conn, &mut feed).await;
    let last_served = {
        let mut served = relay.served_pulls.lock();
        let Some(peers) = served.get_mut(key) else {
            return result;
        };
        if let Some(i) = peers.iter().position(|p| *p == peer) {
            peers.swap_remove(i);
        }
        let last = peers.is_empty();
        if last {
            served.remove(key);
        }
        last
    };
    if last_served {
        relay.routing.bump();
    }
    result
}

async fn pump_pull(
    relay: &Relay,
    conn: &mut RelayConn,
    feed: &mut PlayerFeed,
) -> Result<(), RelayError> {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            item = feed.next() => {
                let end = drain_feed(item, feed, &mut batch);
                conn.tx.send(&batch).await?;
                relay.metrics.relay_served_bytes_total.inc_by(batch.iter().map(wire_len).sum());
                batch.clear();
                if let Some(end) = end {
                    let _ = conn.tx.send(&[RelayMessage::Refused(end.to_string())]).await;
                    conn.tx.finish();
                    return Err(RelayError::Feed(end));
                }
            }
            message = conn.rx.recv() => {
                match message? {
                    None => return Ok(()),
                    Some(RelayMessage::Keepalive) => {}
                    Some(other) => {
                        return Err(RelayError::Refused(format!("unexpected {other:?} in a pull")));
                    }
                }
            }
            _ = conn.tx.keepalive_due() => conn.tx.keepalive().await?,
        }
    }
}
