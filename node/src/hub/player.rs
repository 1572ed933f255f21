//! What every player (RTMP or HTTP-FLV) reads: the cached start of the stream, then the live
//! ring, with the slow-player policy applied — a player that falls behind the ring skips to the
//! next keyframe, and one that keeps falling behind is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{Frame, HubEvent, Subscription};
use crate::media::MediaKind;

/// The slow-player and waiting rules of a [`PlayerFeed`], from the `[hub]` section.
#[derive(Debug, Clone)]
pub struct FeedPolicy {
    /// Skips allowed within one minute before the player is dropped.
    pub max_skips_per_minute: u32,
    /// How long a player waits for a publisher (after an unpublish, or before the first one).
    pub wait_for_publisher: Duration,
}

/// What a [`PlayerFeed`] yields.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// A media message to write to the player.
    Frame(Arc<Frame>),
    /// The publisher left; the player waits for a republish.
    Unpublished,
    /// A publisher (re)started; its sequence headers and a keyframe follow.
    Published,
}

/// Why a [`PlayerFeed`] ended; the driver closes the player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeedEnd {
    /// Fell behind the ring more than `max_skips_per_minute` times in a minute.
    #[error("player too slow: fell behind the stream too often")]
    TooSlow,
    /// No publisher appeared within `wait_for_publisher`.
    #[error("no publisher came back within the grace period")]
    PublisherGone,
    /// The stream's ring was closed.
    #[error("stream closed")]
    Closed,
}

impl FeedEnd {
    /// Label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            FeedEnd::TooSlow => "too_slow",
            FeedEnd::PublisherGone => "publisher_gone",
            FeedEnd::Closed => "closed",
        }
    }
}

/// One player's feed of a stream: the cached start, then the live ring, skipping to the
/// next keyframe when the player lags behind the ring.
pub struct PlayerFeed {
    sub: Subscription,
    initial: VecDeque<Arc<Frame>>,
    policy: FeedPolicy,
    skipping: bool,
    skips: VecDeque<Instant>,
    /// Set while there is no publisher: the moment the player gives up waiting.
    give_up_at: Option<Instant>,
}

impl PlayerFeed {
    /// A feed starting with the subscription's cached frames.
    pub fn new(sub: Subscription, policy: FeedPolicy) -> Self {
        let give_up_at = (!sub.published).then(|| Instant::now() + policy.wait_for_publisher);
        Self {
            initial: sub.initial.iter().cloned().collect(),
            sub,
            policy,
            skipping: false,
            skips: VecDeque::new(),
            give_up_at,
        }
    }

    /// The stream name this feed plays.
    pub fn stream_key(&self) -> &str {
        self.sub.stream.key()
    }

    /// Times this player skipped ahead within the last minute.
    pub fn skips(&self) -> usize {
        self.skips.len()
    }

    /// Waits for the next item. Cancel-safe: nothing is lost if the future is dropped.
    pub async fn next(&mut self) -> Result<FeedItem, FeedEnd> {
        loop {
            if let Some(frame) = self.initial.pop_front() {
                return Ok(FeedItem::Frame(frame));
            }
            let received = match self.give_up_at {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline.into(), self.sub.rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return Err(FeedEnd::PublisherGone),
                    }
                }
                None => self.sub.rx.recv().await,
            };
            match received {
                Ok(event) => {
                    if let Some(item) = self.admit(event)? {
                        return Ok(item);
                    }
                }
                Err(RecvError::Lagged(_)) => self.lagged()?,
                Err(RecvError::Closed) => return Err(FeedEnd::Closed),
            }
        }
    }

    /// The next item if one is ready now; used to batch several messages into one write.
    pub fn try_next(&mut self) -> Option<Result<FeedItem, FeedEnd>> {
        loop {
            if let Some(frame) = self.initial.pop_front() {
                return Some(Ok(FeedItem::Frame(frame)));
            }
            match self.sub.rx.try_recv() {
                Ok(event) => match self.admit(event) {
                    Ok(Some(item)) => return Some(Ok(item)),
                    Ok(None) => {}
                    Err(end) => return Some(Err(end)),
                },
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Lagged(_)) => {
                    if let Err(end) = self.lagged() {
                        return Some(Err(end));
                    }
                }
                Err(TryRecvError::Closed) => return Some(Err(FeedEnd::Closed)),
            }
        }
    }

    fn lagged(&mut self) -> Result<(), FeedEnd> {
        let now = Instant::now();
        while self
            .skips
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.skips.pop_front();
        }
        self.skips.push_back(now);
        self.skipping = true;
        if self.skips.len() > self.policy.max_skips_per_minute as usize {
            return Err(FeedEnd::TooSlow);
        }
        tracing::debug!(stream = %self.sub.stream.key(), "player fell behind; skipping to the next keyframe");
        Ok(())
    }

    /// What the player makes of one ring event; `None` when it is skipped.
    fn admit(&mut self, event: HubEvent) -> Result<Option<FeedItem>, FeedEnd> {
        Ok(match event {
            HubEvent::Media(slot) => {
                self.give_up_at = None;
                let Some(frame) = slot.frame() else {
                    // Evicted by the byte budget: this player fell that far behind. One skip
                    // for a run of evicted slots.
                    if !self.skipping {
                        self.lagged()?;
                    }
                    return Ok(None);
                };
                if self.skipping {
                    let resume = match frame.kind {
                        MediaKind::Video => frame.flags.keyframe,
                        MediaKind::Audio => !self.sub.stream.has_video(),
                        MediaKind::Metadata => false,
                    };
                    if !resume {
                        return Ok(None);
                    }
                    self.skipping = false;
                }
                Some(FeedItem::Frame(frame))
            }
            HubEvent::Unpublished => {
                self.give_up_at = Some(Instant::now() + self.policy.wait_for_publisher);
                // The next publisher starts with a keyframe after its sequence headers.
                Some(FeedItem::Unpublished)
            }
            HubEvent::Published => {
                self.give_up_at = None;
                Some(FeedItem::Published)
            }
        })
    }
}
