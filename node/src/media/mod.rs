//! What a stream is made of, independent of any protocol session: the kinds of media message,
//! what a tag body says about itself ([`tag`]), the FLV container ([`flv`]) and what the API
//! shows of a stream's codecs ([`info`]).

pub mod flv;
pub mod info;
pub mod tag;

pub use info::MediaInfo;
pub use tag::FrameFlags;

/// What a media message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// An FLV audio tag body.
    Audio,
    /// An FLV video tag body.
    Video,
    /// `onMetaData` script data, as an AMF0 data message body.
    Metadata,
}
