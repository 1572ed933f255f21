//! RTMP protocol, sans-IO.
