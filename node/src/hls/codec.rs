//! The decoder configurations an fMP4 init segment needs, read from the FLV sequence headers:
//! the H.264 `AVCDecoderConfigurationRecord` (kept as sent, plus the picture size from its first
//! SPS) and the AAC `AudioSpecificConfig` (kept as sent, plus sample rate and channels). These
//! parse bytes a publisher sent, so every read is bounded and fails with [`CodecError`].

use bytes::Bytes;

/// Why a sequence header cannot be used for HLS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The sequence header is not H.264 or AAC in the classic FLV layout.
    #[error("codec not supported for HLS (H.264 and AAC only)")]
    Unsupported,
    /// The configuration record ends early or holds impossible values.
    #[error("malformed {0} configuration")]
    Malformed(&'static str),
}

/// An H.264 track's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// The `AVCDecoderConfigurationRecord`, the body of the `avcC` box.
    pub record: Bytes,
    /// Picture width in pixels, from the SPS.
    pub width: u16,
    /// Picture height in pixels, from the SPS.
    pub height: u16,
    /// The RFC 6381 codec string, `avc1.PPCCLL`.
    pub codec: String,
}

/// An AAC track's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The `AudioSpecificConfig`, carried in the `esds` box.
    pub specific: Bytes,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u8,
    /// The RFC 6381 codec string, `mp4a.40.N`.
    pub codec: String,
}

const FLV_CODEC_AVC: u8 = 7;
const FLV_AUDIO_AAC: u8 = 10;

/// Reads an FLV video sequence header (`0x17 0x00 cts cts cts record...`).
pub fn avc_config(tag_body: &Bytes) -> Result<AvcConfig, CodecError> {
    match tag_body.as_ref() {
        [b, 0, _, _, _, ..] if b & 0x80 == 0 && b & 0x0F == FLV_CODEC_AVC => {}
        _ => return Err(CodecError::Unsupported),
    }
    let record = tag_body.slice(5..);
    let bad = CodecError::Malformed("H.264");
    if record.len() < 8 || record[0] != 1 || record[5] & 0x1F == 0 {
        return Err(bad);
    }
    let sps_len = usize::from(u16::from_be_bytes([record[6], record[7]]));
    let sps = record.get(8..8 + sps_len).ok_or(bad.clone())?;
    let (width, height) = sps_picture_size(sps).ok_or(bad)?;
    let codec = format!("avc1.{:02x}{:02x}{:02x}", record[1], record[2], record[3]);
    Ok(AvcConfig {
        record,
        width,
        height,
        codec,
    })
}

/// Reads an FLV AAC sequence header (`0xAF 0x00 AudioSpecificConfig`).
pub fn aac_config(tag_body: &Bytes) -> Result<AacConfig, CodecError> {
    match tag_body.as_ref() {
        [b, 0, ..] if b >> 4 == FLV_AUDIO_AAC => {}
        _ => return Err(CodecError::Unsupported),
    }
    let specific = tag_body.slice(2..);
    let bad = CodecError::Malformed("AAC");
    let [a, b, ..] = specific.as_ref() else {
        return Err(bad);
    };
    let object_type = a >> 3;
    let frequency_index = ((a & 0x07) << 1) | (b >> 7);
    let channels = (b >> 3) & 0x0F;
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let sample_rate = *RATES.get(usize::from(frequency_index)).ok_or(bad.clone())?;
    if object_type == 0 || channels == 0 {
        return Err(bad);
    }
    Ok(AacConfig {
        specific,
        sample_rate,
        channels,
        codec: format!("mp4a.40.{object_type}"),
    })
}

/// Reads exp-Golomb coded fields from an RBSP (emulation prevention bytes removed).
struct BitReader {
    bytes: Vec<u8>,
    bit: usize,
}

impl BitReader {
    fn new(nal: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            bytes.push(b);
        }
        Self { bytes, bit: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = self.bytes.get(self.bit / 8)?;
        let value = (byte >> (7 - self.bit % 8)) & 1;
        self.bit += 1;
        Some(u32::from(value))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some((acc << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i64> {
        let v = i64::from(self.ue()?);
        Some(if v % 2 == 1 { (v + 1) / 2 } else { -(v / 2) })
    }
}

/// The cropped picture size an H.264 SPS NAL unit (header byte included) describes.
fn sps_picture_size(sps: &[u8]) -> Option<(u16, u16)> {
    let mut r = BitReader::new(sps.get(1..)?);
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format == 3 && r.bit()? == 1 {
            chroma_format = 0; // separate colour planes: cropped like monochrome
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let field_factor = 2 - frame_mbs_only;
    let (crop_x, crop_y) = match chroma_format {
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (left.checked_add(right)?))?;
    let height =
        (field_factor * height_units * 16).checked_sub(crop_y * (top.checked_add(bottom)?))?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

fn skip_scaling_list(r: &mut BitReader, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x264's SPS for 320x240 Constrained Baseline, as the tests' ffmpeg publishes.
    const SPS_320X240: [u8; 22] = [
        0x67, 0x42, 0xC0, 0x0D, 0xDA, 0x05, 0x07, 0xEC, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
        0x00, 0x00, 0x0C, 0xA3, 0xC5, 0x0A, 0xA8,
    ];
    /// x264's SPS for 1920x1080 High: 1088 coded lines, cropped.
    const SPS_1080P: [u8; 27] = [
        0x67, 0x64, 0x00, 0x28, 0xAC, 0xD9, 0x40, 0x78, 0x02, 0x27, 0xE5, 0xC0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xC8, 0x3C, 0x60, 0xC6, 0x58,
    ];

    fn avc_header(sps: &[u8]) -> Bytes {
        let mut body = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
        body.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        body.extend_from_slice(sps);
        body.extend_from_slice(&[1, 0, 4, 0x68, 0xEB, 0xE3, 0xCB]);
        Bytes::from(body)
    }

    #[test]
    fn the_picture_size_and_codec_come_from_the_sps() {
        let config = avc_config(&avc_header(&SPS_320X240)).unwrap();
        assert_eq!((config.width, config.height), (320, 240));
        assert_eq!(config.codec, "avc1.42c00d");
        let config = avc_config(&avc_header(&SPS_1080P)).unwrap();
        assert_eq!((config.width, config.height), (1920, 1080));
        assert_eq!(config.codec, "avc1.640028");
        assert_eq!(config.record[0], 1);
    }

    #[test]
    fn aac_rate_and_channels() {
        let config = aac_config(&Bytes::from_static(&[0xAF, 0, 0x12, 0x10])).unwrap();
        assert_eq!((config.sample_rate, config.channels), (44100, 2));
        assert_eq!(config.codec, "mp4a.40.2");
    }

    #[test]
    fn bad_headers_are_errors() {
        let hevc = Bytes::from_static(&[0x1C, 0, 0, 0, 0, 1]);
        assert_eq!(avc_config(&hevc), Err(CodecError::Unsupported));
        let short = avc_header(&SPS_320X240).slice(..12);
        assert_eq!(avc_config(&short), Err(CodecError::Malformed("H.264")));
        let truncated_sps = avc_header(&SPS_320X240[..6]);
        assert!(avc_config(&truncated_sps).is_err());
        assert!(aac_config(&Bytes::from_static(&[0xAF, 0, 0x7F])).is_err());
        assert!(aac_config(&Bytes::from_static(&[0xAF, 0, 0x17, 0x90])).is_err());
        assert_eq!(
            aac_config(&Bytes::from_static(&[0x2F, 0, 1, 2])),
            Err(CodecError::Unsupported)
        );
    }
}
