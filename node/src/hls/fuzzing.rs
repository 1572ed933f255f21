//! The entry point of the `hls_segmenter` fuzz target in `node/fuzz`, and the unit test that
//! replays its committed corpus. It must return normally for any input; a panic is a bug.

use bytes::Bytes;

use super::segmenter::{Segmenter, SegmenterConfig};
use crate::media::{FrameFlags, MediaKind};

/// Reads records of `kind (1 byte) | timestamp (4) | length (2) | FLV tag body` and feeds them
/// to a segmenter as a publisher's frames; sequence headers go through the codec parsers.
pub fn segmenter(mut data: &[u8]) {
    let mut segmenter = Segmenter::new(SegmenterConfig {
        segment_ms: 1000,
        part_ms: 333,
        max_window_bytes: 1 << 20,
    });
    while let [kind, t0, t1, t2, t3, l0, l1, rest @ ..] = data {
        let kind = if kind % 2 == 0 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(rest.len());
        let payload = Bytes::copy_from_slice(&rest[..len]);
        data = &rest[len..];
        let flags = FrameFlags::classify(kind, &payload);
        let timestamp = u32::from_be_bytes([*t0, *t1, *t2, *t3]);
        segmenter.push(kind, timestamp, &payload, flags.sequence_header);
        let parts: usize = segmenter.segments().iter().map(|s| s.parts.len()).sum();
        assert!(parts <= 1 << 20, "parts without bound");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fuzz_corpus_replays_cleanly() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/hls_segmenter");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            super::segmenter(&std::fs::read(entry.unwrap().path()).unwrap());
            count += 1;
        }
        assert!(count > 0, "empty corpus");
    }
}
