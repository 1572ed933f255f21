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
    use serde_json::json;

    /// A cluster document with `nodes` (id, name, health), `leader`, `voters` and the active
    /// origins.
    fn status(
        leader: Option<u64>,
        nodes: &[(u64, &str, &str)],
        voters: &[u64],
        active: &[u64],
    ) -> ClusterStatus {
        let nodes: Vec<_> = nodes
            .iter()
            .map(|(id, name, health)| {
                json!({
                    "id": id, "uuid": uuid(*id), "name": name, "region": "a",
                    "public_addr": { "rtmp": "127.0.1.1:1935", "http": "127.0.1.1:8080" },
                    "roles": { "edge": true, "origin": true }, "raft": "voter",
                    "leader": leader == Some(*id), "health": health, "origin": null,
                    "last_heartbeat_ms": null, "load": null,
                })
            })
            .collect();
        serde_json::from_value(json!({
            "cluster_id": null, "reported_by": 1, "leader": leader, "term": 3,
            "last_applied": null, "nodes": nodes, "regions": [],
            "origin_pool": { "target": 2, "active": active, "draining": [], "live": active },
            "voters": voters, "learners": [], "voters_changing": false,
            "settings": skein_raft::Settings::default(), "ca_key_holders": [], "removed": [],
        }))
        .expect("a cluster document")
    }

    fn uuid(id: u64) -> String {
        format!("00000000-0000-0000-0000-{id:012}")
    }

    #[test]
    fn changes_between_two_documents_are_events() {
        let before = status(Some(1), &[(1, "n1", "up"), (2, "n2", "up")], &[1], &[1]);
        assert!(changes(&before, &before, 0).is_empty());
        let now = status(
            Some(2),
            &[(2, "n2", "up"), (3, "n3", "up"), (1, "n1", "down")],
            &[1, 2],
            &[2],
        );
        let events: Vec<(&str, String)> = changes(&before, &now, 7)
            .into_iter()
            .map(|e| (e.kind, e.text))
            .collect();
        assert_eq!(
            events,
            [
                ("leader", "n2 is the leader (term 3)".to_string()),
                ("joined", "n3 joined in region a".to_string()),
                ("down", "n1 is down".to_string()),
                ("voters", "voters: n1, n2".to_string()),
                ("origins", "origin pool: n2".to_string()),
            ]
        );
        let gone = status(None, &[(2, "n2", "up")], &[2], &[2]);
        let kinds: Vec<&str> = changes(&now, &gone, 8).iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["leader", "removed", "removed", "voters"]);
    }

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
