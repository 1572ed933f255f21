//! Who may publish and play, sans-IO: signed stream tokens ([`token`]), the signing keys they
//! are checked against ([`keys`]), the query string they travel in ([`query`]), the per-app
//! policy ([`policy`]) and why an attempt was refused ([`Denial`]). The node's admission path
//! applies these; the HTTP hooks that a `hook` policy asks live in `server::hooks`.

pub mod keys;
pub mod policy;
pub mod query;
pub mod token;

pub use keys::{KeyRing, StreamKey};
pub use policy::{Action, Policy};
pub use token::{Claims, TokenCheck};

/// Why a publish or a play was not authorised. The description goes to the client (RTMP
/// status description, HTTP body); [`Denial::reason`] labels the metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No `token=` parameter.
    #[error(
        "a token is required: add ?token=... to the stream URL (mint one with skein token {0})"
    )]
    Missing(Action),
    /// The token is not one of ours in form.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The node has no signing key at all.
    #[error("this node has no stream signing key yet: create one with skein stream-key rotate")]
    NoKeys,
    /// The token names a key this node does not have (never existed, or retired).
    #[error("token signed by unknown or retired key {0}")]
    UnknownKey(String),
    /// The signature does not match.
    #[error("bad token signature")]
    BadSignature,
    /// The token's lifetime is over.
    #[error("token expired {0} s ago")]
    Expired(u64),
    /// A play token used to publish, or the other way round.
    #[error("token is for {0}, not {1}")]
    WrongAction(Action, Action),
    /// The token is for another stream.
    #[error("token is for stream {0}, not this one")]
    WrongStream(String),
    /// The token is bound to another client address.
    #[error("token is for client address {0}, not this one")]
    WrongClient(String),
    /// The hook server answered with a refusal.
    #[error("refused by the {0} hook (HTTP {1})")]
    HookDenied(&'static str, u16),
    /// The hook server did not answer in time.
    #[error("the {0} hook did not answer in time")]
    HookTimeout(&'static str),
    /// The hook server could not be reached.
    #[error("the {0} hook is unreachable: {1}")]
    HookUnreachable(&'static str, String),
    /// Too many hook calls are in flight.
    #[error("too many {0} hook calls in flight; try again")]
    HookBusy(&'static str),
}

impl Denial {
    /// Label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::Missing(_) => "token_missing",
            Denial::Malformed(_) => "token_malformed",
            Denial::NoKeys => "no_signing_key",
            Denial::UnknownKey(_) => "token_unknown_key",
            Denial::BadSignature => "token_bad_signature",
            Denial::Expired(_) => "token_expired",
            Denial::WrongAction(..) => "token_wrong_action",
            Denial::WrongStream(_) => "token_wrong_stream",
            Denial::WrongClient(_) => "token_wrong_client",
            Denial::HookDenied(..) => "hook_denied",
            Denial::HookTimeout(_) => "hook_timeout",
            Denial::HookUnreachable(..) => "hook_unreachable",
            Denial::HookBusy(_) => "hook_busy",
        }
    }
}
