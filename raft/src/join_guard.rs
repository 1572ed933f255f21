//! Bounds on the join endpoint (`skein-join/1`), the only part of the cluster transport that
//! answers before authentication: how many join connections one source may hold, how many
//! streams one connection may have open, and how large and how slow a request may be.
//!
//! The limits are plain data ([`JoinLimits`]); [`SourceSlots`] counts connections per source
//! address without any I/O, so it is tested on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// Limits of the join endpoint, applied before the token is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinLimits {
    /// Join connections one source IP may hold at once; more are closed at once.
    pub connections_per_source: usize,
    /// Request streams one join connection may have open at once; more are refused.
    pub streams_per_connection: usize,
    /// Largest join request; a larger one is refused and its stream closed.
    pub request_bytes: usize,
    /// Time a join request may take to arrive; a slower one is refused and its stream closed.
    pub request_timeout: Duration,
    /// Time a join connection may stay open in total.
    pub connection_lifetime: Duration,
}

impl Default for JoinLimits {
    fn default() -> Self {
        JoinLimits {
            connections_per_source: 8,
            streams_per_connection: 2,
            request_bytes: 64 << 10,
            request_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
        }
    }
}

/// Counts the open join connections per source IP.
#[derive(Debug)]
pub(crate) struct SourceSlots {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open join connection of a source; the count goes down when it is dropped.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    slots: Arc<SourceSlots>,
    ip: IpAddr,
}

impl SourceSlots {
    pub(crate) fn new(limit: usize) -> Arc<SourceSlots> {
        Arc::new(SourceSlots {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, `None` when it already holds the limit.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_holds_at_most_the_limit_and_gets_slots_back() {
        let slots = SourceSlots::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = slots.take(a).expect("first");
        let _second = slots.take(a).expect("second");
        assert!(slots.take(a).is_none(), "third from the same source");
        assert!(slots.take(b).is_some(), "another source is not affected");
        drop(first);
        assert!(
            slots.take(a).is_some(),
            "a closed connection frees its slot"
        );
    }
}
