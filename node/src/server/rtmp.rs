//! The RTMP driver: accepts TCP connections, enforces the limits and timeouts, and moves bytes
//! between the socket and the sans-IO `ServerSession`, and media between the session and the
//! hub. Each connection is one task; a player's task writes shared, pre-serialized chunks.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::admission::{self, Playback, Publication, Refusal, StreamRequest};
use super::clients::{ClientGuard, Protocol, Role};
use super::context::Node;
use super::net::write_all_vectored;
use crate::auth::query;
use crate::hub::{FeedEnd, FeedItem, SHARED_STREAM_ID};
use crate::media::MediaKind;
use crate::metrics::ReasonLabel;
use crate::rtmp::chunk::ChunkLimits;
use crate::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

/// Messages gathered into one vectored write when a player has several waiting.
const MAX_BATCH_MESSAGES: usize = 128;
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Read buffer sizes: players send almost nothing (acknowledgements, pings), so they keep a
/// small buffer; publishers get a larger one once they publish.
const READ_SMALL: usize = 2 * 1024;
const READ_PUBLISHER: usize = 32 * 1024;

/// Accepts RTMP connections until the node stops; each connection is one tracked task.
pub(super) async fn serve(listener: TcpListener, node: Arc<Node>) {
    loop {
        let accepted = tokio::select! {
            _ = node.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(client) = admission::connect(&node, peer, Protocol::Rtmp) else {
            continue;
        };
        let node = node.clone();
        node.tasks.clone().spawn(async move {
            let _ = socket.set_nodelay(true);
            let mut conn = Connection::new(&node, socket, client);
            let outcome = tokio::select! {
                _ = node.shutdown.cancelled() => Err(Close::Shutdown),
                outcome = conn.run() => outcome,
            };
            conn.finish(outcome);
        });
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Close {
    #[error("peer closed the connection")]
    PeerClosed,
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("nothing received for {0:?}")]
    Idle(Duration),
    #[error("peer did not accept data for {0:?}")]
    WriteTimeout(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("disconnected by an admin or replaced by a newer publisher")]
    Kicked,
    #[error("{0}")]
    Feed(#[from] FeedEnd),
    #[error("node shutting down")]
    Shutdown,
}

impl Close {
    fn metric_reason(&self) -> Option<&'static str> {
        match self {
            Close::HandshakeTimeout(_) => Some("handshake_timeout"),
            Close::Idle(_) => Some("idle_timeout"),
            Close::WriteTimeout(_) => Some("write_timeout"),
            Close::Protocol(_) => Some("protocol"),
            _ => None,
        }
    }
}

enum Activity {
    Idle,
    Publishing {
        stream_id: u32,
        publication: Publication,
    },
    Playing {
        stream_id: u32,
        playback: Playback,
    },
}

struct Connection<'a> {
    node: &'a Node,
    socket: TcpStream,
    client: ClientGuard,
    session: ServerSession,
    inbound: BytesMut,
    app: Option<String>,
    tc_url: Option<String>,
    connected: bool,
    activity: Activity,
    outbound: Vec<Bytes>,
}

impl<'a> Connection<'a> {
    fn new(node: &'a Node, socket: TcpStream, client: ClientGuard) -> Self {
        let session = ServerSession::new(ServerConfig {
            chunk_size: node.config.rtmp.chunk_size,
            limits: ChunkLimits {
                max_message_size: node.config.rtmp.max_message_size,
                ..ChunkLimits::default()
            },
            ..ServerConfig::default()
        });
        Self {
            node,
            socket,
            client,
            session,
            inbound: BytesMut::with_capacity(READ_SMALL),
            app: None,
            tc_url: None,
            connected: false,
            activity: Activity::Idle,
            outbound: Vec::new(),
        }
    }

    async fn run(&mut self) -> Result<(), Close> {
        let handshake_timeout = self.node.config.handshake_timeout();
        let idle_timeout = self.node.config.idle_timeout();
        let handshake_deadline = tokio::time::Instant::now() + handshake_timeout;
        loop {
            self.flush().await?;
            let cancel = self.client.cancel.clone();
            match &mut self.activity {
                Activity::Playing { playback, .. } => {
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(Close::Kicked),
                        read = self.socket.read_buf(&mut self.inbound) => {
                            Self::check_read(read)?;
                        }
                        item = playback.feed.next() => {
                            let item = item?;
                            self.deliver(item)?;
                            continue;
                        }
                    }
                }
                _ => {
                    let deadline = if self.connected {
                        tokio::time::Instant::now() + idle_timeout
                    } else {
                        handshake_deadline
                    };
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(Close::Kicked),
                        _ = tokio::time::sleep_until(deadline) => {
                            return Err(if self.connected {
                                Close::Idle(idle_timeout)
                            } else {
                                Close::HandshakeTimeout(handshake_timeout)
                            });
                        }
                        read = self.socket.read_buf(&mut self.inbound) => {
                            Self::check_read(read)?;
                        }
                    }
                }
            }
            let received = self.inbound.len();
            self.client.add_in(received);
            self.session
                .feed(&mut self.inbound)
                .map_err(|e| Close::Protocol(e.to_string()))?;
            while let Some(event) = self.session.poll_event() {
                self.on_event(event).await;
            }
            if self.inbound.capacity() - self.inbound.len() < READ_SMALL / 2 {
                let size = match self.activity {
                    Activity::Publishing { .. } => READ_PUBLISHER,
                    _ => READ_SMALL,
                };
                self.inbound.reserve(size);
            }
        }
    }

    fn check_read(read: std::io::Result<usize>) -> Result<(), Close> {
        match read {
            Ok(0) => Err(Close::PeerClosed),
            Ok(_) => Ok(()),
            Err(e) => Err(Close::Io(e)),
        }
    }

    /// Writes pending session output and media with one vectored write per batch.
    async fn flush(&mut self) -> Result<(), Close> {
        if let Some(control) = self.session.take_output() {
            self.outbound.insert(0, control);
        }
        if self.outbound.is_empty() {
            return Ok(());
        }
        let timeout = self.node.write_timeout();
        let written = tokio::time::timeout(
            timeout,
            write_all_vectored(&mut self.socket, &mut self.outbound),
        )
        .await
        .map_err(|_| Close::WriteTimeout(timeout))??;
        self.client.add_out(written);
        Ok(())
    }

    /// Queues one feed item and whatever else is ready, up to the batch limits.
    fn deliver(&mut self, first: FeedItem) -> Result<(), Close> {
        let Activity::Playing {
            stream_id,
            playback: Playback { feed, .. },
        } = &mut self.activity
        else {
            return Ok(());
        };
        let stream_id = *stream_id;
        let skips_before = feed.skips();
        let mut bytes = 0;
        let mut item = Some(first);
        let mut count = 0;
        while let Some(next) = item.take() {
            match next {
                FeedItem::Frame(frame) => {
                    let chunks = if stream_id == SHARED_STREAM_ID {
                        frame.rtmp_chunks().clone()
                    } else {
                        frame.encode_rtmp(stream_id, frame.timestamp)
                    };
                    bytes += chunks.len();
                    self.outbound.push(chunks);
                }
                FeedItem::Unpublished => {
                    self.session.send_status(
                        stream_id,
                        "status",
                        "NetStream.Play.UnpublishNotify",
                        &format!("{} is now unpublished", feed.stream_key()),
                    );
                    self.outbound.extend(self.session.take_output());
                }
                FeedItem::Published => {
                    self.session.send_status(
                        stream_id,
                        "status",
                        "NetStream.Play.PublishNotify",
                        &format!("{} is now published", feed.stream_key()),
                    );
                    self.outbound.extend(self.session.take_output());
                }
            }
            count += 1;
            if count >= MAX_BATCH_MESSAGES || bytes >= MAX_BATCH_BYTES {
                break;
            }
            item = feed.try_next().transpose()?;
        }
        let skipped = feed.skips().saturating_sub(skips_before);
        if skipped > 0 {
            self.node.metrics.player_skips_total.inc_by(skipped as u64);
        }
        Ok(())
    }

    async fn on_event(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::Connect { app, tc_url, .. } => {
                // Without their queries: a token there is a secret.
                let (logged_app, logged_tc_url) = (
                    query::strip(&app),
                    query::strip(tc_url.as_deref().unwrap_or("")),
                );
                tracing::debug!(
                    client = self.client.id,
                    app = logged_app,
                    tc_url = logged_tc_url,
                    "rtmp app connect"
                );
                self.app = Some(app);
                self.tc_url = tc_url;
                self.connected = true;
            }
            ServerEvent::Publish { stream_id, key, .. } => self.on_publish(stream_id, &key).await,
            ServerEvent::Play { stream_id, key, .. } => self.on_play(stream_id, &key).await,
            ServerEvent::Unpublish { stream_id } => {
                if matches!(self.activity, Activity::Publishing { stream_id: s, .. } if s == stream_id)
                {
                    tracing::info!(client = self.client.id, peer = %self.client.peer, stream = %self.role_stream(), "unpublish");
                    self.activity = Activity::Idle;
                    self.client.set_role(Role::Connecting);
                }
            }
            ServerEvent::StopPlay { stream_id } => {
                if matches!(self.activity, Activity::Playing { stream_id: s, .. } if s == stream_id)
                {
                    tracing::info!(client = self.client.id, peer = %self.client.peer, stream = %self.role_stream(), "stop play");
                    self.activity = Activity::Idle;
                    self.client.set_role(Role::Connecting);
                }
            }
            ServerEvent::Metadata {
                stream_id,
                timestamp,
                payload,
            } => self.push(stream_id, MediaKind::Metadata, timestamp, payload),
            ServerEvent::Audio {
                stream_id,
                timestamp,
                payload,
            } => self.push(stream_id, MediaKind::Audio, timestamp, payload),
            ServerEvent::Video {
                stream_id,
                timestamp,
                payload,
            } => self.push(stream_id, MediaKind::Video, timestamp, payload),
        }
    }

    fn push(&mut self, stream_id: u32, kind: MediaKind, timestamp: u32, payload: Bytes) {
        if let Activity::Publishing {
            stream_id: s,
            publication,
        } = &self.activity
            && *s == stream_id
        {
            publication.push(kind, timestamp, payload);
        }
    }

    fn role_stream(&self) -> String {
        match self.client.role() {
            Role::Publisher(s) | Role::Player(s) => s,
            Role::Connecting => String::new(),
        }
    }

    fn request(&self, key: &str) -> StreamRequest {
        StreamRequest::rtmp(
            self.app.as_deref().unwrap_or_default(),
            key,
            self.tc_url.as_deref(),
        )
    }

    async fn on_publish(&mut self, stream_id: u32, key: &str) {
        if !matches!(self.activity, Activity::Idle) {
            self.session.reject_publish(
                stream_id,
                "NetStream.Publish.BadConnection",
                "this connection is already publishing or playing",
            );
            return;
        }
        let request = self.request(key);
        match admission::publish(self.node, &self.client, &request).await {
            Ok(publication) => {
                self.session.accept_publish(stream_id);
                self.activity = Activity::Publishing {
                    stream_id,
                    publication,
                };
            }
            Err(refusal) => {
                let code = match refusal {
                    Refusal::Draining => "NetStream.Publish.BadConnection",
                    Refusal::Unauthorized(_) => "NetStream.Publish.Unauthorized",
                    _ => "NetStream.Publish.BadName",
                };
                self.session
                    .reject_publish(stream_id, code, &refusal.to_string());
            }
        }
    }

    async fn on_play(&mut self, stream_id: u32, key: &str) {
        if !matches!(self.activity, Activity::Idle) {
            self.session.reject_play(
                stream_id,
                "NetStream.Play.Failed",
                "this connection is already publishing or playing",
            );
            return;
        }
        let request = self.request(key);
        match admission::play(self.node, &self.client, &request).await {
            Ok(playback) => {
                self.session.accept_play(stream_id);
                self.activity = Activity::Playing {
                    stream_id,
                    playback,
                };
            }
            Err(refusal) => {
                let code = match refusal {
                    Refusal::NotFound(_) | Refusal::BadName(_) => "NetStream.Play.StreamNotFound",
                    Refusal::Unauthorized(_) => "NetStream.Play.Unauthorized",
                    _ => "NetStream.Play.Failed",
                };
                self.session
                    .reject_play(stream_id, code, &refusal.to_string());
            }
        }
    }

    fn finish(mut self, outcome: Result<(), Close>) {
        let close = outcome.err().unwrap_or(Close::PeerClosed);
        if let Close::Feed(end) = &close {
            admission::player_dropped(self.node, *end);
        }
        // A player told to stop gets a clean end of stream.
        if let (Close::Feed(_) | Close::Shutdown, Activity::Playing { stream_id, .. }) =
            (&close, &self.activity)
        {
            let stream_id = *stream_id;
            self.session.send_stream_eof(stream_id);
            self.session.send_status(
                stream_id,
                "status",
                "NetStream.Play.Stop",
                &close.to_string(),
            );
            // Best effort: the player may be gone or stuck.
            if let Some(bytes) = self.session.take_output() {
                let _ = self.socket.try_write(&bytes);
            }
        }
        if let Some(reason) = close.metric_reason() {
            self.node
                .metrics
                .connection_errors_total
                .get_or_create(&ReasonLabel { reason })
                .inc();
        }
        let stream = self.role_stream();
        tracing::info!(
            client = self.client.id,
            peer = %self.client.peer,
            stream = %stream,
            reason = %close,
            bytes_in = self.session.bytes_received(),
            "rtmp close"
        );
    }
}
