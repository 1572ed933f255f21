//! HLS and LL-HLS playback: `GET /{app}/{key}.m3u8[?token=...]`, its init segment, segments
//! and parts. Each stream asked for gets one segmenter on this node (a `hls` player through the
//! one admission path, so a node without the stream pulls it once, as for any player); every
//! request then reads the segmenter's window, which holds each part once as `Bytes`. The
//! segmenter stops when no request came for `hls.idle_secs`, and the pull with it.
//!
//! Every request is authorised like a play (the token carried from the playlist URL into the
//! segment URLs), answers with CORS for players on other origins, and with cache headers a CDN
//! honours: segments and parts are immutable, playlists live for a second.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::flv::refusal_response;
use crate::hls::playlist::{self, Reload, Resource};
use crate::hls::{Segment, Segmenter, SegmenterConfig};
use crate::hub::FeedItem;
use crate::server::admission::{self, Playback, StreamRequest};
use crate::server::clients::{ClientGuard, Protocol};
use crate::server::context::Node;

/// The HLS segmenters of this node, by stream name.
#[derive(Default)]
pub struct HlsStreams {
    streams: Mutex<HashMap<String, Arc<HlsStream>>>,
}

/// One stream's segmenter, shared by the requests for it.
struct HlsStream {
    segmenter: Mutex<Segmenter>,
    /// Bumped whenever the window changes; closed when the segmenter stops.
    changes: watch::Receiver<u64>,
    /// Milliseconds since `born` of the latest request.
    last_request_ms: AtomicU64,
    born: Instant,
}

impl HlsStream {
    fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_request_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_request_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }
}

/// Whether `file` names an HLS resource (else the request is an HTTP-FLV play).
pub fn is_hls(file: &str) -> bool {
    playlist::parse_name(file).is_some()
}

/// `GET /{app}/{file}` for a playlist, an init segment, a segment or a part.
pub async fn serve(
    node: Arc<Node>,
    streams: Arc<HlsStreams>,
    peer: std::net::SocketAddr,
    app: &str,
    file: &str,
    query: Option<&str>,
) -> Response {
    let Some((key, resource)) = playlist::parse_name(file) else {
        return text(StatusCode::NOT_FOUND, "not an HLS resource");
    };
    if !node.config.hls.enabled {
        return text(
            StatusCode::NOT_FOUND,
            "HLS is off on this node (hls.enabled)",
        );
    }
    let client = match admission::connect(&node, peer, Protocol::Hls) {
        Ok(client) => client,
        Err(refused) => return text(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string()),
    };
    let (carried, reload) = split_query(query.unwrap_or(""));
    let request = StreamRequest::http(app, key, Some(&carried));
    let name = match admission::authorize_play(&node, &client, &request).await {
        Ok(name) => name,
        Err(refusal) => return with_cors(refusal_response(&refusal)),
    };
    let stream = match stream_for(&node, &streams, &name, &request, &client).await {
        Ok(stream) => stream,
        Err(response) => return with_cors(response),
    };
    stream.touch();
    let response = match resource {
        Resource::Playlist => match reload {
            Ok(reload) => playlist_response(&stream, key, &carried, reload).await,
            Err(why) => text(StatusCode::BAD_REQUEST, why),
        },
        Resource::Init(id) => init_response(&stream, id),
        Resource::Segment(msn) => media_response(&stream, msn, None).await,
        Resource::Part(msn, part) => media_response(&stream, msn, Some(part)).await,
    };
    if let Some(len) = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        client.add_out(len);
    }
    with_cors(response)
}

/// A blocking playlist reload's `_HLS_msn` and `_HLS_part`.
type BlockingReload = (u64, Option<usize>);

/// The query without the blocking-reload parameters (it is carried into every URI of the
/// playlist), and those parameters: `_HLS_msn` and `_HLS_part`.
fn split_query(query: &str) -> (String, Result<Option<BlockingReload>, &'static str>) {
    let (mut carried, mut msn, mut part) = (Vec::new(), None, None);
    let mut bad = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some(v) = pair.strip_prefix("_HLS_msn=") {
            msn = v.parse::<u64>().ok();
            bad |= msn.is_none();
        } else if let Some(v) = pair.strip_prefix("_HLS_part=") {
            part = v.parse::<usize>().ok();
            bad |= part.is_none();
        } else if !pair.starts_with("_HLS_") {
            carried.push(pair);
        }
    }
    let reload = match (msn, part) {
        _ if bad => Err("_HLS_msn and _HLS_part must be numbers"),
        (None, Some(_)) => Err("_HLS_part needs _HLS_msn"),
        (msn, part) => Ok(msn.map(|m| (m, part))),
    };
    (carried.join("&"), reload)
}

/// The stream's segmenter, started (through the admission path) on the first request.
async fn stream_for(
    node: &Arc<Node>,
    streams: &Arc<HlsStreams>,
    name: &str,
    request: &StreamRequest,
    client: &ClientGuard,
) -> Result<Arc<HlsStream>, Response> {
    if let Some(stream) = streams.streams.lock().get(name) {
        return Ok(stream.clone());
    }
    // The segmenter is a player of its own, for as long as requests come.
    let player = admission::connect(node, client.peer, Protocol::Hls)
        .map_err(|refused| text(StatusCode::SERVICE_UNAVAILABLE, &refused.to_string()))?;
    let playback = admission::play(node, &player, request)
        .await
        .map_err(|refusal| refusal_response(&refusal))?;
    let hls = &node.config.hls;
    let (tx, changes) = watch::channel(0);
    let stream = Arc::new(HlsStream {
        segmenter: Mutex::new(Segmenter::new(SegmenterConfig {
            segment_ms: hls.segment_ms,
            part_ms: hls.part_ms,
            max_window_bytes: hls.max_window_bytes,
        })),
        changes,
        last_request_ms: AtomicU64::new(0),
        born: Instant::now(),
    });
    {
        let mut map = streams.streams.lock();
        if let Some(raced) = map.get(name) {
            return Ok(raced.clone()); // another request started it meanwhile
        }
        map.insert(name.to_owned(), stream.clone());
    }
    tracing::info!(stream = %name, "hls segmenter started");
    let run = run_segmenter(
        node.clone(),
        streams.clone(),
        name.to_owned(),
        stream.clone(),
        (player, playback),
        tx,
    );
    node.spawn(run);
    Ok(stream)
}

/// Feeds the stream's frames to its segmenter until no request came for `hls.idle_secs`, the
/// feed ends or the node stops; then the player (and any pull it caused) goes.
async fn run_segmenter(
    node: Arc<Node>,
    streams: Arc<HlsStreams>,
    name: String,
    stream: Arc<HlsStream>,
    (player, mut playback): (ClientGuard, Playback),
    changes: watch::Sender<u64>,
) {
    let idle = Duration::from_secs(node.config.hls.idle_secs);
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let reason = loop {
        let item = tokio::select! {
            _ = player.cancel.cancelled() => break "kicked".to_owned(),
            _ = check.tick() => {
                if stream.idle_for() > idle {
                    break "no request".to_owned();
                }
                continue;
            }
            item = playback.feed.next() => item,
        };
        match item {
            Ok(FeedItem::Frame(frame)) => {
                let header = frame.flags.sequence_header;
                let changed = stream.segmenter.lock().push(
                    frame.kind,
                    frame.timestamp,
                    &frame.payload,
                    header,
                );
                if changed {
                    changes.send_modify(|version| *version += 1);
                }
            }
            Ok(FeedItem::Unpublished | FeedItem::Published) => {}
            Err(end) => {
                admission::player_dropped(&node, end);
                break end.to_string();
            }
        }
    };
    let mut map = streams.streams.lock();
    if map.get(&name).is_some_and(|s| Arc::ptr_eq(s, &stream)) {
        map.remove(&name);
    }
    tracing::info!(stream = %name, %reason, "hls segmenter stopped");
}

/// How long a blocking request waits at most: three target durations (RFC 8216bis 6.2.5.2).
fn block_limit(config: &SegmenterConfig) -> Duration {
    Duration::from_secs(3 * playlist::target_duration_secs(config))
}

/// How long the first playlist request waits for the first whole segment.
const FIRST_SEGMENT_WAIT: Duration = Duration::from_secs(15);

/// Waits until `ready` says so about the window, or `limit` passes, or the segmenter stops.
async fn wait_for<T>(
    stream: &HlsStream,
    limit: Duration,
    mut ready: impl FnMut(&Segmenter) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut changes = stream.changes.clone();
    loop {
        if let Some(found) = ready(&stream.segmenter.lock()) {
            return Some(found);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

fn window(segmenter: &Segmenter) -> Vec<&Segment> {
    segmenter.segments().iter().collect()
}

async fn playlist_response(
    stream: &HlsStream,
    key: &str,
    query: &str,
    reload: Option<BlockingReload>,
) -> Response {
    let config = stream.segmenter.lock().config();
    let render = |s: &Segmenter| playlist::render(&window(s), &config, key, query);
    let rendered = match reload {
        Some((msn, part)) => {
            let mut too_far = false;
            let answer = wait_for(stream, block_limit(&config), |s| {
                match playlist::reload(&window(s), msn, part) {
                    Reload::Ready => Some(render(s)),
                    Reload::TooFar => {
                        too_far = true;
                        Some(String::new())
                    }
                    Reload::Wait => None,
                }
            })
            .await;
            if too_far {
                return text(StatusCode::BAD_REQUEST, "_HLS_msn/_HLS_part too far ahead");
            }
            answer
        }
        None => {
            let wait = FIRST_SEGMENT_WAIT.max(block_limit(&config));
            wait_for(stream, wait, |s| {
                s.segments()
                    .iter()
                    .any(|seg| seg.complete)
                    .then(|| render(s))
            })
            .await
        }
    };
    let Some(body) = rendered else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the stream has no HLS segment ready; try again",
        );
    };
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "public, max-age=1"),
        ],
        body,
    )
        .into_response()
}

fn init_response(stream: &HlsStream, id: u64) -> Response {
    let init = stream.segmenter.lock().init().cloned();
    match init {
        Some((current, bytes)) if current == id => media(bytes.len(), vec![bytes], "video/mp4"),
        _ => text(StatusCode::NOT_FOUND, "no such init segment"),
    }
}

/// A segment or part: waits for it while it is still to come (a preload hint, a blocking
/// player), answers 404 once it left the window.
async fn media_response(stream: &HlsStream, msn: u64, part: Option<usize>) -> Response {
    let config = stream.segmenter.lock().config();
    let found = wait_for(stream, block_limit(&config), |s| {
        let segments = s.segments();
        if segments.front().is_some_and(|first| msn < first.msn) {
            return Some(None);
        }
        if playlist::reload(&window(s), msn, part) == Reload::TooFar {
            return Some(None);
        }
        let segment = segments.iter().find(|seg| seg.msn == msn)?;
        match part {
            Some(p) if p >= segment.parts.len() && segment.complete => Some(None),
            Some(p) => segment.parts.get(p).map(|p| Some(vec![p.data.clone()])),
            None => segment
                .complete
                .then(|| Some(segment.parts.iter().map(|p| p.data.clone()).collect())),
        }
    })
    .await
    .flatten();
    match found {
        Some(chunks) => {
            let len = chunks.iter().map(Bytes::len).sum();
            media(len, chunks, "video/iso.segment")
        }
        None => text(StatusCode::NOT_FOUND, "no such segment or part"),
    }
}

/// An immutable media body made of shared chunks.
fn media(len: usize, chunks: Vec<Bytes>, content_type: &'static str) -> Response {
    let body = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>));
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CACHE_CONTROL,
                "public, max-age=3600, immutable".to_owned(),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{message}\n"),
    )
        .into_response()
}

fn with_cors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reload_parameters_are_split_off_the_carried_query() {
        let (carried, reload) = split_query("token=abc&_HLS_msn=5&_HLS_part=2&x=1");
        assert_eq!(carried, "token=abc&x=1");
        assert_eq!(reload, Ok(Some((5, Some(2)))));
        assert_eq!(split_query("").1, Ok(None));
        assert!(split_query("_HLS_part=1").1.is_err());
        assert!(split_query("_HLS_msn=x").1.is_err());
    }
}
