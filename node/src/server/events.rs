//! The cluster's recent events as this node saw them — leader changes, nodes down and up, nodes
//! joining and leaving, voter and origin-pool changes, relay failovers — in a bounded
//! in-memory log for the dashboard (`GET /api/v1/events`). [`changes`] is the sans-IO part:
//! two cluster documents in, events out.

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;
use skein_raft::{ClusterStatus, NodeHealth};

/// Events kept at most; the oldest go first.
const MAX_EVENTS: usize = 500;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// When it was seen (unix ms).
    pub at_ms: u64,
    /// `start`, `leader`, `down`, `up`, `joined`, `removed`, `voters`, `origins` or `failover`.
    pub kind: &'static str,
    /// What happened, for a person.
    pub text: String,
}

/// The bounded log.
#[derive(Default)]
pub struct EventLog {
    events: Mutex<VecDeque<Event>>,
}

impl EventLog {
    /// Appends an event, dropping the oldest past the bound.
    pub fn push(&self, event: Event) {
        let mut events = self.events.lock();
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The events, newest first.
    pub fn recent(&self) -> Vec<Event> {
        self.events.lock().iter().rev().cloned().collect()
    }
}

/// What changed from `before` to `now`, as events stamped `at_ms`.
pub fn changes(before: &ClusterStatus, now: &ClusterStatus, at_ms: u64) -> Vec<Event> {
    let name = |id: u64| {
        now.nodes
            .iter()
            .chain(&before.nodes)
            .find(|n| n.id == id)
            .map_or_else(|| format!("node {id}"), |n| n.name.clone())
    };
    let names = |ids: &[u64]| {
        ids.iter()
            .map(|id| name(*id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut events = Vec::new();
    let mut event = |kind, text| events.push(Event { at_ms, kind, text });
    if now.leader != before.leader {
        match now.leader {
            Some(id) => event(
                "leader",
                format!("{} is the leader (term {})", name(id), now.term),
            ),
            None => event("leader", "no leader".to_string()),
        }
    }
    for node in &now.nodes {
        match before.nodes.iter().find(|b| b.id == node.id) {
            None => event(
                "joined",
                format!("{} joined in region {}", node.name, node.region),
            ),
            Some(old) if old.health != node.health => match node.health {
                NodeHealth::Down => event("down", format!("{} is down", node.name)),
                NodeHealth::Up => event("up", format!("{} is up again", node.name)),
            },
            Some(_) => {}
        }
    }
    for old in &before.nodes {
        if !now.nodes.iter().any(|n| n.id == old.id) {
            event("removed", format!("{} left the cluster", old.name));
        }
    }
    if now.voters != before.voters {
        event("voters", format!("voters: {}", names(&now.voters)));
    }
    if now.origin_pool.active != before.origin_pool.active {
        event(
            "origins",
            format!("origin pool: {}", names(&now.origin_pool.active)),
        );
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_bounded_and_newest_first() {
        let log = EventLog::default();
        for i in 0..MAX_EVENTS as u64 + 10 {
            log.push(Event {
                at_ms: i,
                kind: "up",
                text: String::new(),
            });
        }
        let recent = log.recent();
        assert_eq!(recent.len(), MAX_EVENTS);
        assert_eq!(recent[0].at_ms, MAX_EVENTS as u64 + 9);
    }
}
