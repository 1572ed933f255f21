//! What a publish or a play needs: nothing (`open`), a valid token (`token`) or the hook
//! server's yes (`hook`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a client wants to do with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Send the stream.
    Publish,
    /// Receive the stream (RTMP or HTTP-FLV).
    Play,
}

impl Action {
    /// `publish` or `play`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an action on an app is authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Anyone may.
    Open,
    /// A token signed by one of the cluster's (or the node's) stream keys is required.
    Token,
    /// The `on_publish` / `on_play` hook decides.
    Hook,
}
