//! The one way into the node for a connection, a player and a publisher. Every protocol driver
//! (RTMP, HTTP-FLV, and any later one) calls [`connect`], then [`play`] or [`publish`]; these
//! apply the limits and the drain, validate the stream name, authorise the attempt (the app's
//! `open` / `token` / `hook` policy), subscribe or publish in the hub, start the relay pull or
//! push a cluster member needs, and count it all. No driver mentions the relay, the cluster or
//! the tokens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::clients::{ClientGuard, Protocol, Refused, Role};
use super::context::Node;
use super::hooks::{HookBody, HookEvent, Hooks};
use crate::auth::token::{self, TokenCheck};
use crate::auth::{Action, Denial, Policy, query};
use crate::hub::{FeedEnd, FeedPolicy, PlayerFeed, PublishError, PublisherHandle};
use crate::hub::{PublisherInfo, validate_key};
use crate::media::MediaKind;
use crate::metrics::{AuthLabel, ProtocolLabel, ReasonLabel};
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
    /// The app's policy did not let the client in.
    #[error("not authorised: {0}")]
    Unauthorized(Denial),
}

/// What a client asked for: the app and key without their query strings, and the parameters
/// that came with them (the token among them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// The app, without a query.
    pub app: String,
    /// The stream key, without a query.
    pub key: String,
    /// The query strings as sent, joined with `&`.
    pub query: String,
}

impl StreamRequest {
    /// An RTMP publish or play: the query may be on the stream name (ffmpeg and OBS send
    /// `key?token=...`), on the app or on the tcUrl; all are read, in that order.
    pub fn rtmp(app: &str, key: &str, tc_url: Option<&str>) -> Self {
        let queries = [
            query::of(key),
            query::of(app),
            query::of(tc_url.unwrap_or("")),
        ];
        Self {
            app: query::strip(app).to_owned(),
            key: query::strip(key).to_owned(),
            query: join_queries(&queries),
        }
    }

    /// An HTTP play: `GET /app/key.flv?query`.
    pub fn http(app: &str, key: &str, query: Option<&str>) -> Self {
        Self {
            app: app.to_owned(),
            key: key.to_owned(),
            query: query.unwrap_or("").to_owned(),
        }
    }

    /// The first non-empty `token` parameter.
    fn token(&self) -> Option<String> {
        query::parse(&self.query)
            .into_iter()
            .find(|(name, value)| name == "token" && !value.is_empty())
            .map(|(_, value)| value)
    }
}

fn join_queries(queries: &[&str]) -> String {
    let parts: Vec<&str> = queries.iter().copied().filter(|q| !q.is_empty()).collect();
    parts.join("&")
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
            if protocol == Protocol::Hls {
                // One per HLS request, several a second per viewer: not worth an info line.
                tracing::debug!(client = client.id, %peer, "hls request");
            } else {
                tracing::info!(client = client.id, %peer, protocol = protocol.label(), "connect");
            }
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

/// The stream name `app/key`.
fn stream_name(request: &StreamRequest) -> Result<String, Refusal> {
    validate_key(&request.app).map_err(Refusal::BadName)?;
    validate_key(&request.key).map_err(Refusal::BadName)?;
    Ok(format!("{}/{}", request.app, request.key))
}

/// Checks the node may take `action` at all and that `request` names a valid stream, then
/// authorises it. Returns the stream name.
async fn admit(
    node: &Node,
    client: &ClientGuard,
    action: Action,
    request: &StreamRequest,
) -> Result<String, Refusal> {
    if node.is_draining() {
        return Err(Refusal::Draining);
    }
    let name = stream_name(request)?;
    if let Err(denial) = authorize(node, client, action, request, &name).await {
        node.metrics
            .auth_refused_total
            .get_or_create(&AuthLabel {
                action: action.as_str(),
                reason: denial.reason(),
            })
            .inc();
        return Err(Refusal::Unauthorized(denial));
    }
    Ok(name)
}

/// Applies the app's policy for `action`.
async fn authorize(
    node: &Node,
    client: &ClientGuard,
    action: Action,
    request: &StreamRequest,
    name: &str,
) -> Result<(), Denial> {
    match node.config.auth.policy(&request.app, action) {
        Policy::Open => Ok(()),
        Policy::Token => {
            let token = request.token().ok_or(Denial::Missing(action))?;
            let check = TokenCheck {
                action,
                stream: name,
                client_ip: client.peer.ip(),
                now: unix_now(),
            };
            token::verify(&token, &node.stream_keys(), &check).map(|_| ())
        }
        Policy::Hook => {
            let event = match action {
                Action::Publish => HookEvent::OnPublish,
                Action::Play => HookEvent::OnPlay,
            };
            node.hooks
                .decide(event, &hook_body(node, client, event, request))
                .await
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hook_body(
    node: &Node,
    client: &ClientGuard,
    event: HookEvent,
    request: &StreamRequest,
) -> HookBody {
    HookBody {
        action: event.name(),
        app: request.app.clone(),
        stream: request.key.clone(),
        client_id: client.id,
        client_ip: client.peer.ip(),
        protocol: client.protocol.label(),
        node: node.config.node.name.clone(),
        param: request.query.clone(),
        params: query::parse(&request.query)
            .into_iter()
            .collect::<HashMap<_, _>>(),
    }
}

/// Tells a hook, when dropped, that a publish or a play ended.
struct EndNotice {
    hooks: Arc<Hooks>,
    event: HookEvent,
    body: Option<HookBody>,
}

impl EndNotice {
    fn new(
        node: &Node,
        client: &ClientGuard,
        event: HookEvent,
        request: &StreamRequest,
    ) -> Option<Self> {
        node.hooks.is_set(event).then(|| Self {
            hooks: node.hooks.clone(),
            event,
            body: Some(hook_body(node, client, event, request)),
        })
    }
}

impl Drop for EndNotice {
    fn drop(&mut self) {
        if let Some(body) = self.body.take() {
            self.hooks.tell(self.event, body);
        }
    }
}

/// A play in progress: the player's feed, and the `on_stop` notice sent when it ends.
pub struct Playback {
    /// What the player receives.
    pub feed: PlayerFeed,
    _stop_notice: Option<EndNotice>,
}

/// Starts a player of the requested stream on `client`, once authorised: the feed starts at
/// the cached GOP. In a cluster, a stream this node does not have is pulled from its owner
/// (one pull shared by all local viewers) and the player waits for it.
pub async fn play(
    node: &Node,
    client: &ClientGuard,
    request: &StreamRequest,
) -> Result<Playback, Refusal> {
    let subscribed = match admit(node, client, Action::Play, request).await {
        Ok(name) => subscribe(node, name),
        Err(refusal) => Err(refusal),
    };
    let (name, subscription) = match subscribed {
        Ok(pair) => pair,
        Err(refusal) => {
            node.metrics.plays_refused_total.inc();
            tracing::info!(client = client.id, peer = %client.peer, app = %request.app, key = %request.key, %refusal, "play refused");
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
    Ok(Playback {
        feed: PlayerFeed::new(subscription, policy),
        _stop_notice: EndNotice::new(node, client, HookEvent::OnStop, request),
    })
}

/// Authorises one request for a stream that is already being played on the node, as
/// [`play`] would (the same policy, token and hook), without subscribing again: every HLS
/// playlist and segment request passes here. Returns the stream name.
pub async fn authorize_play(
    node: &Node,
    client: &ClientGuard,
    request: &StreamRequest,
) -> Result<String, Refusal> {
    let admitted = admit(node, client, Action::Play, request).await;
    if let Err(refusal) = &admitted {
        node.metrics.plays_refused_total.inc();
        tracing::debug!(client = client.id, peer = %client.peer, app = %request.app, key = %request.key, %refusal, "request refused");
    }
    admitted
}

fn subscribe(node: &Node, name: String) -> Result<(String, crate::hub::Subscription), Refusal> {
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
    _unpublish_notice: Option<EndNotice>,
}

impl Publication {
    /// One media message from the publisher.
    pub fn push(&self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        self.handle.push(kind, timestamp, payload);
    }
}

/// Starts a publish of the requested stream by `client`, once authorised. In a cluster the
/// stream's owner decides whether this is the stream's one publisher; the publish waits for its
/// answer (at most the relay timeout; an owner that cannot be asked does not refuse it).
pub async fn publish(
    node: &Node,
    client: &ClientGuard,
    request: &StreamRequest,
) -> Result<Publication, Refusal> {
    let started = match admit(node, client, Action::Publish, request).await {
        Ok(name) => start_publish(node, client, name, request).await,
        Err(refusal) => Err(refusal),
    };
    match &started {
        Ok((name, _)) => {
            node.metrics.publishes_total.inc();
            tracing::info!(client = client.id, peer = %client.peer, stream = %name, "publish");
            client.set_role(Role::Publisher(name.clone()));
        }
        Err(refusal) => {
            node.metrics.publishes_refused_total.inc();
            tracing::info!(client = client.id, peer = %client.peer, app = %request.app, key = %request.key, %refusal, "publish refused");
        }
    }
    started.map(|(_, publication)| publication)
}

async fn start_publish(
    node: &Node,
    client: &ClientGuard,
    name: String,
    request: &StreamRequest,
) -> Result<(String, Publication), Refusal> {
    let info = PublisherInfo {
        client_id: client.id,
        peer: client.peer,
        cancel: client.cancel.clone(),
    };
    let over_relayed = node
        .cluster()
        .filter(|link| link.relay.holds_relayed_copy(&name));
    let handle = if let Some(link) = over_relayed {
        let handle = node.hub.publish_over_relayed(&name, info);
        link.relay.took_over(&name);
        handle
    } else {
        node.hub.publish(&name, info).map_err(|e| match e {
            PublishError::Taken(name) => Refusal::Taken(name),
        })?
    };
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
            _unpublish_notice: EndNotice::new(node, client, HookEvent::OnUnpublish, request),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_from_the_key_the_app_and_the_tc_url() {
        let r = StreamRequest::rtmp("live", "cam?token=t1&x=1", Some("rtmp://h/live"));
        assert_eq!((r.app.as_str(), r.key.as_str()), ("live", "cam"));
        assert_eq!(r.token().as_deref(), Some("t1"));
        let r = StreamRequest::rtmp("live?token=t2", "cam", Some("rtmp://h/live?token=t2"));
        assert_eq!((r.app.as_str(), r.key.as_str()), ("live", "cam"));
        assert_eq!(r.token().as_deref(), Some("t2"));
        let r = StreamRequest::rtmp("live", "cam", Some("rtmp://h/live?token=t3"));
        assert_eq!(r.token().as_deref(), Some("t3"));
        assert_eq!(stream_name(&r).unwrap(), "live/cam");
        let r = StreamRequest::http("live", "cam", None);
        assert_eq!(r.token(), None);
        let r = StreamRequest::http("live", "cam", Some("token=&token=t4"));
        assert_eq!(r.token().as_deref(), Some("t4"));
    }
}
