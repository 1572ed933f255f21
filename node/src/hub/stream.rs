//! One stream: its publisher, its caches (metadata, sequence headers, last GOP), its output
//! timeline and the broadcast ring its players read from.
//!
//! The ring is bounded twice: in messages (`hub.player_queue`, the broadcast channel's length)
//! and in payload bytes (`hub.max_stream_bytes` minus the GOP cache's share). Each ring slot is a
//! [`RingFrame`] the stream can empty: when the frames in the ring outgrow the byte budget the
//! oldest slots give up their frame, so a player that stopped reading pins at most the budget;
//! when it reads again it finds the emptied slots and skips to the next keyframe.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

use super::{Frame, HubConfig, PublishError, PublisherInfo};
use crate::media::{FrameFlags, MediaInfo, MediaKind};

/// What a player's ring carries: media, and the publisher coming and going (in order with it).
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// A media message, timestamp already on the stream's output timeline.
    Media(Arc<RingFrame>),
    /// The publisher left.
    Unpublished,
    /// A new publisher started.
    Published,
}

/// One slot of the ring: a frame, until the stream's byte budget evicts it.
#[derive(Debug)]
pub struct RingFrame {
    frame: Mutex<Option<Arc<Frame>>>,
}

impl RingFrame {
    /// The frame, or `None` when it was evicted to keep the ring within its byte budget.
    pub fn frame(&self) -> Option<Arc<Frame>> {
        self.frame.lock().clone()
    }

    fn evict(&self) {
        self.frame.lock().take();
    }
}

/// One stream of the hub: its publisher, caches, output timeline and broadcast ring.
pub struct Stream {
    key: String,
    tx: broadcast::Sender<HubEvent>,
    state: Mutex<State>,
    has_video: AtomicBool,
    bytes_in: AtomicU64,
    bitrate_bps: AtomicU64,
    chunk_size: u32,
    gop_cache: bool,
    max_gop_bytes: usize,
    ring_capacity: usize,
    max_ring_bytes: usize,
}

#[derive(Default)]
struct State {
    publisher: Option<PublisherInfo>,
    generation: u64,
    published_at: Option<Instant>,
    metadata: Option<Arc<Frame>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    gop: Vec<Arc<Frame>>,
    gop_bytes: usize,
    /// The slots the ring may still hold, oldest first, with their payload bytes.
    ring: VecDeque<(Arc<RingFrame>, usize)>,
    ring_bytes: usize,
    timeline: Timeline,
    info: MediaInfo,
    rate_bytes: u64,
}

/// Maps each publisher's timestamps onto one output timeline that never goes backwards: a
/// republish continues one millisecond after the latest timestamp players have seen.
#[derive(Default)]
struct Timeline {
    offset: u32,
    latest: Option<u32>,
    rebase: bool,
}

impl Timeline {
    fn map(&mut self, input: u32) -> u32 {
        if self.rebase {
            self.rebase = false;
            let next = self.latest.map_or(0, |t| t.wrapping_add(1));
            self.offset = next.wrapping_sub(input);
        }
        let out = input.wrapping_add(self.offset);
        self.latest = Some(self.latest.map_or(out, |t| t.max(out)));
        out
    }
}

impl Stream {
    pub(super) fn new(key: String, config: &HubConfig) -> Arc<Self> {
        let (tx, _) = broadcast::channel(config.player_queue);
        Arc::new(Self {
            key,
            tx,
            state: Mutex::new(State::default()),
            has_video: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            bitrate_bps: AtomicU64::new(0),
            chunk_size: config.chunk_size,
            gop_cache: config.gop_cache,
            max_gop_bytes: config.max_gop_bytes,
            ring_capacity: config.player_queue,
            max_ring_bytes: config.max_ring_bytes(),
        })
    }

    /// The stream name, `app/key`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the stream has a publisher now.
    pub fn is_published(&self) -> bool {
        self.state.lock().publisher.is_some()
    }

    /// Whether any video (sequence header or frame) has been seen on this stream.
    pub fn has_video(&self) -> bool {
        self.has_video.load(Ordering::Relaxed)
    }

    /// Players currently attached (RTMP and HTTP-FLV alike): one ring receiver each.
    pub fn player_count(&self) -> usize {
        self.tx.receiver_count()
    }

    pub(super) fn start_publish(
        &self,
        publisher: PublisherInfo,
        replace: bool,
    ) -> Result<u64, PublishError> {
        let mut state = self.state.lock();
        if let Some(current) = &state.publisher {
            if !replace {
                return Err(PublishError::Taken(self.key.clone()));
            }
            tracing::info!(stream = %self.key, old = %current.peer, new = %publisher.peer, "publisher replaced");
            current.cancel.cancel();
        }
        state.generation += 1;
        state.publisher = Some(publisher);
        state.published_at = Some(Instant::now());
        state.clear_caches();
        state.info = MediaInfo::default();
        state.timeline.rebase = state.timeline.latest.is_some();
        let _ = self.tx.send(HubEvent::Published);
        Ok(state.generation)
    }

    fn end_publish(&self, generation: u64) {
        let mut state = self.state.lock();
        if state.generation != generation || state.publisher.is_none() {
            return; // replaced by a newer publisher, which owns the stream now
        }
        state.publisher = None;
        state.published_at = None;
        state.clear_caches();
        let _ = self.tx.send(HubEvent::Unpublished);
    }

    fn push(&self, kind: MediaKind, timestamp: u32, payload: Bytes, flags: FrameFlags) {
        self.bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let mut state = self.state.lock();
        let timestamp = state.timeline.map(timestamp);
        let frame = Arc::new(Frame::new(kind, timestamp, payload, flags, self.chunk_size));
        match kind {
            MediaKind::Metadata => {
                state.info.update_from_metadata(&frame.payload);
                state.metadata = Some(frame.clone());
            }
            MediaKind::Video if frame.flags.sequence_header => {
                self.has_video.store(true, Ordering::Relaxed);
                state.info.update_from_video_header(&frame.payload);
                state.video_header = Some(frame.clone());
            }
            MediaKind::Audio if frame.flags.sequence_header => {
                state.info.update_from_audio_header(&frame.payload);
                state.audio_header = Some(frame.clone());
            }
            _ => {
                if self.gop_cache {
                    state.cache_in_gop(&frame, self.max_gop_bytes);
                }
                if kind == MediaKind::Video {
                    self.has_video.store(true, Ordering::Relaxed);
                }
            }
        }
        let slot = state.admit_to_ring(frame, self.ring_capacity, self.max_ring_bytes);
        // Sent under the state lock so a subscriber's snapshot and its ring never overlap or
        // leave a hole.
        let _ = self.tx.send(HubEvent::Media(slot));
    }

    pub(super) fn subscribe(self: &Arc<Self>) -> Subscription {
        let state = self.state.lock();
        let initial: Vec<Arc<Frame>> = [&state.metadata, &state.video_header, &state.audio_header]
            .into_iter()
            .flatten()
            .chain(state.gop.iter())
            .cloned()
            .collect();
        let rx = self.tx.subscribe();
        let published = state.publisher.is_some();
        drop(state);
        Subscription {
            stream: self.clone(),
            rx,
            initial,
            published,
        }
    }

    pub(super) fn update_rates(&self, elapsed: Duration) {
        let total = self.bytes_in.load(Ordering::Relaxed);
        let mut state = self.state.lock();
        let delta = total.saturating_sub(state.rate_bytes);
        state.rate_bytes = total;
        let secs = elapsed.as_secs_f64().max(0.001);
        self.bitrate_bps
            .store((delta as f64 * 8.0 / secs) as u64, Ordering::Relaxed);
    }

    /// The stream's state for the API: publisher, codecs, rates and viewers.
    pub fn snapshot(&self) -> StreamSnapshot {
        let state = self.state.lock();
        StreamSnapshot {
            key: self.key.clone(),
            publisher: state.publisher.as_ref().map(|p| PublisherView {
                client_id: p.client_id,
                peer: p.peer,
            }),
            media: state.info.clone(),
            bitrate_bps: self.bitrate_bps.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            viewers: self.player_count(),
            uptime_secs: state
                .published_at
                .map_or(0.0, |t| t.elapsed().as_secs_f64()),
            gop_cached_frames: state.gop.len(),
            gop_cached_bytes: state.gop_bytes,
            ring_bytes: state.ring_bytes,
        }
    }
}

impl State {
    /// Puts `frame` in a new ring slot and evicts the oldest frames while the ring holds more
    /// than `max_bytes` (the newest frame always stays). Slots beyond `capacity` are being
    /// overwritten by the broadcast channel and are forgotten here.
    fn admit_to_ring(
        &mut self,
        frame: Arc<Frame>,
        capacity: usize,
        max_bytes: usize,
    ) -> Arc<RingFrame> {
        let len = frame.len();
        let slot = Arc::new(RingFrame {
            frame: Mutex::new(Some(frame)),
        });
        self.ring.push_back((slot.clone(), len));
        self.ring_bytes += len;
        while self.ring.len() > capacity || (self.ring_bytes > max_bytes && self.ring.len() > 1) {
            let Some((oldest, bytes)) = self.ring.pop_front() else {
                break;
            };
            oldest.evict();
            self.ring_bytes -= bytes;
        }
        slot
    }

    fn clear_caches(&mut self) {
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.gop.clear();
        self.gop_bytes = 0;
    }

    /// Keeps the frames since the latest video keyframe. A GOP that outgrows the limit is
    /// dropped; caching resumes at the next keyframe.
    fn cache_in_gop(&mut self, frame: &Arc<Frame>, max_bytes: usize) {
        if frame.kind == MediaKind::Video && frame.flags.keyframe {
            self.gop.clear();
            self.gop_bytes = 0;
        } else if self.gop.is_empty() {
            return; // not started on a keyframe yet
        }
        self.gop_bytes += frame.len();
        if self.gop_bytes > max_bytes {
            self.gop.clear();
            self.gop_bytes = 0;
            return;
        }
        self.gop.push(frame.clone());
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PublisherView {
    pub client_id: u64,
    pub peer: SocketAddr,
}

/// A point-in-time view of a stream, as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSnapshot {
    /// The stream name, `app/key`.
    pub key: String,
    /// The current publisher, if any.
    pub publisher: Option<PublisherView>,
    /// Codec details from metadata and sequence headers.
    pub media: MediaInfo,
    /// Ingest bitrate in bits per second over the last hub tick.
    pub bitrate_bps: u64,
    /// Total payload bytes received since the stream was created.
    pub bytes_in: u64,
    /// Players attached (RTMP and HTTP-FLV).
    pub viewers: usize,
    /// Seconds since the current publish started (0 without a publisher).
    pub uptime_secs: f64,
    /// Frames in the GOP cache.
    pub gop_cached_frames: usize,
    /// Payload bytes in the GOP cache (at most `hub.max_gop_bytes`).
    pub gop_cached_bytes: usize,
    /// Payload bytes the ring holds for players that have not read them yet (bounded by
    /// `hub.max_stream_bytes` minus the GOP cache's share).
    pub ring_bytes: usize,
}

/// The publishing side of a stream. Dropping it ends the publish (players are told, and wait
/// for a republish).
pub struct PublisherHandle {
    stream: Arc<Stream>,
    generation: u64,
}

impl PublisherHandle {
    pub(super) fn new(stream: Arc<Stream>, generation: u64) -> Self {
        Self { stream, generation }
    }

    /// The stream being published.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// One media message from a local publisher: classified here, once for the cluster.
    pub fn push(&self, kind: MediaKind, timestamp: u32, payload: Bytes) {
        let flags = FrameFlags::classify(kind, &payload);
        self.stream.push(kind, timestamp, payload, flags);
    }

    /// One media message relayed from another node, with the flags it was classified with.
    pub fn push_classified(
        &self,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
        flags: FrameFlags,
    ) {
        self.stream.push(kind, timestamp, payload, flags);
    }
}

impl Drop for PublisherHandle {
    fn drop(&mut self) {
        self.stream.end_publish(self.generation);
    }
}

/// A player's view of a stream: the cached start (metadata, sequence headers, GOP) and its
/// cursor into the live ring.
pub struct Subscription {
    /// The stream subscribed to.
    pub stream: Arc<Stream>,
    /// The player's cursor into the stream's broadcast ring.
    pub rx: broadcast::Receiver<HubEvent>,
    /// Metadata, sequence headers and cached GOP at the time of subscribing, in send order.
    pub initial: Vec<Arc<Frame>>,
    /// Whether the stream had a publisher when subscribing.
    pub published: bool,
}
