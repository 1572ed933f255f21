//! The client side, for the load generator (`skein bench`), benchmarks and tests: the RTMP
//! client driver around the sans-IO [`ClientSession`](crate::rtmp::ClientSession), and the
//! percentiles they report, and synthetic media to send.

mod percentiles;
mod rtmp;
pub mod synthetic;

pub use percentiles::Percentiles;
pub use rtmp::{RtmpClient, RtmpUrl};
