//! The owner's side: accept relay streams from other nodes, take pushes into the hub and serve
//! pulls from it.

use std::sync::Arc;
use std::time::Duration;

use skein_raft::RelayListener;

use super::conn::{RelayConn, RelayError};
use super::wire::{Hello, RelayMessage};
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

/// A peer pushes a stream it has a publisher for: publish it here until the peer stops or dies.
async fn take_push(relay: &Arc<Relay>, conn: &mut RelayConn, key: &str) -> Result<(), RelayError> {
    let peer = conn.peer;
    tracing::info!(stream = %key, peer, "relay push accepted");
    let mut handle = Some(relay.hub.publish_relayed(key, relay.publisher_info(peer)));
    relay.pushed_in.lock().insert(key.to_owned(), peer);
    let result = pump_push(relay, conn, key, &mut handle).await;
    {
        let mut pushed = relay.pushed_in.lock();
        if pushed.get(key) == Some(&peer) {
            pushed.remove(key);
        }
    }
    drop(handle);
    tracing::info!(stream = %key, peer, "relay push ended");
    result
}

async fn pump_push(
    relay: &Arc<Relay>,
    conn: &mut RelayConn,
    key: &str,
    handle: &mut Option<crate::hub::PublisherHandle>,
) -> Result<(), RelayError> {
    loop {
        tokio::select! {
            message = conn.rx.recv() => {
                match message? {
                    None => return Ok(()),
                    Some(RelayMessage::Media(media)) => {
                        let publisher = handle.get_or_insert_with(|| {
                            relay.hub.publish_relayed(key, relay.publisher_info(conn.peer))
                        });
                        publisher.push_classified(media.kind, media.timestamp, media.payload, media.flags);
                    }
                    Some(RelayMessage::Unpublished) => *handle = None,
                    Some(RelayMessage::Published | RelayMessage::Keepalive) => {}
                    Some(other) => {
                        return Err(RelayError::Refused(format!("unexpected {other:?} in a push")));
                    }
                }
            }
            _ = conn.tx.keepalive_due() => conn.tx.keepalive().await?,
        }
    }
}

/// A peer wants a stream: serve it from the hub, holding the request up to `hold` while it has
/// no publisher.
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
    let mut feed = PlayerFeed::new(
        subscription,
        FeedPolicy {
            max_skips_per_minute: 10,
            wait_for_publisher: hold,
        },
    );
    relay
        .served_pulls
        .lock()
        .entry(key.to_owned())
        .or_default()
        .push(peer);
    let result = pump_pull(conn, &mut feed).await;
    let mut served = relay.served_pulls.lock();
    if let Some(peers) = served.get_mut(key) {
        if let Some(i) = peers.iter().position(|p| *p == peer) {
            peers.swap_remove(i);
        }
        if peers.is_empty() {
            served.remove(key);
        }
    }
    result
}

async fn pump_pull(conn: &mut RelayConn, feed: &mut PlayerFeed) -> Result<(), RelayError> {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            item = feed.next() => {
                let end = drain_feed(item, feed, &mut batch);
                conn.tx.send(&batch).await?;
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
