//! The one way into the node for a connection, a player and a publisher. Every protocol driver
//! (RTMP, HTTP-FLV, and any later one) calls [`connect`], then [`play`] or [`publish`]; these
//! apply the limits and the drain, validate the stream name, subscribe or publish in the hub,
//! start the relay pull or push a cluster member needs, and count it all. No driver mentions
//! the relay or the cluster.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::clients::{ClientGuard, Protocol, Refused, Role};
use super::context::Node;
use crate::hub::{FeedEnd, FeedPolicy, PlayerFeed, PublishError, PublisherHandle};
use crate::hub::{PublisherInfo, validate_key};
use crate::media::MediaKind;
use crate::metrics::{ProtocolLabel, ReasonLabel};
use crate::relay::{PushGuard, PushVerdict};

/// Why a play or a publish was refused; each driver turns it into its protocol's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The app or key is not a valid stream name.
    #[error("bad stream name: {0}")]
    BadName(&'static str),
    /// Nobody publishes the stream (and the play may not wait for one).
    #[error("no stream {0} is being published")]
    NotFound(String),
    /// Somebody else publishes the stream.
    #[error("stream {0} is already being published")]
    Taken(String),
    /// The node is stopping.
    #[error("node is shutting down")]
    Draining,
}

/// Admits a new connection against the connection limits. Counts the connection, or the
/// refusal and its reason. A draining node still takes connections (a GeoDNS probe's RTMP
/// handshake must succeed while the health endpoint tells it the node drains); it refuses
/// their plays and publishes.
pub fn connect(node: &Node, peer: SocketAddr, protocol: Protocol) -> Result<ClientGuard, Refused> {
    let admitted = node.clients.admit(peer, protocol);
    match &admitted {
        Ok(client) => {
            node.metrics
                .connections_total
                .get_or_create(&ProtocolLabel {
                    protocol: protocol.label(),
                })
                .inc();
            tracing::info!(client = client.id, %peer, protocol = protocol.label(), "connect");
        }
        Err(refused) => {
            node.metrics
                .connections_refused_total
                .get_or_create(&ReasonLabel {
                    reason: refused.reason(),
                })
                .inc();
            tracing::debug!(%peer, protocol = protocol.label(), %refused, "connection refused");
        }
    }
    admitted
}

/// The stream name `app/key`, with the query string of the key left out.
fn stream_name(app: &str, key: &str) -> Result<String, Refusal> {
    validate_key(app).map_err(Refusal::BadName)?;
    validate_key(key).map_err(Refusal::BadName)?;
    let key = key.split('?').next().unwrap_or_default();
    Ok(format!("{app}/{key}"))
}

/// Starts a player of `app/key` on `client`: the feed starts at the cached GOP. In a cluster,
/// a stream this node does not have is pulled from its owner (one pull shared by all local
/// viewers) and the player waits for it.
pub fn play(
    node: &Node,
    client: &ClientGuard,
    app: &str,
    key: &str,
) -> Result<PlayerFeed, Refusal> {
    let subscribed = subscribe(node, app, key);
    let (name, subscription) = match subscribed {
        Ok(pair) => pair,
        Err(refusal) => {
            node.metrics.plays_refused_total.inc();
            tracing::info!(client = client.id, peer = %client.peer, app, key, %refusal, "play refused");
            return Err(refusal);
        }
    };
    node.metrics
        .plays_total
        .get_or_create(&ProtocolLabel {
            protocol: client.protocol.label(),
        })
        .inc();
    tracing::info!(client = client.id, peer = %client.peer, stream = %name, protocol = client.protocol.label(), "play");
    let policy = feed_policy(node, subscription.published);
    client.set_role(Role::Player(name));
    Ok(PlayerFeed::new(subscription, policy))
}

fn subscribe(
    node: &Node,
    app: &str,
    key: &str,
) -> Result<(String, crate::hub::Subscription), Refusal> {
    if node.is_draining() {
        return Err(Refusal::Draining);
    }
    let name = stream_name(app, key)?;
    let published_here = node.hub.get(&name).is_some_and(|s| s.is_published());
    let wait = !published_here && (node.cluster().is_some() || node.config.hub.play_wait_secs > 0);
    let subscription = node
        .hub
        .subscribe(&name, wait)
        .ok_or_else(|| Refusal::NotFound(name.clone()))?;
    // The pull starts after the subscription, so a pull about to end for lack of viewers
    // sees this one.
    if let Some(link) = node.cluster()
        && !published_here
        && link.relay.is_remote(&name)
    {
        link.relay.ensure_pull(&name);
    }
    Ok((name, subscription))
}

/// How players wait: after an unpublish, the republish grace; before the first publisher,
/// the configured play wait (in a cluster at least as long as an owner holds a pull).
fn feed_policy(node: &Node, published: bool) -> FeedPolicy {
    let wait = if published {
        Duration::from_secs(node.config.hub.republish_grace_secs)
    } else {
        let hold = node
            .cluster()
            .map_or(Duration::ZERO, |link| link.relay.pull_hold());
        Duration::from_secs(node.config.hub.play_wait_secs).max(hold)
    };
    FeedPolicy {
        max_skips_per_minute: node.config.hub.max_skips_per_minute,
        wait_for_publisher: wait,
    }
}

/// A publish in progress: media goes into the hub and, in a cluster, on to the stream's owner
/// for as long as this lives.
pub struct Publication {
    handle: PublisherHandle,
    _relay_push: Option<PushGuard>,
}

impl Publication {
    /// One media message from the publisher.
    pub fn push(&self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        self.handle.push(kind, timestamp, payload);
    }
}

/// Starts a publish of `app/key` by `client`. In a cluster the stream's owner decides whether
/// this is the stream's one publisher; the publish waits for its answer (at most the relay
/// timeout; an owner that cannot be asked does not refuse it).
pub async fn publish(
    node: &Node,
    client: &ClientGuard,
    app: &str,
    key: &str,
) -> Result<Publication, Refusal> {
    let started = start_publish(node, client, app, key).await;
    match &started {
        Ok((name, _)) => {
            node.metrics.publishes_total.inc();
            tracing::info!(client = client.id, peer = %client.peer, stream = %name, "publish");
            client.set_role(Role::Publisher(name.clone()));
        }
        Err(refusal) => {
            node.metrics.publishes_refused_total.inc();
            tracing::info!(client = client.id, peer = %client.peer, app, key, %refusal, "publish refused");
        }
    }
    started.map(|(_, publication)| publication)
}

async fn start_publish(
    node: &Node,
    client: &ClientGuard,
    app: &str,
    key: &str,
) -> Result<(String, Publication), Refusal> {
    if node.is_draining() {
        return Err(Refusal::Draining);
    }
    let name = stream_name(app, key)?;
    let info = PublisherInfo {
        client_id: client.id,
        peer: client.peer,
        cancel: client.cancel.clone(),
    };
    let handle = node.hub.publish(&name, info).map_err(|e| match e {
        PublishError::Taken(name) => Refusal::Taken(name),
    })?;
    let mut relay_push = node
        .cluster()
        .map(|link| link.relay.push(&name, client.cancel.clone()));
    if let Some(push) = &mut relay_push
        && let PushVerdict::Taken(why) = push.verdict().await
    {
        tracing::debug!(stream = %name, "owner refused the publish: {why}");
        return Err(Refusal::Taken(name));
    }
    Ok((
        name,
        Publication {
            handle,
            _relay_push: relay_push,
        },
    ))
}

/// Counts a player whose feed ended (too slow, publisher gone, stream closed).
pub fn player_dropped(node: &Node, end: FeedEnd) {
    node.metrics
        .players_dropped_total
        .get_or_create(&ReasonLabel {
            reason: end.reason(),
        })
        .inc();
}
