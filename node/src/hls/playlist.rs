//! The LL-HLS media playlist (RFC 8216bis) of a segmenter's window, the names of its resources,
//! and when a blocking playlist reload may be answered. Pure functions; hand-written because
//! no maintained crate writes LL-HLS playlists (parts, preload hints, server control).

use std::fmt::Write as _;

use super::segmenter::{Segment, SegmenterConfig};

/// What a request under `/{app}/` names, from its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `{key}.m3u8`: the media playlist.
    Playlist,
    /// `{key}-init{id}.mp4`: an init segment.
    Init(u64),
    /// `{key}-s{msn}.m4s`: a whole segment.
    Segment(u64),
    /// `{key}-s{msn}p{part}.m4s`: one part.
    Part(u64, usize),
}

/// Splits a file name into the stream key and the resource, or `None` if it is not HLS.
pub fn parse_name(file: &str) -> Option<(&str, Resource)> {
    if let Some(key) = file.strip_suffix(".m3u8") {
        return Some((key, Resource::Playlist));
    }
    if let Some(rest) = file.strip_suffix(".mp4") {
        let (key, id) = rest.rsplit_once("-init")?;
        return Some((key, Resource::Init(number(id)?)));
    }
    let rest = file.strip_suffix(".m4s")?;
    let (key, name) = rest.rsplit_once("-s")?;
    Some(match name.split_once('p') {
        Some((msn, part)) => (key, Resource::Part(number(msn)?, number(part)? as usize)),
        None => (key, Resource::Segment(number(name)?)),
    })
}

fn number(digits: &str) -> Option<u64> {
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The longest segment the playlist announces, in whole seconds: a segment spans its grid cell
/// plus up to one keyframe interval (at most another cell) after it.
pub fn target_duration_secs(config: &SegmenterConfig) -> u64 {
    (2 * u64::from(config.segment_ms)).div_ceil(1000)
}

/// Segments older than this many target durations from the end list no parts (RFC 8216bis
/// section 4.4.4.9).
const PART_LISTED_TARGETS: u64 = 3;

/// The media playlist of `segments`. `key` names the resources; `query` (the token and other
/// parameters of the playlist request, without the blocking-reload ones) is carried into every
/// URI so that the same access policy applies to them.
pub fn render(segments: &[&Segment], config: &SegmenterConfig, key: &str, query: &str) -> String {
    let suffix = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    let target = target_duration_secs(config);
    let part_target = f64::from(config.part_ms) / 1000.0;
    let mut out = String::with_capacity(256 + segments.len() * 160);
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:9");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
        part_target * 3.0
    );
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
    let Some(first) = segments.first() else {
        return out;
    };
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", first.msn);
    let total_ms: u64 = segments.iter().map(|s| s.duration_ms()).sum();
    let parts_from_ms = total_ms.saturating_sub(PART_LISTED_TARGETS * target * 1000);
    let mut elapsed_ms = 0;
    let mut init = None;
    for segment in segments {
        if init != Some(segment.init) {
            if init.is_some() {
                let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
            }
            init = Some(segment.init);
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{key}-init{}.mp4{suffix}\"",
                segment.init
            );
        }
        let duration_ms = segment.duration_ms();
        if elapsed_ms + duration_ms > parts_from_ms || !segment.complete {
            for (index, part) in segment.parts.iter().enumerate() {
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={:.3},URI=\"{key}-s{}p{index}.m4s{suffix}\"",
                    f64::from(part.duration_ms) / 1000.0,
                    segment.msn
                );
                let _ = writeln!(
                    out,
                    "{}",
                    if part.independent {
                        ",INDEPENDENT=YES"
                    } else {
                        ""
                    }
                );
            }
        }
        elapsed_ms += duration_ms;
        if segment.complete {
            let _ = writeln!(out, "#EXTINF:{:.3},", duration_ms as f64 / 1000.0);
            let _ = writeln!(out, "{key}-s{}.m4s{suffix}", segment.msn);
        } else {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{key}-s{}p{}.m4s{suffix}\"",
                segment.msn,
                segment.parts.len()
            );
        }
    }
    out
}

/// A blocking playlist reload's answer (RFC 8216bis section 6.2.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The playlist holds what was asked for: answer now.
    Ready,
    /// Not yet: wait for the window to change.
    Wait,
    /// Asked too far ahead: answer 400 at once.
    TooFar,
}

/// How many parts ahead of the last one a request may ask for before it is refused.
const ADVANCE_PART_LIMIT: usize = 3;

/// Whether a playlist with `segments` answers a request for `_HLS_msn=msn` (and
/// `_HLS_part=part`): it does once it holds that part, or that whole segment when no part is
/// named, or anything later.
pub fn reload(segments: &[&Segment], msn: u64, part: Option<usize>) -> Reload {
    let Some(last) = segments.last() else {
        return Reload::Wait;
    };
    if msn > last.msn + 2 {
        return Reload::TooFar;
    }
    if msn < last.msn {
        return Reload::Ready;
    }
    if msn > last.msn {
        // The segment after the open one: at most the parts it may have by then.
        let ahead = part.unwrap_or(0) + (msn - last.msn) as usize;
        return if ahead > ADVANCE_PART_LIMIT + 1 && !last.complete {
            Reload::TooFar
        } else {
            Reload::Wait
        };
    }
    match part {
        _ if last.complete => Reload::Ready,
        None => Reload::Wait,
        Some(p) if p < last.parts.len() => Reload::Ready,
        Some(p) if p >= last.parts.len() + ADVANCE_PART_LIMIT => Reload::TooFar,
        Some(_) => Reload::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::segmenter::Part;
    use bytes::Bytes;

    fn segment(msn: u64, parts: usize, complete: bool) -> Segment {
        let part = Part {
            data: Bytes::from_static(b"x"),
            duration_ms: 320,
            independent: false,
        };
        Segment {
            msn,
            start_ms: msn * 1000,
            parts: vec![part; parts],
            complete,
            init: 4,
        }
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(parse_name("cam.m3u8"), Some(("cam", Resource::Playlist)));
        assert_eq!(
            parse_name("cam-init4.mp4"),
            Some(("cam", Resource::Init(4)))
        );
        assert_eq!(
            parse_name("a-s1-s12.m4s"),
            Some(("a-s1", Resource::Segment(12)))
        );
        assert_eq!(
            parse_name("cam-s12p3.m4s"),
            Some(("cam", Resource::Part(12, 3)))
        );
        assert_eq!(parse_name("cam.flv"), None);
        assert_eq!(parse_name("cam-s.m4s"), None);
        assert_eq!(parse_name("cam-s1p.m4s"), None);
        assert_eq!(parse_name("cam-s+1.m4s"), None);
    }

    #[test]
    fn blocking_reload_waits_for_the_named_part() {
        let (a, b) = (segment(5, 3, true), segment(6, 1, false));
        let window = [&a, &b];
        assert_eq!(reload(&window, 5, None), Reload::Ready);
        assert_eq!(reload(&window, 6, Some(0)), Reload::Ready);
        assert_eq!(reload(&window, 6, Some(1)), Reload::Wait);
        assert_eq!(reload(&window, 6, None), Reload::Wait);
        assert_eq!(reload(&window, 7, Some(0)), Reload::Wait);
        assert_eq!(reload(&window, 6, Some(9)), Reload::TooFar);
        assert_eq!(reload(&window, 9, None), Reload::TooFar);
        assert_eq!(reload(&[], 1, None), Reload::Wait);
    }

    #[test]
    fn the_playlist_lists_parts_and_a_preload_hint() {
        let (a, b) = (segment(5, 3, true), segment(6, 1, false));
        let config = SegmenterConfig {
            segment_ms: 1000,
            part_ms: 333,
            max_window_bytes: 1 << 20,
        };
        let text = render(&[&a, &b], &config, "cam", "token=t");
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:5\n"));
        assert!(text.contains("#EXT-X-MAP:URI=\"cam-init4.mp4?token=t\"\n"));
        assert!(text.contains("#EXTINF:0.960,\ncam-s5.m4s?token=t\n"));
        assert!(text.contains("#EXT-X-PART:DURATION=0.320,URI=\"cam-s6p0.m4s?token=t\"\n"));
        assert!(text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam-s6p1.m4s?token=t\"\n"));
    }
}
