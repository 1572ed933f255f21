//! One pull per stream per node: fetches a stream from its upstream — its owner, or the
//! region's relay edge in the mesh — and publishes it into the local hub, where all local
//! viewers (and the nodes pulling from this one) share it. Follows the upstream across
//! failures; after a switch, frames the viewers already have are skipped so their timestamps
//! never go back, and the gap is logged and counted.

use std::sync::Arc;
use std::time::Duration;

use skein_raft::NodeId;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Relay;
use super::conn::RelayError;
use super::routing::RouteWatcher;
use super::wire::{Hello, Media, RelayMessage};
use crate::hub::PublisherHandle;
use crate::media::MediaKind;

enum PullEnd {
    /// No local viewer for the linger time.
    Unwatched,
    /// The owner changed; pull from the new one.
    Rerouted,
    /// The owner had nothing to give within its hold time.
    Refused(String),
    /// A publisher on this node has the stream (it replaced the relayed copy, or came first):
    /// the local hub is fed by it, not by the pull.
    Superseded,
    /// The owner says the stream's publisher left it: the publisher stopped, or its push moved
    /// to another origin (a drain or a ring change this node may not have applied yet).
    Unpublished,
}

/// What the local viewers have seen, to continue seamlessly from another origin.
#[derive(Default)]
pub(super) struct Continuity {
    handle: Option<PublisherHandle>,
    /// Cancelled by the hub when another publisher replaces the relayed copy.
    replaced: Option<CancellationToken>,
    last_audio: Option<u32>,
    last_video: Option<u32>,
    /// The headers and metadata viewers have (the latest few), to give a new timeline.
    headers: Vec<Media>,
    /// Set when the origin was lost while viewers were being fed: media time then.
    gap_since: Option<Instant>,
    last_media_at: Option<Instant>,
}

impl Continuity {
    pub(super) fn owner_lost(&mut self) {
        if self.handle.is_some() && self.gap_since.is_none() {
            self.gap_since = Some(self.last_media_at.unwrap_or_else(Instant::now));
        }
    }

    /// Whether a frame from the (possibly new) origin is news to the local viewers.
    pub(super) fn is_new(&mut self, media: &Media) -> bool {
        let Media {
            kind,
            flags,
            timestamp,
            ref payload,
        } = *media;
        if kind == MediaKind::Metadata || flags.sequence_header {
            // Headers repeat on every (re)connect; only a changed one is news.
            if self.headers.iter().any(|h| h.payload == *payload) {
                return false;
            }
            self.headers.push(media.clone());
            if self.headers.len() > 8 {
                self.headers.remove(0);
            }
            return true;
        }
        let last = match kind {
            MediaKind::Audio => &mut self.last_audio,
            _ => &mut self.last_video,
        };
        if last.is_some_and(|l| timestamp <= l) {
            return false;
        }
        *last = Some(timestamp);
        true
    }

    /// Whether `media` starts a new timeline: a frame further behind the last one of its track
    /// than any cached GOP reaches back. The publisher published again and its new origin never
    /// had the old timeline (no `Unpublished` reached this pull), so dropping its frames as
    /// repeats would starve the viewers until the new clock caught up with the old one.
    pub(super) fn starts_over(&self, media: &Media) -> bool {
        if media.kind == MediaKind::Metadata || media.flags.sequence_header {
            return false;
        }
        let last = match media.kind {
            MediaKind::Audio => self.last_audio,
            _ => self.last_video,
        };
        last.is_some_and(|l| media.timestamp.saturating_add(NEW_TIMELINE_MS) < l)
    }

    /// Starts again for a new timeline; returns the headers viewers had, which the new local
    /// publish needs before its first frame.
    pub(super) fn restart(&mut self) -> Vec<Media> {
        let headers = std::mem::take(&mut self.headers);
        self.forget();
        headers
    }

    pub(super) fn forget(&mut self) {
        self.handle = None;
        self.replaced = None;
        self.last_audio = None;
        self.last_video = None;
        self.headers.clear();
        self.gap_since = None;
    }
}

/// How far behind the last frame a frame must be to start a new timeline rather than repeat a
/// cached GOP (GOPs are a few seconds; the hub bounds them in bytes, not time).
const NEW_TIMELINE_MS: u32 = 15_000;

pub(super) async fn run(relay: Arc<Relay>, stream: String) {
    relay.metrics.relay_pulls.inc();
    follow_owner(&relay, &stream).await;
    relay.metrics.relay_pulls.dec();
}

/// Pulls from the stream's upstream (whichever it is now) until no local viewer is left.
async fn follow_owner(relay: &Arc<Relay>, stream: &str) {
    let mut continuity = Continuity::default();
    let mut watcher = relay.routing.watcher();
    loop {
        let owner = relay.upstream(stream);
        let Some(owner) = owner.filter(|o| *o != relay.routing.me()) else {
            if owner.is_some() && continuity.handle.is_some() {
                // The stream's publisher pushes to us now.
                tracing::info!(stream = %stream, "this node owns the stream now; pull paused");
                continuity.forget();
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), watcher.changed()).await;
            if relay.end_pull_if_unwatched(stream) {
                return;
            }
            continue;
        };
        match pull_once(relay, stream, owner, &mut watcher, &mut continuity).await {
            Ok(PullEnd::Unwatched) => {
                if relay.end_pull_if_unwatched(stream) {
                    tracing::info!(stream = %stream, "no viewers left; pull ends");
                    return;
                }
            }
            Ok(PullEnd::Superseded) => {
                tracing::info!(stream = %stream, "a publisher on this node has the stream; pull paused");
                continuity.forget();
                while relay.hub.get(stream).is_some_and(|s| s.is_published()) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if relay.end_pull_if_unwatched(stream) {
                    return;
                }
            }
            Ok(PullEnd::Rerouted) => {
                tracing::info!(stream = %stream, from = owner, "stream upstream changed; moving the pull");
                continuity.owner_lost();
            }
            Ok(PullEnd::Unpublished) => {
                if moved_within(relay, stream, owner, &mut watcher).await {
                    tracing::info!(stream = %stream, from = owner, "stream moved to another origin; moving the pull");
                    continuity.owner_lost();
                } else {
                    // The publisher really left: local viewers are told, and wait for it.
                    continuity.forget();
                }
            }
            Ok(PullEnd::Refused(why)) => {
                tracing::info!(stream = %stream, owner, "origin has no such stream: {why}");
                continuity.forget();
                if relay.end_pull_if_unwatched(stream) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                tracing::warn!(stream = %stream, owner, "pull from node {owner} failed: {e}");
                relay.peer_failed(owner, &e);
                if continuity.handle.is_some() {
                    relay.metrics.relay_failovers_total.inc();
                }
                continuity.owner_lost();
                if !e.peer_lost() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                if relay.end_pull_if_unwatched(stream) {
                    return;
                }
            }
        }
    }
}

/// Whether the stream's owner changes from `owner` within the relay timeout: a push that
/// moves to another origin ends at the old one before every node has applied the new ring.
async fn moved_within(
    relay: &Arc<Relay>,
    stream: &str,
    owner: NodeId,
    watcher: &mut RouteWatcher,
) -> bool {
    let moved = async {
        while relay.upstream(stream) == Some(owner) {
            watcher.changed().await;
        }
    };
    tokio::time::timeout(relay.settings.timeout, moved)
        .await
        .is_ok()
}

async fn pull_once(
    relay: &Arc<Relay>,
    stream: &str,
    owner: NodeId,
    watcher: &mut RouteWatcher,
    continuity: &mut Continuity,
) -> Result<PullEnd, RelayError> {
    let hold_ms = relay.settings.pull_hold.as_millis().min(u32::MAX as u128) as u32;
    let mut conn = relay
        .connect(
            owner,
            Hello::Pull {
                key: stream.to_owned(),
                hold_ms,
            },
        )
        .await?;
    relay.pulling_from(stream, owner);
    tracing::info!(stream = %stream, owner, "pulling from upstream");
    let mut last_watched = Instant::now();
    loop {
        tokio::select! {
            message = conn.rx.recv() => {
                match message? {
                    Some(RelayMessage::Media(media)) => {
                        if !forward(relay, stream, owner, continuity, media) {
                            conn.tx.finish();
                            return Ok(PullEnd::Superseded);
                        }
                    }
                    Some(RelayMessage::Unpublished) if continuity.handle.is_some() => {
                        conn.tx.finish();
                        return Ok(PullEnd::Unpublished);
                    }
                    Some(RelayMessage::Unpublished) => {}
                    Some(RelayMessage::Published | RelayMessage::Keepalive) => {}
                    Some(RelayMessage::Refused(why)) => return Ok(PullEnd::Refused(why)),
                    Some(other) => {
                        return Err(RelayError::Refused(format!("unexpected {other:?} from the origin")));
                    }
                    None => return Err(RelayError::Closed),
                }
            }
            _ = conn.tx.keepalive_due() => {
                // A pull sends nothing but keep-alives, so this is also the viewer check's tick.
                conn.tx.keepalive().await?;
                if relay.hub.get(stream).is_some_and(|s| s.player_count() > 0) {
                    last_watched = Instant::now();
                } else if last_watched.elapsed() >= relay.settings.pull_linger {
                    conn.tx.finish();
                    return Ok(PullEnd::Unwatched);
                }
            }
            _ = superseded(continuity.replaced.clone()) => {
                conn.tx.finish();
                return Ok(PullEnd::Superseded);
            }
            _ = watcher.changed() => {
                if relay.upstream(stream) != Some(owner) {
                    conn.tx.finish();
                    return Ok(PullEnd::Rerouted);
                }
            }
        }
    }
}

/// Resolves once the relayed copy has been replaced by another publisher (never without one).
async fn superseded(replaced: Option<CancellationToken>) {
    match replaced {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Publishes a frame into the local hub unless the viewers have it already. Returns `false`
/// (and publishes nothing) when another publisher has the stream on this node: a relayed copy
/// never replaces a local publisher.
fn forward(
    relay: &Arc<Relay>,
    stream: &str,
    owner: NodeId,
    continuity: &mut Continuity,
    media: Media,
) -> bool {
    if continuity.handle.is_none() && relay.hub.get(stream).is_some_and(|s| s.is_published()) {
        return false;
    }
    if continuity.starts_over(&media) {
        tracing::info!(
            stream = %stream,
            owner,
            "the origin's stream started over (a new publish); publishing it anew here"
        );
        for header in continuity.restart() {
            let header = Media {
                timestamp: media.timestamp,
                ..header
            };
            deliver(relay, stream, owner, continuity, header);
        }
    }
    deliver(relay, stream, owner, continuity, media);
    true
}

/// Publishes `media` into the local hub if it is news to the viewers.
fn deliver(
    relay: &Arc<Relay>,
    stream: &str,
    owner: NodeId,
    continuity: &mut Continuity,
    media: Media,
) {
    if !continuity.is_new(&media) {
        return;
    }
    let now = Instant::now();
    if let Some(since) = continuity.gap_since.take() {
        let gap = now.duration_since(since);
        relay.metrics.relay_gap_seconds.observe(gap.as_secs_f64());
        tracing::info!(
            stream = %stream,
            owner,
            gap_ms = gap.as_millis() as u64,
            "pull resumed from another origin"
        );
    }
    continuity.last_media_at = Some(now);
    let handle = continuity.handle.get_or_insert_with(|| {
        let info = relay.publisher_info(owner);
        continuity.replaced = Some(info.cancel.clone());
        relay.hub.publish_relayed(stream, info)
    });
    handle.push_classified(media.kind, media.timestamp, media.payload, media.flags);
}
