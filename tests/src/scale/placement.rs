//! Where streams live: `skein_raft::ring` over the committed live origins, as every node routes
//! (plain ring), and the bounded-load assignment the ring also offers (not used for routing
//! yet). Load balance as max/mean, and what moves when origins leave.

use std::collections::{BTreeMap, BTreeSet};

use skein_raft::NodeId;
use skein_raft::ring::{DEFAULT_EPSILON, Ring};

use super::Stream;

/// Max/mean of the origins' load, in streams and in ingest bitrate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Balance {
    /// Most streams on one origin over the mean.
    pub streams: f64,
    /// Highest ingest bitrate on one origin over the mean.
    pub bitrate: f64,
}

/// Streams that changed owner when some origins left the ring.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moves {
    /// Streams whose owner changed.
    pub moved: usize,
    /// Streams the leaving origins owned before.
    pub owned_by_leavers: usize,
    /// `moved` over all streams.
    pub fraction: f64,
}

/// The owner of every stream on the plain ring (what `relay::Routing::owner` answers).
pub fn owners(ring: &Ring, streams: &[Stream]) -> Vec<NodeId> {
    streams
        .iter()
        .map(|s| ring.owner(&s.key).expect("the ring has origins"))
        .collect()
}

fn max_over_mean(per_origin: &BTreeMap<NodeId, u64>, origins: usize) -> f64 {
    let total: u64 = per_origin.values().sum();
    let max = per_origin.values().copied().max().unwrap_or(0);
    max as f64 * origins as f64 / total.max(1) as f64
}

/// Balance of an assignment (`owner[i]` owns `streams[i]`) over `origins` origins.
pub fn balance(owner: &[NodeId], streams: &[Stream], origins: usize) -> Balance {
    let mut count: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut bitrate: BTreeMap<NodeId, u64> = BTreeMap::new();
    for (o, s) in owner.iter().zip(streams) {
        *count.entry(*o).or_default() += 1;
        *bitrate.entry(*o).or_default() += s.bitrate_bps;
    }
    Balance {
        streams: max_over_mean(&count, origins),
        bitrate: max_over_mean(&bitrate, origins),
    }
}

/// `Ring::assign` with the default ε: bounded-load placement by bitrate, heaviest first.
pub fn bounded(ring: &Ring, streams: &[Stream]) -> Vec<NodeId> {
    let input: Vec<(String, u64)> = streams
        .iter()
        .map(|s| (s.key.clone(), s.bitrate_bps))
        .collect();
    let assigned = ring.assign(&input, DEFAULT_EPSILON);
    streams.iter().map(|s| assigned[&s.key]).collect()
}

/// What moves when `leaving` origins leave `origins`, streams placed by `place` (`owners`
/// for the plain ring, `bounded` for the whole set placed again) before and after.
pub fn moves(
    origins: &[NodeId],
    leaving: &BTreeSet<NodeId>,
    streams: &[Stream],
    before: &[NodeId],
    place: impl Fn(&Ring, &[Stream]) -> Vec<NodeId>,
) -> Moves {
    let ring = Ring::new(origins.iter().copied().filter(|o| !leaving.contains(o)));
    compare(before, &place(&ring, streams), leaving)
}

fn compare(before: &[NodeId], after: &[NodeId], leaving: &BTreeSet<NodeId>) -> Moves {
    let moved = before.iter().zip(after).filter(|(a, b)| a != b).count();
    let owned_by_leavers = before.iter().filter(|o| leaving.contains(o)).count();
    Moves {
        moved,
        owned_by_leavers,
        fraction: moved as f64 / before.len().max(1) as f64,
    }
}
