//! Cuts a stream's frames into LL-HLS segments and parts, named from the stream's own
//! timestamps so that every node names the same media the same way.
//!
//! The naming scheme (see `docs/architecture.md`): the timeline is divided into a grid of
//! `segment_ms`. A segment starts at the first keyframe of a grid cell and its media sequence
//! number is that cell's index, `keyframe_ms / segment_ms`. A segment holds parts, numbered from
//! 0; a part ends at the first lead-track frame (video, or audio for an audio-only stream) that
//! would make it longer than `part_ms`, or at the next segment. Every boundary is a function of
//! the frames' timestamps and order, which the hub and the relay keep identical on every node.
//!
//! A segmenter that starts in the middle of the stream (an edge that began pulling late, a new
//! viewer's first request) cannot know whether a keyframe it sees first was the first of its
//! cell, so it waits for one it knows to be: the first keyframe after a grid line it saw
//! frames on both sides of. A cell without a keyframe (a keyframe interval longer than
//! `segment_ms`) would leave a hole in the numbers; the window then restarts at the new number,
//! so a player's playlist moves forward, never back.

use std::collections::VecDeque;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::codec::{self, AacConfig, AvcConfig};
use super::fmp4::{self, Sample};
use crate::media::MediaKind;

/// How a stream is cut, from the `[hls]` section.
#[derive(Debug, Clone, Copy)]
pub struct SegmenterConfig {
    /// The segment grid in milliseconds.
    pub segment_ms: u32,
    /// The longest part in milliseconds.
    pub part_ms: u32,
    /// Bytes of segments kept at most.
    pub max_window_bytes: usize,
}

/// One LL-HLS part: a movie fragment.
#[derive(Debug, Clone)]
pub struct Part {
    /// The `moof` + `mdat`.
    pub data: Bytes,
    /// Duration in milliseconds.
    pub duration_ms: u32,
    /// Starts with a keyframe.
    pub independent: bool,
}

/// One segment: its parts so far, in order; the segment's bytes are theirs joined.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// The timestamp of its first keyframe in milliseconds.
    pub start_ms: u64,
    /// The finished parts.
    pub parts: Vec<Part>,
    /// No part will be added.
    pub complete: bool,
    /// The id of the init segment this segment needs: from a digest of its bytes.
    pub init: u64,
}

impl Segment {
    /// Duration of its finished parts in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.parts.iter().map(|p| u64::from(p.duration_ms)).sum()
    }

    /// Bytes of its finished parts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }

    /// Whether it has no finished part yet.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// Samples of one track waiting for the part they go into.
#[derive(Default)]
struct TrackQueue {
    /// The latest sample: its duration is known when the next one arrives.
    pending: Option<Sample>,
    /// Samples of the open part.
    ready: Vec<Sample>,
    /// The latest duration seen, used for a sample that ends a part with no successor yet.
    last_duration: u32,
}

impl TrackQueue {
    /// Takes a new sample: the pending one gets its duration and joins the open part.
    fn push(&mut self, sample: Sample) {
        if let Some(mut previous) = self.pending.take() {
            let gap = sample.decode_ms.saturating_sub(previous.decode_ms);
            previous.duration_ms = u32::try_from(gap).unwrap_or(u32::MAX);
            self.last_duration = previous.duration_ms;
            self.ready.push(previous);
        }
        self.pending = Some(sample);
    }

    /// The open part's samples, the pending one included: it lasts until `end_ms` when that is
    /// known (the lead track), else as long as the one before it.
    fn take_all(&mut self, end_ms: Option<u64>) -> Vec<Sample> {
        if let Some(mut last) = self.pending.take() {
            let until_end = end_ms.map(|end| end.saturating_sub(last.decode_ms) as u32);
            last.duration_ms = until_end.unwrap_or(self.last_duration).max(1);
            self.ready.push(last);
        }
        std::mem::take(&mut self.ready)
    }

    fn clear(&mut self) {
        self.pending = None;
        self.ready.clear();
    }
}

/// What the lead track showed of the grid since the (re)start.
#[derive(Default)]
struct GridWatch {
    /// The first lead-frame timestamp seen.
    seen_since: Option<u64>,
    last_keyframe: Option<u64>,
    last_lead: Option<u64>,
    /// Between the last two lead frames, in milliseconds.
    lead_interval: u64,
}

/// Stores a newly read decoder configuration; whether it differs from the one before.
fn replace_config<T: PartialEq>(slot: &mut Option<T>, read: Result<T, codec::CodecError>) -> bool {
    match read {
        Ok(config) => {
            let changed = slot.as_ref() != Some(&config);
            *slot = Some(config);
            changed
        }
        Err(e) => {
            tracing::debug!(error = %e, "sequence header not usable for HLS");
            false
        }
    }
}

/// The parts of the segment being written.
struct OpenPart {
    start_ms: u64,
    independent: bool,
}

/// Turns frames into the window of segments a playlist lists. Sans-IO: frames in, window out.
pub struct Segmenter {
    config: SegmenterConfig,
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    /// The init segment of the current configuration, with its id.
    init: Option<(u64, Bytes)>,
    lead: Option<MediaKind>,
    grid: GridWatch,
    video_queue: TrackQueue,
    audio_queue: TrackQueue,
    open_part: Option<OpenPart>,
    window: VecDeque<Segment>,
    /// The highest media sequence number given out: numbers never go back.
    last_msn: Option<u64>,
}

impl Segmenter {
    /// A segmenter that has seen nothing yet.
    pub fn new(config: SegmenterConfig) -> Self {
        Self {
            config,
            video: None,
            audio: None,
            init: None,
            lead: None,
            grid: GridWatch::default(),
            video_queue: TrackQueue::default(),
            audio_queue: TrackQueue::default(),
            open_part: None,
            window: VecDeque::new(),
            last_msn: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> SegmenterConfig {
        self.config
    }

    /// The segments, oldest first; the last one may be unfinished.
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.window
    }

    /// The init segment with its id, once the first segment started.
    pub fn init(&self) -> Option<&(u64, Bytes)> {
        self.init.as_ref()
    }

    /// Takes one frame (an FLV tag body on the stream's timeline). Returns whether the window
    /// changed (a part or a segment was finished or started).
    pub fn push(&mut self, kind: MediaKind, timestamp: u32, payload: &Bytes, header: bool) -> bool {
        let ms = u64::from(timestamp);
        if header {
            self.take_header(kind, payload);
            return false;
        }
        let Some(sample) = self.sample(kind, ms, payload) else {
            return false;
        };
        let lead = *self.lead.get_or_insert(if self.video.is_some() {
            MediaKind::Video
        } else {
            MediaKind::Audio
        });
        let mut changed = false;
        if kind == lead {
            changed = self.lead_frame(ms, sample.sync);
        }
        if self.open_part.is_some() {
            self.queue(kind).push(sample);
        }
        changed
    }

    fn queue(&mut self, kind: MediaKind) -> &mut TrackQueue {
        match kind {
            MediaKind::Video => &mut self.video_queue,
            _ => &mut self.audio_queue,
        }
    }

    /// A changed decoder configuration restarts the segmenter with a new init segment.
    fn take_header(&mut self, kind: MediaKind, payload: &Bytes) {
        let changed = match kind {
            MediaKind::Video => replace_config(&mut self.video, codec::avc_config(payload)),
            MediaKind::Audio => replace_config(&mut self.audio, codec::aac_config(payload)),
            MediaKind::Metadata => false,
        };
        if changed && self.init.is_some() {
            self.restart();
        }
    }

    /// Starts over after a configuration change: the window goes, the numbers go on.
    fn restart(&mut self) {
        self.init = None;
        self.lead = None;
        self.grid = GridWatch::default();
        self.open_part = None;
        self.video_queue.clear();
        self.audio_queue.clear();
        self.window.clear();
    }

    /// An FLV tag body as an fMP4 sample; `None` for what HLS does not carry.
    fn sample(&self, kind: MediaKind, ms: u64, payload: &Bytes) -> Option<Sample> {
        match kind {
            MediaKind::Video => {
                self.video.as_ref()?;
                // Frame type and codec, AVC packet type 1 (NAL units), composition time.
                let [b, 1, c0, c1, c2, ..] = payload.as_ref() else {
                    return None;
                };
                let cts = i32::from_be_bytes([*c0, *c1, *c2, 0]) >> 8;
                Some(Sample {
                    decode_ms: ms,
                    duration_ms: 0,
                    composition_offset: cts,
                    sync: b >> 4 == 1,
                    data: payload.slice(5..),
                })
            }
            MediaKind::Audio => {
                self.audio.as_ref()?;
                let [b, 1, ..] = payload.as_ref() else {
                    return None;
                };
                (b >> 4 == 10).then(|| Sample {
                    decode_ms: ms,
                    duration_ms: 0,
                    composition_offset: 0,
                    sync: true,
                    data: payload.slice(2..),
                })
            }
            MediaKind::Metadata => None,
        }
    }

    fn cell(&self, ms: u64) -> u64 {
        ms / u64::from(self.config.segment_ms)
    }

    /// Whether a keyframe at `ms` is known to be the first keyframe of its grid cell.
    fn first_keyframe_of_cell(&self, ms: u64) -> bool {
        let cell = self.cell(ms);
        match (self.grid.last_keyframe, self.grid.seen_since) {
            (Some(previous), _) => self.cell(previous) < cell,
            (None, Some(first_seen)) => self.cell(first_seen) < cell,
            (None, None) => ms.is_multiple_of(u64::from(self.config.segment_ms)),
        }
    }

    /// A frame of the lead track: may end the part and the segment before it.
    fn lead_frame(&mut self, ms: u64, keyframe: bool) -> bool {
        let starts_segment = keyframe && self.first_keyframe_of_cell(ms);
        self.grid.seen_since.get_or_insert(ms);
        if keyframe {
            self.grid.last_keyframe = Some(ms);
        }
        let previous = self.grid.last_lead.replace(ms);
        let interval_before = self.grid.lead_interval;
        if let Some(previous) = previous {
            self.grid.lead_interval = ms.saturating_sub(previous);
        }
        // Where the open part ends: at this frame, or, when frames are missing before it and
        // the part would outgrow its target, one usual frame interval after the frame before
        // (the hole is left out of the part, so no part is longer than `part_ms`).
        let part_ms = u64::from(self.config.part_ms);
        let end = match (&self.open_part, previous) {
            (Some(part), Some(previous)) if ms.saturating_sub(part.start_ms) > part_ms => {
                let room = part_ms.saturating_sub(previous - part.start_ms).max(1);
                previous + interval_before.clamp(1, room)
            }
            _ => ms,
        };
        if starts_segment {
            self.finish_part(end);
            if let Some(current) = self.window.back_mut() {
                current.complete = true;
            }
            self.start_segment(ms);
            return true;
        }
        let Some(part) = &self.open_part else {
            return false;
        };
        if end < ms || ms.saturating_sub(part.start_ms) + self.grid.lead_interval > part_ms {
            self.finish_part(end);
            self.open_part = Some(OpenPart {
                start_ms: ms,
                independent: keyframe,
            });
            return true;
        }
        false
    }

    fn start_segment(&mut self, ms: u64) {
        let msn = self.cell(ms);
        let msn = match self.last_msn {
            Some(last) if msn <= last => last + 1,
            _ => msn,
        };
        if self.last_msn.is_some_and(|last| msn > last + 1) {
            tracing::warn!(
                msn,
                "no keyframe within hls.segment_ms: the HLS window restarts"
            );
            self.window.clear();
        }
        self.last_msn = Some(msn);
        let init_id = match &self.init {
            Some((id, _)) => *id,
            None => {
                let init = fmp4::init_segment(self.video.as_ref(), self.audio.as_ref());
                // Named by its content, so a node that started late names it the same way.
                let digest = Sha256::digest(&init);
                let id = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
                self.init = Some((id, init));
                id
            }
        };
        self.window.push_back(Segment {
            msn,
            start_ms: ms,
            parts: Vec::new(),
            complete: false,
            init: init_id,
        });
        self.open_part = Some(OpenPart {
            start_ms: ms,
            independent: true,
        });
        self.trim();
    }

    /// Ends the open part at `end_ms` (the frame that starts the next one).
    fn finish_part(&mut self, end_ms: u64) {
        let Some(part) = self.open_part.take() else {
            return;
        };
        let lead_is_video = self.lead == Some(MediaKind::Video);
        let video = self.video_queue.take_all(Some(end_ms));
        let audio = self
            .audio_queue
            .take_all((!lead_is_video).then_some(end_ms));
        let Some(segment) = self.window.back_mut() else {
            return;
        };
        if video.is_empty() && audio.is_empty() {
            return;
        }
        let sequence = (segment.msn as u32)
            .wrapping_mul(1024)
            .wrapping_add(segment.parts.len() as u32);
        segment.parts.push(Part {
            data: fmp4::fragment(sequence, &video, &audio),
            duration_ms: u32::try_from(end_ms.saturating_sub(part.start_ms)).unwrap_or(u32::MAX),
            independent: part.independent,
        });
        self.trim();
    }

    /// Drops the oldest segments past the byte budget, keeping the last three.
    fn trim(&mut self) {
        let mut bytes: usize = self.window.iter().map(Segment::len).sum();
        while bytes > self.config.max_window_bytes && self.window.len() > 3 {
            if let Some(old) = self.window.pop_front() {
                bytes -= old.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: SegmenterConfig = SegmenterConfig {
        segment_ms: 1000,
        part_ms: 333,
        max_window_bytes: 1 << 20,
    };

    /// An FLV AVC sequence header with a 320x240 SPS, and an AAC one.
    fn headers() -> [(MediaKind, Bytes); 2] {
        let sps = [
            0x67, 0x42, 0xC0, 0x0D, 0xDA, 0x05, 0x07, 0xEC, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00,
            0x40, 0x00, 0x00, 0x0C, 0xA3, 0xC5, 0x0A, 0xA8,
        ];
        let mut video = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xC0, 0x0D, 0xFF, 0xE1, 0, 22];
        video.extend_from_slice(&sps);
        video.extend_from_slice(&[1, 0, 4, 0x68, 0xCE, 0x3C, 0x80]);
        let audio = vec![0xAF, 0, 0x12, 0x10];
        [
            (MediaKind::Video, Bytes::from(video)),
            (MediaKind::Audio, Bytes::from(audio)),
        ]
    }

    /// 25 fps video with a keyframe every `gop` frames and 23 ms audio frames, from 0 ms to
    /// `end_ms`, interleaved by timestamp.
    fn frames(end_ms: u32, gop: u32) -> Vec<(MediaKind, u32, Bytes)> {
        let mut out = Vec::new();
        for n in 0..end_ms / 40 {
            let key = if n % gop == 0 { 0x17 } else { 0x27 };
            let body = vec![key, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, n as u8];
            out.push((MediaKind::Video, n * 40, Bytes::from(body)));
        }
        for n in 0..end_ms / 23 {
            out.push((
                MediaKind::Audio,
                n * 23,
                Bytes::from(vec![0xAF, 1, n as u8]),
            ));
        }
        out.sort_by_key(|(_, ts, _)| *ts);
        out
    }

    fn run(segmenter: &mut Segmenter, frames: &[(MediaKind, u32, Bytes)]) {
        for (kind, payload) in headers() {
            segmenter.push(kind, 0, &payload, true);
        }
        for (kind, ts, payload) in frames {
            segmenter.push(*kind, *ts, payload, false);
        }
    }

    #[test]
    fn segments_start_on_the_grid_and_parts_stay_under_the_target() {
        let mut segmenter = Segmenter::new(CONFIG);
        run(&mut segmenter, &frames(5_000, 25));
        let msns: Vec<u64> = segmenter.segments().iter().map(|s| s.msn).collect();
        assert_eq!(msns, [0, 1, 2, 3, 4]);
        for segment in segmenter.segments().iter().filter(|s| s.complete) {
            assert_eq!(segment.start_ms, segment.msn * 1000);
            assert_eq!(segment.duration_ms(), 1000);
            assert!(segment.parts[0].independent);
            assert!(
                segment
                    .parts
                    .iter()
                    .all(|p| p.duration_ms <= CONFIG.part_ms)
            );
        }
        let (id, init) = segmenter.init().unwrap();
        assert!(segmenter.segments().iter().all(|s| s.init == *id));
        assert_eq!(&init[4..8], b"ftyp");
    }

    #[test]
    fn a_late_start_names_the_same_media_the_same_way() {
        // Keyframes half-way through the grid cells: 500, 1500, ... ms.
        let all: Vec<_> = frames(6_000, 25)
            .into_iter()
            .map(|(kind, ts, payload)| (kind, ts + 500, payload))
            .collect();
        let mut early = Segmenter::new(CONFIG);
        run(&mut early, &all);
        // Joins at the keyframe of 2500 ms, as an edge fed from a GOP cache does.
        let mut late = Segmenter::new(CONFIG);
        let from = all.iter().position(|(_, ts, _)| *ts >= 2_500).unwrap();
        let late_frames: Vec<_> = all[from..]
            .iter()
            .skip_while(|(kind, _, _)| *kind != MediaKind::Video)
            .cloned()
            .collect();
        run(&mut late, &late_frames);
        let late_first = late.segments().front().unwrap().msn;
        // The first keyframe it saw may not have been the first of its cell: it skipped it.
        assert_eq!(late_first, 3);
        assert!(late.segments().iter().filter(|s| s.complete).count() >= 2);
        assert_eq!(late.init(), early.init());
        for segment in late.segments().iter().filter(|s| s.complete) {
            let same = early
                .segments()
                .iter()
                .find(|s| s.msn == segment.msn)
                .unwrap();
            let bytes = |s: &Segment| s.parts.iter().map(|p| p.data.clone()).collect::<Vec<_>>();
            assert_eq!(bytes(segment), bytes(same), "segment {}", segment.msn);
        }
    }

    #[test]
    fn a_missing_frame_makes_no_part_longer_than_the_target() {
        let mut segmenter = Segmenter::new(CONFIG);
        let mut all = frames(4_000, 25);
        // The frames at 960 and 2200 ms never arrive.
        all.retain(|(kind, ts, _)| !(*kind == MediaKind::Video && (*ts == 960 || *ts == 2200)));
        run(&mut segmenter, &all);
        for segment in segmenter.segments() {
            for part in &segment.parts {
                assert!(part.duration_ms <= CONFIG.part_ms, "{segment:?}");
            }
        }
        assert_eq!(segmenter.segments().len(), 4);
    }

    #[test]
    fn a_cell_without_a_keyframe_restarts_the_window_forward() {
        let mut segmenter = Segmenter::new(CONFIG);
        // A keyframe every 2 s with a 1 s grid: cells 1, 3, ... have none.
        run(&mut segmenter, &frames(6_000, 50));
        let msns: Vec<u64> = segmenter.segments().iter().map(|s| s.msn).collect();
        assert_eq!(msns, [4]);
    }
}
