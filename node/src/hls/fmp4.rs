//! Fragmented MP4 (CMAF) boxes for HLS: the init segment (`ftyp` + `moov` with one H.264 and/or
//! one AAC track) and movie fragments (`moof` + `mdat`), one per LL-HLS part. Both tracks use a
//! millisecond timescale, so a fragment's decode times are the stream's own timestamps.
//!
//! Written by hand: only twenty-odd box types are ever written and none is read, every field is
//! fixed by the CMAF profile, and the output must be a pure function of the frames so that
//! every node writes the same bytes (see `docs/architecture.md` for the crates considered).

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{AacConfig, AvcConfig};

/// The timescale of both tracks: milliseconds, the unit of FLV timestamps.
pub const TIMESCALE: u32 = 1000;
/// Track id of the video track.
pub const VIDEO_TRACK: u32 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK: u32 = 2;

/// One access unit of a track, its payload shared with the hub's frame.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Decode time in milliseconds.
    pub decode_ms: u64,
    /// Duration in milliseconds.
    pub duration_ms: u32,
    /// Presentation minus decode time in milliseconds (H.264 B-frames).
    pub composition_offset: i32,
    /// A sync sample (video keyframe; every AAC frame).
    pub sync: bool,
    /// The sample bytes: length-prefixed NAL units or one raw AAC frame.
    pub data: Bytes,
}

/// Writes a box: its size, its type, then what `body` writes.
fn write_box(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Writes a full box: a box whose body starts with a version and 24 bits of flags.
fn write_full_box(
    out: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    write_box(out, kind, |out| {
        out.put_u32((u32::from(version) << 24) | flags);
        body(out);
    });
}

const UNITY_MATRIX: [u32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];

/// The init segment for the tracks present.
pub fn init_segment(video: Option<&AvcConfig>, audio: Option<&AacConfig>) -> Bytes {
    let mut out = BytesMut::with_capacity(1024);
    write_box(&mut out, b"ftyp", |out| {
        out.put_slice(b"iso6");
        out.put_u32(0);
        for brand in [b"iso6", b"cmfc", b"mp41"] {
            out.put_slice(brand);
        }
    });
    write_box(&mut out, b"moov", |out| {
        write_full_box(out, b"mvhd", 0, 0, |out| {
            out.put_u64(0); // creation and modification time
            out.put_u32(TIMESCALE);
            out.put_u32(0); // duration: unknown, live
            out.put_u32(0x0001_0000); // rate 1.0
            out.put_u16(0x0100); // volume 1.0
            out.put_bytes(0, 10);
            UNITY_MATRIX.iter().for_each(|v| out.put_u32(*v));
            out.put_bytes(0, 24);
            out.put_u32(AUDIO_TRACK + 1);
        });
        if let Some(video) = video {
            write_track(out, VIDEO_TRACK, Track::Video(video));
        }
        if let Some(audio) = audio {
            write_track(out, AUDIO_TRACK, Track::Audio(audio));
        }
        write_box(out, b"mvex", |out| {
            let ids = [
                (video.is_some(), VIDEO_TRACK),
                (audio.is_some(), AUDIO_TRACK),
            ];
            for (_, id) in ids.iter().filter(|(present, _)| *present) {
                write_full_box(out, b"trex", 0, 0, |out| {
                    out.put_u32(*id);
                    out.put_u32(1); // sample description index
                    out.put_bytes(0, 12); // default duration, size, flags
                });
            }
        });
    });
    out.freeze()
}

enum Track<'a> {
    Video(&'a AvcConfig),
    Audio(&'a AacConfig),
}

fn write_track(out: &mut BytesMut, id: u32, track: Track) {
    let (width, height) = match &track {
        Track::Video(v) => (u32::from(v.width), u32::from(v.height)),
        Track::Audio(_) => (0, 0),
    };
    let is_audio = matches!(track, Track::Audio(_));
    write_box(out, b"trak", |out| {
        // Flags: enabled, in movie.
        write_full_box(out, b"tkhd", 0, 3, |out| {
            out.put_u64(0);
            out.put_u32(id);
            out.put_u32(0);
            out.put_u32(0); // duration
            out.put_bytes(0, 8);
            out.put_u16(0); // layer
            out.put_u16(0); // alternate group
            out.put_u16(if is_audio { 0x0100 } else { 0 });
            out.put_u16(0);
            UNITY_MATRIX.iter().for_each(|v| out.put_u32(*v));
            out.put_u32(width << 16);
            out.put_u32(height << 16);
        });
        write_box(out, b"mdia", |out| {
            write_full_box(out, b"mdhd", 0, 0, |out| {
                out.put_u64(0);
                out.put_u32(TIMESCALE);
                out.put_u32(0);
                out.put_u16(0x55C4); // language "und"
                out.put_u16(0);
            });
            write_full_box(out, b"hdlr", 0, 0, |out| {
                out.put_u32(0);
                out.put_slice(if is_audio { b"soun" } else { b"vide" });
                out.put_bytes(0, 12);
                out.put_slice(if is_audio { b"Audio\0" } else { b"Video\0" });
            });
            write_box(out, b"minf", |out| {
                if is_audio {
                    write_full_box(out, b"smhd", 0, 0, |out| out.put_u32(0));
                } else {
                    write_full_box(out, b"vmhd", 0, 1, |out| out.put_u64(0));
                }
                write_box(out, b"dinf", |out| {
                    write_full_box(out, b"dref", 0, 0, |out| {
                        out.put_u32(1);
                        write_full_box(out, b"url ", 0, 1, |_| {});
                    });
                });
                write_box(out, b"stbl", |out| {
                    write_full_box(out, b"stsd", 0, 0, |out| {
                        out.put_u32(1);
                        match track {
                            Track::Video(v) => write_avc1(out, v),
                            Track::Audio(a) => write_mp4a(out, a),
                        }
                    });
                    for kind in [b"stts", b"stsc", b"stco"] {
                        write_full_box(out, kind, 0, 0, |out| out.put_u32(0));
                    }
                    write_full_box(out, b"stsz", 0, 0, |out| out.put_u64(0));
                });
            });
        });
    });
}

fn write_avc1(out: &mut BytesMut, video: &AvcConfig) {
    write_box(out, b"avc1", |out| {
        out.put_bytes(0, 6);
        out.put_u16(1); // data reference index
        out.put_bytes(0, 16);
        out.put_u16(video.width);
        out.put_u16(video.height);
        out.put_u32(0x0048_0000); // 72 dpi
        out.put_u32(0x0048_0000);
        out.put_u32(0);
        out.put_u16(1); // frame count
        out.put_bytes(0, 32); // compressor name
        out.put_u16(0x0018); // depth
        out.put_i16(-1);
        write_box(out, b"avcC", |out| out.put_slice(&video.record));
    });
}

fn write_mp4a(out: &mut BytesMut, audio: &AacConfig) {
    write_box(out, b"mp4a", |out| {
        out.put_bytes(0, 6);
        out.put_u16(1);
        out.put_bytes(0, 8);
        out.put_u16(u16::from(audio.channels));
        out.put_u16(16); // sample size
        out.put_u32(0);
        // 16.16 fixed point; rates above 65535 Hz do not fit and are taken from the config.
        out.put_u32(if audio.sample_rate <= 0xFFFF {
            audio.sample_rate << 16
        } else {
            0
        });
        write_full_box(out, b"esds", 0, 0, |out| {
            let specific = &audio.specific;
            write_descriptor(out, 0x03, 3 + 5 + 13 + 5 + specific.len() + 5 + 1, |out| {
                out.put_u16(0); // ES id
                out.put_u8(0);
                write_descriptor(out, 0x04, 13 + 5 + specific.len(), |out| {
                    out.put_u8(0x40); // MPEG-4 audio
                    out.put_u8(0x15); // audio stream
                    out.put_bytes(0, 3); // buffer size
                    out.put_u32(0); // max bit rate
                    out.put_u32(0); // average bit rate
                    write_descriptor(out, 0x05, specific.len(), |out| out.put_slice(specific));
                });
                write_descriptor(out, 0x06, 1, |out| out.put_u8(0x02));
            });
        });
    });
}

/// An MPEG-4 descriptor, its length in the four-byte expandable form.
fn write_descriptor(out: &mut BytesMut, tag: u8, len: usize, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let len = len as u32;
    out.put_u8(0x80 | ((len >> 21) & 0x7F) as u8);
    out.put_u8(0x80 | ((len >> 14) & 0x7F) as u8);
    out.put_u8(0x80 | ((len >> 7) & 0x7F) as u8);
    out.put_u8((len & 0x7F) as u8);
    body(out);
}

/// Sample flags of a sync sample: depends on no other.
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample: depends on others, not a sync sample.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// One movie fragment (`moof` + `mdat`) holding `video` then `audio` samples.
pub fn fragment(sequence: u32, video: &[Sample], audio: &[Sample]) -> Bytes {
    let tracks: Vec<(u32, &[Sample])> = [(VIDEO_TRACK, video), (AUDIO_TRACK, audio)]
        .into_iter()
        .filter(|(_, samples)| !samples.is_empty())
        .collect();
    let data_len: usize = tracks
        .iter()
        .flat_map(|(_, s)| s.iter())
        .map(|s| s.data.len())
        .sum();
    let moof_len = moof(sequence, &tracks, 0).len();
    let moof = moof(sequence, &tracks, moof_len);
    let mut out = BytesMut::with_capacity(moof.len() + 8 + data_len);
    out.put_slice(&moof);
    out.put_u32((8 + data_len) as u32);
    out.put_slice(b"mdat");
    for sample in tracks.iter().flat_map(|(_, s)| s.iter()) {
        out.put_slice(&sample.data);
    }
    out.freeze()
}

/// The `moof`; `moof_len` is its own final length (0 on the first, measuring pass), from which
/// each track's data offset into the `mdat` is counted.
fn moof(sequence: u32, tracks: &[(u32, &[Sample])], moof_len: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(256);
    write_box(&mut out, b"moof", |out| {
        write_full_box(out, b"mfhd", 0, 0, |out| out.put_u32(sequence));
        let mut offset = moof_len + 8;
        for (id, samples) in tracks {
            write_box(out, b"traf", |out| {
                // Flags: default-base-is-moof.
                write_full_box(out, b"tfhd", 0, 0x02_0000, |out| out.put_u32(*id));
                write_full_box(out, b"tfdt", 1, 0, |out| out.put_u64(samples[0].decode_ms));
                let with_offsets = *id == VIDEO_TRACK;
                // Flags: data offset, sample duration, size, flags (+ composition offsets).
                let flags = 0x01 | 0x100 | 0x200 | 0x400 | if with_offsets { 0x800 } else { 0 };
                write_full_box(out, b"trun", 1, flags, |out| {
                    out.put_u32(samples.len() as u32);
                    out.put_i32(offset as i32);
                    for sample in *samples {
                        out.put_u32(sample.duration_ms);
                        out.put_u32(sample.data.len() as u32);
                        out.put_u32(if sample.sync {
                            SYNC_SAMPLE
                        } else {
                            NON_SYNC_SAMPLE
                        });
                        if with_offsets {
                            out.put_i32(sample.composition_offset);
                        }
                    }
                });
            });
            offset += samples.iter().map(|s| s.data.len()).sum::<usize>();
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(mut data: &[u8]) -> Vec<(String, usize)> {
        let mut found = Vec::new();
        while data.len() >= 8 {
            let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
            found.push((String::from_utf8_lossy(&data[4..8]).into_owned(), size));
            data = &data[size..];
        }
        found
    }

    #[test]
    fn a_fragment_is_a_moof_and_an_mdat_whose_offsets_point_at_the_samples() {
        let sample = |ms, data: &'static [u8]| Sample {
            decode_ms: ms,
            duration_ms: 40,
            composition_offset: 0,
            sync: ms == 0,
            data: Bytes::from_static(data),
        };
        let video = [sample(0, b"key"), sample(40, b"delta")];
        let audio = [sample(0, b"aac")];
        let out = fragment(7, &video, &audio);
        let top = boxes(&out);
        assert_eq!(top[0].0, "moof");
        assert_eq!(top[1], ("mdat".into(), 8 + 11));
        assert_eq!(top[0].1 + top[1].1, out.len());
        let moof_len = top[0].1;
        // The first trun's data offset points at the first video byte.
        let trun = out.windows(4).position(|w| w == b"trun").unwrap();
        let offset = i32::from_be_bytes(out[trun + 12..trun + 16].try_into().unwrap());
        assert_eq!(offset as usize, moof_len + 8);
        assert_eq!(&out[moof_len + 8..moof_len + 11], b"key");
    }
}
