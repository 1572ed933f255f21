//! HLS for tests: a binary-safe HTTP GET, and a media playlist validator written against the
//! rules of RFC 8216bis (HLS, 2nd edition) that Skein's LL-HLS playlists must follow.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP answer: status, headers (names lower-cased) and body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` over HTTP/1.0; `None` when the server does not answer within 20 s (a blocking
/// playlist reload waits up to three target durations).
pub fn get(addr: SocketAddr, path: &str) -> Option<Answer> {
    let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    write!(socket, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// What `tests/browser/hls-play.mjs` saw: hls.js in headless Chromium playing `url` for
/// `seconds` (low-latency mode unless `plain`): whether the video advanced, by how much, the
/// glass-to-glass latency samples (ms, against the publisher's start `publish_start_ms`,
/// Unix ms) and hls.js errors.
pub fn play_in_browser(
    url: &str,
    seconds: u32,
    publish_start_ms: u128,
    segment_ms: u32,
    plain: bool,
) -> serde_json::Value {
    crate::require("node", "nodejs");
    crate::require("chromium", "chromium");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/hls-play.mjs");
    let mode = if plain { "plain" } else { "low-latency" };
    let out = crate::cluster::run_bounded(
        std::process::Command::new("node").arg(script).args([
            url,
            &seconds.to_string(),
            &publish_start_ms.to_string(),
            &segment_ms.to_string(),
            mode,
        ]),
        Duration::from_secs(u64::from(seconds) + 60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "hls-play.mjs printed no result ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// One partial segment of a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}

/// One media segment of a playlist, with the parts listed before it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    pub msn: u64,
    pub uri: String,
    pub duration: f64,
    pub parts: Vec<PartEntry>,
}

/// A media playlist as the validator read it.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    pub target_duration: u64,
    pub part_target: f64,
    pub media_sequence: u64,
    pub map_uri: String,
    /// Complete segments, in order.
    pub segments: Vec<SegmentEntry>,
    /// The parts of the segment still being written (after the last complete one).
    pub open_parts: Vec<PartEntry>,
    /// The `EXT-X-PRELOAD-HINT` part URI.
    pub preload_hint: Option<String>,
}

impl MediaPlaylist {
    /// The `_HLS_msn`/`_HLS_part` of the next part a blocking reload would ask for.
    pub fn next_part(&self) -> (u64, usize) {
        let open_msn = self.media_sequence + self.segments.len() as u64;
        (open_msn, self.open_parts.len())
    }
}

/// Attributes of a tag: `NAME=value,NAME="quoted, value"`.
fn attributes(list: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            let next = quoted.get(end + 1..).unwrap_or("");
            (
                quoted[..end].to_owned(),
                next.strip_prefix(',').unwrap_or(next),
            )
        } else {
            let (value, next) = after.split_once(',').unwrap_or((after, ""));
            (value.to_owned(), next)
        };
        out.push((name.to_owned(), value));
        rest = next;
    }
    out
}

fn attribute<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Tags a Skein media playlist may carry.
const KNOWN_TAGS: [&str; 12] = [
    "#EXTM3U",
    "#EXT-X-VERSION",
    "#EXT-X-TARGETDURATION",
    "#EXT-X-SERVER-CONTROL",
    "#EXT-X-PART-INF",
    "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-MAP",
    "#EXT-X-PART",
    "#EXTINF",
    "#EXT-X-PRELOAD-HINT",
    "#EXT-X-DISCONTINUITY",
    "#EXT-X-INDEPENDENT-SEGMENTS",
];

/// Float durations in the playlist are written to the millisecond.
const ROUNDING: f64 = 0.0015;

/// Parses and checks a media playlist; `Err` names the first rule broken:
/// - it starts with `#EXTM3U`, carries a version of at least 6 (`EXT-X-MAP` with fMP4), only
///   known tags, one `EXT-X-TARGETDURATION` and `EXT-X-MEDIA-SEQUENCE` before any segment;
/// - no segment's duration, rounded to the nearest integer, exceeds the target duration
///   (RFC 8216bis 4.4.3.1);
/// - with parts: `EXT-X-PART-INF` is present, no part is longer than `PART-TARGET`
///   (4.4.4.9), `EXT-X-SERVER-CONTROL` has `CAN-BLOCK-RELOAD=YES` and a `PART-HOLD-BACK` of at
///   least twice the part target (4.4.3.8), a segment's parts add up to its duration, and
///   the first part of every segment is `INDEPENDENT=YES` (Skein cuts segments at keyframes);
/// - one `EXT-X-PRELOAD-HINT` at most, `TYPE=PART`, last, naming the part after the last
///   one listed (4.4.5.3).
pub fn validate(text: &str) -> Result<MediaPlaylist, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err("the first line is not #EXTM3U".into());
    }
    let (mut version, mut target, mut part_target, mut sequence) = (None, None, None, None);
    let (mut hold_back, mut can_block) = (None, false);
    let mut map_uri = None;
    let mut segments: Vec<SegmentEntry> = Vec::new();
    let mut parts: Vec<PartEntry> = Vec::new();
    let mut pending_duration: Option<f64> = None;
    let mut preload_hint = None;
    for line in lines {
        if preload_hint.is_some() {
            return Err(format!("{line:?} after EXT-X-PRELOAD-HINT"));
        }
        if !line.starts_with('#') {
            let duration = pending_duration
                .take()
                .ok_or_else(|| format!("segment {line:?} without #EXTINF"))?;
            let sequence = sequence.ok_or("a segment before EXT-X-MEDIA-SEQUENCE")?;
            segments.push(SegmentEntry {
                msn: sequence + segments.len() as u64,
                uri: line.to_owned(),
                duration,
                parts: std::mem::take(&mut parts),
            });
            continue;
        }
        let (tag, value) = line.split_once(':').unwrap_or((line, ""));
        if !KNOWN_TAGS.contains(&tag) {
            return Err(format!("unknown tag {tag}"));
        }
        let attrs = attributes(value);
        let number = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{tag}: {v:?} is not a number"))
        };
        match tag {
            "#EXT-X-VERSION" => version = Some(number(value)? as u64),
            "#EXT-X-TARGETDURATION" if target.is_some() => {
                return Err("two EXT-X-TARGETDURATION".into());
            }
            "#EXT-X-TARGETDURATION" => {
                target = Some(value.parse::<u64>().map_err(|_| "bad target")?);
            }
            "#EXT-X-PART-INF" => {
                part_target = Some(number(attribute(&attrs, "PART-TARGET").unwrap_or(""))?)
            }
            "#EXT-X-SERVER-CONTROL" => {
                can_block = attribute(&attrs, "CAN-BLOCK-RELOAD") == Some("YES");
                hold_back = attribute(&attrs, "PART-HOLD-BACK")
                    .map(number)
                    .transpose()?;
            }
            "#EXT-X-MEDIA-SEQUENCE" => {
                if !segments.is_empty() || !parts.is_empty() {
                    return Err("EXT-X-MEDIA-SEQUENCE after a segment".into());
                }
                sequence = Some(value.parse::<u64>().map_err(|_| "bad media sequence")?);
            }
            "#EXT-X-MAP" => {
                map_uri = Some(
                    attribute(&attrs, "URI")
                        .ok_or("EXT-X-MAP without URI")?
                        .into(),
                )
            }
            "#EXTINF" => {
                let duration = number(value.split(',').next().unwrap_or(""))?;
                let limit = target.ok_or("EXTINF before EXT-X-TARGETDURATION")?;
                if duration.round() as u64 > limit {
                    return Err(format!("segment of {duration} s over the target {limit} s"));
                }
                pending_duration = Some(duration);
            }
            "#EXT-X-PART" => {
                let limit = part_target.ok_or("EXT-X-PART without EXT-X-PART-INF")?;
                let duration = number(attribute(&attrs, "DURATION").unwrap_or(""))?;
                if duration > limit + ROUNDING {
                    return Err(format!("part of {duration} s over PART-TARGET {limit} s"));
                }
                parts.push(PartEntry {
                    uri: attribute(&attrs, "URI")
                        .ok_or("EXT-X-PART without URI")?
                        .into(),
                    duration,
                    independent: attribute(&attrs, "INDEPENDENT") == Some("YES"),
                });
            }
            "#EXT-X-PRELOAD-HINT" => {
                if attribute(&attrs, "TYPE") != Some("PART") {
                    return Err("a preload hint that is not TYPE=PART".into());
                }
                preload_hint = Some(attribute(&attrs, "URI").ok_or("hint without URI")?.into());
            }
            _ => {}
        }
    }
    if version.is_none_or(|v| v < 6) {
        return Err("EXT-X-VERSION missing or below 6 (needed for EXT-X-MAP)".into());
    }
    let part_target = part_target.ok_or("no EXT-X-PART-INF")?;
    if !can_block || hold_back.is_none_or(|h| h + ROUNDING < 2.0 * part_target) {
        return Err(
            "EXT-X-SERVER-CONTROL lacks CAN-BLOCK-RELOAD=YES or PART-HOLD-BACK >= 2 part targets"
                .into(),
        );
    }
    for segment in segments.iter().filter(|s| !s.parts.is_empty()) {
        let sum: f64 = segment.parts.iter().map(|p| p.duration).sum();
        if (sum - segment.duration).abs() > ROUNDING * segment.parts.len() as f64 {
            return Err(format!(
                "segment {} lasts {} s, its parts {sum} s",
                segment.msn, segment.duration
            ));
        }
    }
    let all_parts = segments
        .iter()
        .map(|s| s.parts.as_slice())
        .chain([parts.as_slice()]);
    if let Some(first) = all_parts.filter_map(|p| p.first()).find(|p| !p.independent) {
        return Err(format!(
            "part {} starts a segment but is not INDEPENDENT",
            first.uri
        ));
    }
    Ok(MediaPlaylist {
        target_duration: target.ok_or("no EXT-X-TARGETDURATION")?,
        part_target,
        media_sequence: sequence.ok_or("no EXT-X-MEDIA-SEQUENCE")?,
        map_uri: map_uri.ok_or("no EXT-X-MAP")?,
        segments,
        open_parts: parts,
        preload_hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.999\n\
        #EXT-X-PART-INF:PART-TARGET=0.333\n#EXT-X-MEDIA-SEQUENCE:3\n\
        #EXT-X-MAP:URI=\"cam-init3.mp4\"\n\
        #EXT-X-PART:DURATION=0.320,URI=\"cam-s3p0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.320,URI=\"cam-s3p1.m4s\"\n#EXTINF:0.640,\ncam-s3.m4s\n\
        #EXT-X-PART:DURATION=0.320,URI=\"cam-s4p0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-s4p1.m4s\"\n";

    #[test]
    fn the_validator_accepts_a_good_playlist_and_names_broken_rules() {
        let playlist = validate(GOOD).unwrap();
        assert_eq!(playlist.segments[0].msn, 3);
        assert_eq!(playlist.next_part(), (4, 1));
        let broken = [
            GOOD.replace("#EXTM3U\n", ""),
            GOOD.replace("#EXTINF:0.640", "#EXTINF:2.600"),
            GOOD.replace(
                "DURATION=0.320,URI=\"cam-s3p1",
                "DURATION=0.400,URI=\"cam-s3p1",
            ),
            GOOD.replace(",INDEPENDENT=YES\n#EXT-X-PRELOAD", "\n#EXT-X-PRELOAD"),
            GOOD.replace("PART-HOLD-BACK=0.999", "PART-HOLD-BACK=0.5"),
            GOOD.replace("#EXT-X-VERSION:9", "#EXT-X-VERSION:3"),
            GOOD.replace("TYPE=PART", "TYPE=MAP"),
            format!("{GOOD}cam-s5.m4s\n"),
            GOOD.replace("#EXT-X-MEDIA-SEQUENCE:3", "#EXT-X-BOGUS:3"),
        ];
        for text in broken {
            assert!(validate(&text).is_err(), "accepted:\n{text}");
        }
    }
}
