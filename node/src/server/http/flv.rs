//! HTTP-FLV playback: `GET /{app}/{key}.flv[?token=...]` streams the FLV header, the cached start of the
//! stream and then live tags. Each tag is serialized once per message and shared by all viewers.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::listener::PeerAddr;
use crate::auth::Denial;
use crate::hub::{FeedEnd, FeedItem, Frame};
use crate::media::MediaKind;
use crate::media::flv;
use crate::server::admission::{self, Playback, Refusal, StreamRequest};
use crate::server::clients::{ClientGuard, Protocol};
use crate::server::context::Node;

/// `GET /{app}/{key}.flv`.
pub async fn play(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    Path((app, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(key) = file.strip_suffix(".flv") else {
        return (StatusCode::NOT_FOUND, "not found: play URLs end in .flv\n").into_response();
    };
    let client = match admission::connect(&node, peer.0, Protocol::HttpFlv) {
        Ok(client) => client,
        Err(refused) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{refused}\n")).into_response();
        }
    };
    let request = StreamRequest::http(&app, key, query.as_deref());
    let playback = match admission::play(&node, &client, &request).await {
        Ok(playback) => playback,
        Err(refusal) => return refusal_response(&refusal),
    };
    let viewer = Viewer {
        node,
        client,
        playback,
        preamble: Some(Vec::new()),
        ready: VecDeque::new(),
    };
    let body = futures_util::stream::unfold(viewer, |mut viewer| async move {
        let chunk = viewer.next_chunk().await;
        chunk.map(|c| (c, viewer))
    });
    (
        [
            (header::CONTENT_TYPE, "video/x-flv"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The HTTP answer to a refused play.
pub(super) fn refusal_response(refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::BadName(_) => StatusCode::BAD_REQUEST,
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Taken(_) | Refusal::Draining => StatusCode::SERVICE_UNAVAILABLE,
        // No credentials at all: 401, as HTTP has it; credentials that do not do: 403.
        Refusal::Unauthorized(Denial::Missing(_)) => StatusCode::UNAUTHORIZED,
        Refusal::Unauthorized(_) => StatusCode::FORBIDDEN,
    };
    let mut response = (status, format!("{refusal}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        // HTTP wants a 401 to name the scheme: the token goes in the query.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Token realm=\"stream\", query=\"token\""),
        );
    }
    response
}

/// One HTTP-FLV viewer; dropping it (the connection closed) removes the client.
struct Viewer {
    node: Arc<Node>,
    client: ClientGuard,
    playback: Playback,
    /// Metadata and sequence headers seen before the first media frame. The FLV header's
    /// audio/video flags are only known once they have passed (players such as ffprobe wait for
    /// a track the header announces), so the header is held back until then.
    preamble: Option<Vec<Arc<Frame>>>,
    ready: VecDeque<Bytes>,
}

/// Frames held back at most before the header is sent anyway.
const MAX_PREAMBLE: usize = 8;

impl Viewer {
    /// The next piece of the body, or `None` to end it.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, FeedEnd>> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                self.client.add_out(chunk.len());
                return Some(Ok(chunk));
            }
            let item = tokio::select! {
                _ = self.client.cancel.cancelled() => return None,
                // The body ends cleanly: the viewer sees the end of the stream, not a reset.
                _ = self.node.shutdown.cancelled() => return None,
                item = self.playback.feed.next() => item,
            };
            match item {
                Ok(FeedItem::Frame(frame)) => self.queue(frame),
                Ok(FeedItem::Unpublished | FeedItem::Published) => continue,
                Err(end) => {
                    admission::player_dropped(&self.node, end);
                    tracing::info!(client = self.client.id, peer = %self.client.peer, stream = %self.playback.feed.stream_key(), reason = %end, "http-flv close");
                    return None;
                }
            }
        }
    }

    fn queue(&mut self, frame: Arc<Frame>) {
        let Some(preamble) = self.preamble.as_mut() else {
            self.ready.push_back(frame.flv_tag().clone());
            return;
        };
        let is_preamble = frame.kind == MediaKind::Metadata || frame.flags.sequence_header;
        preamble.push(frame);
        if is_preamble && preamble.len() < MAX_PREAMBLE {
            return;
        }
        let frames = self.preamble.take().unwrap_or_default();
        let has = |kind| frames.iter().any(|f| f.kind == kind);
        self.ready
            .push_back(flv::header(has(MediaKind::Audio), has(MediaKind::Video)));
        self.ready
            .extend(frames.iter().map(|f| f.flv_tag().clone()));
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        tracing::info!(client = self.client.id, peer = %self.client.peer, stream = %self.playback.feed.stream_key(), "http-flv viewer gone");
    }
}
