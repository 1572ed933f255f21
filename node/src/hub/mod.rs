//! The stream hub: one publisher per stream key, any number of players, a GOP cache so new
//! players start on a keyframe at once, and fan-out through one bounded broadcast ring per stream.
//!
//! Every media message becomes one `Arc<Frame>`; the ring holds pointers, so a player costs a
//! cursor into it, never a copy. A player that falls more than the ring's length behind is told
//! by the ring (`Lagged`) and skips to the next keyframe (see `player`). Memory per stream is
//! bounded in bytes (`hub.max_stream_bytes`: the ring's frames plus the GOP cache), whatever
//! the players do.

mod frame;
mod player;
mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub use frame::{Frame, SHARED_STREAM_ID};
pub use player::{FeedEnd, FeedItem, FeedPolicy, PlayerFeed};
pub use stream::{HubEvent, PublisherHandle, RingFrame, Stream, StreamSnapshot, Subscription};

use crate::config::HubSection;

/// The hub's settings: the `[hub]` section plus the RTMP chunk size of the output.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Keep the last GOP for new players (`hub.gop_cache`).
    pub gop_cache: bool,
    /// Largest GOP in bytes that is cached (`hub.max_gop_bytes`).
    pub max_gop_bytes: usize,
    /// Length in messages of each stream's broadcast ring (`hub.player_queue`).
    pub player_queue: usize,
    /// Payload bytes one stream holds at most, ring and GOP cache together
    /// (`hub.max_stream_bytes`).
    pub max_stream_bytes: usize,
    /// A new publish on a taken key replaces the publisher (`hub.publish_replace`).
    pub publish_replace: bool,
    /// Chunk size in bytes of the shared RTMP serialization (`rtmp.chunk_size`).
    pub chunk_size: u32,
}

impl HubConfig {
    /// Takes the `[hub]` section and the RTMP output chunk size.
    pub fn new(section: &HubSection, chunk_size: u32) -> Self {
        Self {
            gop_cache: section.gop_cache,
            max_gop_bytes: section.max_gop_bytes,
            player_queue: section.player_queue,
            max_stream_bytes: section.max_stream_bytes,
            publish_replace: section.publish_replace,
            chunk_size,
        }
    }
}

impl HubConfig {
    /// The ring's share of the stream budget: what the GOP cache may not take.
    pub fn max_ring_bytes(&self) -> usize {
        let gop = if self.gop_cache {
            self.max_gop_bytes
        } else {
            0
        };
        self.max_stream_bytes.saturating_sub(gop).max(1)
    }
}

/// Why [`Hub::publish`] refused a publisher.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// The stream (named) already has a publisher and replacement is off.
    #[error("stream {0} is already being published")]
    Taken(String),
}

/// Who is publishing: shown by the API and used to kick a replaced publisher.
#[derive(Debug, Clone)]
pub struct PublisherInfo {
    /// The connection id, as in the clients API; 0 when the publisher is another node.
    pub client_id: u64,
    /// The publisher's remote address (for a relayed stream, the node's internal address).
    pub peer: SocketAddr,
    /// The publisher connection's token; the hub cancels it when a new publisher replaces it.
    pub cancel: CancellationToken,
}

/// All streams of a node, by stream name (`app/key`).
pub struct Hub {
    config: HubConfig,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// The settings this hub was made with.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn stream_entry(&self, key: &str) -> Arc<Stream> {
        self.streams
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| Stream::new(key.to_owned(), &self.config))
            .clone()
    }

    /// Starts publishing `key`. A taken key is refused unless replacement is configured, in which
    /// case the current publisher is cancelled and the new one takes over the same stream (its
    /// players stay connected).
    pub fn publish(
        self: &Arc<Self>,
        key: &str,
        publisher: PublisherInfo,
    ) -> Result<PublisherHandle, PublishError> {
        self.publish_as(key, publisher, self.config.publish_replace)
    }

    /// Publishes a stream that arrives over the relay from another node. It always takes over
    /// the key: a newer relay stream means the older one's node lost its route to us.
    pub fn publish_relayed(
        self: &Arc<Self>,
        key: &str,
        publisher: PublisherInfo,
    ) -> PublisherHandle {
        self.publish_as(key, publisher, true)
            .expect("replacing publishes are never refused")
    }

    /// Publishes a local publisher over a copy of the stream relayed from another node: that
    /// copy is not a publisher of its own (the stream's owner decides who publishes).
    pub fn publish_over_relayed(
        self: &Arc<Self>,
        key: &str,
        publisher: PublisherInfo,
    ) -> PublisherHandle {
        self.publish_relayed(key, publisher)
    }

    /// Publishes a stream pushed here by the node its publisher is on. The push takes over a
    /// taken key only when `replace` is set (the same node pushing again, or replacement
    /// configured); otherwise it is refused, so a stream never has two publishers.
    pub fn publish_pushed(
        self: &Arc<Self>,
        key: &str,
        publisher: PublisherInfo,
        replace: bool,
    ) -> Result<PublisherHandle, PublishError> {
        self.publish_as(key, publisher, replace)
    }

    /// Whether a new publisher of a taken key replaces the current one (`hub.publish_replace`).
    pub fn replaces_publishers(&self) -> bool {
        self.config.publish_replace
    }

    fn publish_as(
        self: &Arc<Self>,
        key: &str,
        publisher: PublisherInfo,
        replace: bool,
    ) -> Result<PublisherHandle, PublishError> {
        let stream = self.stream_entry(key);
        let generation = stream.start_publish(publisher, replace)?;
        Ok(PublisherHandle::new(stream, generation))
    }

    /// Subscribes to `key`. Without a publisher the stream is only joined when `wait` is set (the
    /// player then waits for one); otherwise `None`.
    pub fn subscribe(&self, key: &str, wait: bool) -> Option<Subscription> {
        let stream = if wait {
            self.stream_entry(key)
        } else {
            let stream = self.streams.lock().get(key).cloned()?;
            if !stream.is_published() {
                return None;
            }
            stream
        };
        Some(stream.subscribe())
    }

    /// The stream named `key`, published or not, if the hub holds it.
    pub fn get(&self, key: &str) -> Option<Arc<Stream>> {
        self.streams.lock().get(key).cloned()
    }

    /// Every stream the hub holds, in no particular order.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams.lock().values().cloned().collect()
    }

    /// The state of every stream with a publisher or players, ordered by name.
    pub fn active_snapshots(&self) -> Vec<StreamSnapshot> {
        let mut streams: Vec<StreamSnapshot> = self
            .streams()
            .iter()
            .map(|s| s.snapshot())
            .filter(|s| s.publisher.is_some() || s.viewers > 0)
            .collect();
        streams.sort_by(|a, b| a.key.cmp(&b.key));
        streams
    }

    /// Drops streams that have neither a publisher nor players, and updates bitrates. Called
    /// once a second by the node.
    pub fn tick(&self, elapsed: Duration) {
        let mut streams = self.streams.lock();
        streams.retain(|_, stream| stream.is_published() || stream.player_count() > 0);
        for stream in streams.values() {
            stream.update_rates(elapsed);
        }
    }
}

/// Validates a whole stream name, `app/key`, as the hub and the relay use it.
pub fn validate_stream_name(name: &str) -> Result<(), &'static str> {
    let Some((app, key)) = name.split_once('/') else {
        return Err("stream name must be app/key");
    };
    validate_key(app)?;
    if key.contains('?') {
        return Err("stream name must not carry a query");
    }
    validate_key(key)
}

/// Stream keys become part of URLs, file names and log lines: keep them to a safe alphabet.
pub fn validate_key(key: &str) -> Result<(), &'static str> {
    let key = key.split('?').next().unwrap_or_default();
    if key.is_empty() {
        return Err("empty stream key");
    }
    if key.len() > 200 {
        return Err("stream key longer than 200 characters");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        return Err("stream key may only contain letters, digits and - _ . ~");
    }
    if key == "." || key == ".." {
        // Names become path segments (HLS, URLs): never the current or the parent directory.
        return Err("stream key must not be . or ..");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
