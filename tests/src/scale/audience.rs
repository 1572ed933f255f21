//! Viewers and the copies of each stream: GeoDNS (`skein_dns::automap`: nearest region,
//! weighted edges, spill of a lost region) places every viewer on an edge, and the media
//! node's routing (`skein_node::relay`: the region's mesh edges, the relay edge on their ring,
//! where each node pulls from) decides who pulls from the origin. Without the mesh every edge
//! with viewers pulls from the owner; with it, one copy per region.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use skein_dns::automap::{EdgeState, EdgeView, Family, Load, Plan, RegionView, Rng, nearest};
use skein_dns::{AnswerConfig, HealthConfig, Tracker};
use skein_node::relay::{mesh_edges, pull_source};
use skein_raft::ring::Ring;
use skein_raft::{ClusterState, NodeId};

use super::Stream;

/// Client networks per region (ECS subnets): each has a location and a stable hash.
const SUBNETS_PER_REGION: usize = 100;
/// How far a client network lies from its region's centre, in degrees of latitude and
/// longitude (each way).
const SPREAD_DEG: f64 = 4.0;

/// One client network as GeoDNS sees it.
struct Subnet {
    home: usize,
    hash: u64,
}

/// One viewer: the stream it plays, its network and the edge it plays from.
#[derive(Clone, Copy, Debug)]
pub struct Viewer {
    /// Index into the stream list.
    pub stream: u32,
    subnet: u32,
    /// Index into [`Geo::edges`].
    pub edge: u32,
}

/// An edge: its node id and region index.
#[derive(Clone, Copy, Debug)]
pub struct Edge {
    /// Node id.
    pub id: NodeId,
    /// Index of its region in the plan.
    pub region: usize,
}

/// GeoDNS and the regions' meshes over a cluster state.
pub struct Geo {
    regions: Vec<RegionView>,
    plan: Plan,
    answer: AnswerConfig,
    by_addr: HashMap<IpAddr, u32>,
    /// Every edge handed out, in plan order.
    pub edges: Vec<Edge>,
    subnets: Vec<Subnet>,
    /// Per region, the ring of its mesh edges (`None`: too few edges, the mesh is off).
    meshes: Vec<Option<Ring>>,
    dns_rng: Rng,
}

impl Geo {
    /// GeoDNS over the committed regions and their edges (every node with the edge role, as
    /// `skein-dns` reads the cluster document), each edge idle with `max_connections` slots.
    pub fn new(
        state: &ClusterState,
        max_connections: u64,
        mesh_min_edges: usize,
        seed: u64,
    ) -> Geo {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut edges = Vec::new();
        let mut by_addr = HashMap::new();
        let mut meshes = Vec::new();
        let regions: Vec<RegionView> = state
            .regions
            .values()
            .enumerate()
            .map(|(index, region)| {
                let views = state
                    .nodes
                    .values()
                    .filter(|n| n.region == region.name && n.roles.edge)
                    .map(|n| {
                        by_addr.insert(n.public.rtmp.ip(), edges.len() as u32);
                        edges.push(Edge {
                            id: n.id,
                            region: index,
                        });
                        EdgeView {
                            name: n.name.clone(),
                            addrs: vec![n.public.rtmp.ip()],
                            state: EdgeState::Up,
                            load: Some(Load {
                                max_connections,
                                ..Load::default()
                            }),
                            max_connections: None,
                            max_egress_bps: None,
                        }
                    })
                    .collect();
                let members = mesh_edges(state, &region.name, |_| false, mesh_min_edges);
                meshes.push((!members.is_empty()).then(|| Ring::new(members)));
                RegionView {
                    name: region.name.clone(),
                    lat: region.lat.unwrap_or(0.0),
                    lon: region.lon.unwrap_or(0.0),
                    vips: Vec::new(),
                    edges: views,
                }
            })
            .collect();
        let answer = AnswerConfig::default();
        let plan = Plan::build(&regions, &answer);
        let coordinates = plan.coordinates();
        let subnets = (0..regions.len() * SUBNETS_PER_REGION)
            .map(|i| {
                let centre = &regions[i % regions.len()];
                let lat =
                    (centre.lat + rng.random_range(-SPREAD_DEG..SPREAD_DEG)).clamp(-89.0, 89.0);
                let lon = centre.lon + rng.random_range(-SPREAD_DEG..SPREAD_DEG);
                Subnet {
                    home: nearest(&coordinates, lat, lon).expect("regions exist"),
                    hash: rng.random(),
                }
            })
            .collect();
        Geo {
            regions,
            plan,
            answer,
            by_addr,
            edges,
            subnets,
            meshes,
            dns_rng: Rng::new(seed),
        }
    }

    /// Number of regions.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// The edge GeoDNS answers first for a client of `subnet`, `None` when nothing is
    /// answered.
    fn resolve(&mut self, subnet: u32) -> Option<u32> {
        let s = &self.subnets[subnet as usize];
        let choice = self
            .plan
            .choose(s.home, Family::V4, s.hash, &mut self.dns_rng);
        choice
            .addrs
            .first()
            .and_then(|a| self.by_addr.get(a))
            .copied()
    }

    /// Every stream's viewers, each from a random client network, on the edge DNS gives it;
    /// sorted by stream, then edge.
    pub fn place_viewers(&mut self, streams: &[Stream], seed: u64) -> Vec<Viewer> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            for _ in 0..s.viewers {
                let subnet = rng.random_range(0..self.subnets.len() as u32);
                let edge = self.resolve(subnet).expect("every region is up");
                out.push(Viewer {
                    stream: i as u32,
                    subnet,
                    edge,
                });
            }
        }
        out.sort_unstable_by_key(|v| (v.stream, v.edge));
        out
    }

    /// Region `lost` fails: the health checker takes each of its edges down after the failed
    /// probes `health` asks for (`skein_dns::Tracker`), the plan is rebuilt, and the viewers
    /// that were on its edges ask DNS again.
    pub fn lose_region(
        &mut self,
        lost: usize,
        health: &HealthConfig,
        viewers: &mut [Viewer],
    ) -> RegionLoss {
        let mut probes_to_down: u32 = 0;
        for edge in &mut self.regions[lost].edges {
            let mut tracker = Tracker::default();
            tracker.observe(Ok(Load::default()), health.fall, health.rise);
            let mut probes = 0;
            while tracker.state != EdgeState::Down {
                tracker.observe(Err("connection refused".into()), health.fall, health.rise);
                probes += 1;
            }
            probes_to_down = probes_to_down.max(probes);
            edge.state = tracker.state;
        }
        self.plan = Plan::build(&self.regions, &self.answer);
        self.meshes[lost] = None;
        let mut viewers_moved = 0;
        let mut spilled_to = BTreeMap::new();
        for v in viewers.iter_mut() {
            if self.edges[v.edge as usize].region == lost {
                v.edge = self.resolve(v.subnet).expect("other regions are up");
                *spilled_to
                    .entry(self.edges[v.edge as usize].region)
                    .or_insert(0) += 1;
                viewers_moved += 1;
            }
        }
        viewers.sort_unstable_by_key(|v| (v.stream, v.edge));
        RegionLoss {
            viewers_moved,
            spilled_to,
            detection_ms: u64::from(probes_to_down) * health.interval_ms,
        }
    }

    /// Who pulls each stream from its owner, with and without the mesh, from the viewers'
    /// edges (`owner[i]` owns `streams[i]`).
    pub fn copies(&self, streams: &[Stream], owner: &[NodeId], viewers: &[Viewer]) -> Copies {
        let mut copies = Copies {
            direct: vec![0; streams.len()],
            mesh: vec![0; streams.len()],
            regions: vec![0; streams.len()],
            relay_bps: vec![0; self.edges.len()],
            max_relay_fanout: 0,
        };
        let index: HashMap<NodeId, usize> = self
            .edges
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id, i))
            .collect();
        for chunk in viewers.chunk_by(|a, b| a.stream == b.stream) {
            let i = chunk[0].stream as usize;
            let (key, owner) = (&streams[i].key, owner[i]);
            let mut edges: Vec<u32> = chunk.iter().map(|v| v.edge).collect();
            edges.dedup();
            let mut from_owner: HashSet<NodeId> = HashSet::new();
            let mut fanout: HashMap<NodeId, u32> = HashMap::new();
            let mut regions: HashSet<usize> = HashSet::new();
            for &e in &edges {
                let edge = self.edges[e as usize];
                regions.insert(edge.region);
                // Without the mesh every edge pulls from the owner.
                if pull_source(edge.id, owner, || None) == owner {
                    copies.direct[i] += 1;
                }
                let mesh = self.meshes[edge.region].as_ref();
                let source = pull_source(edge.id, owner, || mesh.and_then(|m| m.owner(key)));
                if source == owner {
                    from_owner.insert(edge.id);
                } else {
                    // The relay edge serves pulls, so it reads the owner itself.
                    from_owner.insert(source);
                    *fanout.entry(source).or_default() += 1;
                }
            }
            copies.mesh[i] = from_owner.len() as u32;
            copies.regions[i] = regions.len() as u32;
            for (relay, n) in fanout {
                copies.max_relay_fanout = copies.max_relay_fanout.max(n);
                copies.relay_bps[index[&relay]] += u64::from(n) * streams[i].bitrate_bps;
            }
        }
        copies
    }
}

/// What a region's loss did to its viewers.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionLoss {
    /// Viewers that had to resolve again.
    pub viewers_moved: usize,
    /// Where they went: region index → viewers.
    pub spilled_to: BTreeMap<usize, usize>,
    /// Probes until GeoDNS stops answering the region's edges, times the probe interval.
    pub detection_ms: u64,
}

/// Copies of each stream the owner sends, and the relay edges' share.
#[derive(Clone, Debug, PartialEq)]
pub struct Copies {
    /// Per stream: edges pulling from the owner without the mesh (edges with viewers).
    pub direct: Vec<u32>,
    /// Per stream: nodes pulling from the owner with the mesh.
    pub mesh: Vec<u32>,
    /// Per stream: regions with viewers.
    pub regions: Vec<u32>,
    /// Per edge: bits per second it relays to other edges of its region.
    pub relay_bps: Vec<u64>,
    /// Most edges pulling one stream from one relay edge.
    pub max_relay_fanout: u32,
}

impl Copies {
    /// Origin egress per origin (bits per second) for per-stream copy counts `per_stream`.
    pub fn origin_egress(
        per_stream: &[u32],
        streams: &[Stream],
        owner: &[NodeId],
    ) -> BTreeMap<NodeId, u64> {
        let mut out: BTreeMap<NodeId, u64> = BTreeMap::new();
        for ((n, s), o) in per_stream.iter().zip(streams).zip(owner) {
            *out.entry(*o).or_default() += u64::from(*n) * s.bitrate_bps;
        }
        out
    }
}
