//! A scale model of one Skein cluster, computed with the cluster's own algorithms rather than
//! a re-implementation of them: the cluster state and the leader's voter and origin policies
//! (`skein_raft::state`, `skein_raft::policy`), the consistent-hash ring and its bounded-load
//! placement (`skein_raft::ring`), the edge mesh's relay choice (`skein_node::relay`), GeoDNS's
//! region choice and spill (`skein_dns::automap`, `skein_dns::Tracker`), and the bytes of the
//! Raft traffic (`skein_raft::wire_size`). Sans-IO and deterministic: one seed gives one
//! report. `tests/tests/scale.rs` runs it small in CI; the `scale` example runs it at full
//! size and prints the tables of `docs/scale.md`.

pub mod audience;
pub mod control_plane;
pub mod leader;
pub mod placement;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use skein_dns::HealthConfig;
use skein_node::config::ClusterSection;
use skein_raft::ring::Ring;
use skein_raft::{NodeId, Roles};

use audience::{Copies, Geo, RegionLoss, Viewer};
use control_plane::{ChurnRate, ChurnResult, ORIGIN_EVERY, Sizes};
use leader::{Leader, LogCount, Timings};
use placement::{Balance, Moves};

/// The size of the modelled cluster and its audience.
#[derive(Clone, Debug, PartialEq)]
pub struct Size {
    /// Origins (dedicated: role `origin` only), spread evenly over the regions.
    pub origins: u64,
    /// Regions.
    pub regions: u64,
    /// Edges per region (role `edge` only).
    pub edges_per_region: u64,
    /// Live streams.
    pub streams: usize,
    /// Viewers over all streams.
    pub viewers: u64,
    /// Exponent of the Zipf law of viewers per stream (rank `r` gets a share ∝ `r^-s`).
    pub zipf_exponent: f64,
    /// Connection slots of each edge, as its health report gives them to GeoDNS.
    pub edge_max_connections: u64,
    /// Node failures during the churn run.
    pub churn: ChurnRate,
    /// Node counts at which the control plane's sizes are measured.
    pub raft_sizes: Vec<u64>,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Size {
    /// The size: 1,000 origins, 100 regions × 50 edges, 100,000 streams.
    pub fn full() -> Size {
        Size {
            origins: 1_000,
            regions: 100,
            edges_per_region: 50,
            streams: 100_000,
            viewers: 4_000_000,
            zipf_exponent: 1.0,
            edge_max_connections: 1_000,
            churn: ChurnRate {
                failures_per_node_day: 1.0 / 7.0,
                mean_down_secs: 300.0,
                days: 1.0,
            },
            raft_sizes: vec![1_000, 6_000, 12_000, 24_000],
            seed: 7,
        }
    }

    /// A size for CI: the same shape, seconds to run.
    pub fn small() -> Size {
        Size {
            origins: 50,
            regions: 10,
            edges_per_region: 5,
            streams: 5_000,
            viewers: 40_000,
            edge_max_connections: 1_000,
            churn: ChurnRate {
                failures_per_node_day: 2.0,
                mean_down_secs: 300.0,
                days: 1.0,
            },
            raft_sizes: vec![100, 400],
            ..Size::full()
        }
    }
}

impl Size {
    /// Why the model cannot run at this size, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.regions < 2 {
            return Err(format!(
                "{} regions: at least 2 (one is lost)",
                self.regions
            ));
        }
        if self.origins < self.regions {
            return Err(format!(
                "{} origins over {} regions: at least one origin per region",
                self.origins, self.regions
            ));
        }
        if self.edges_per_region == 0 || self.streams == 0 {
            return Err("edges per region and streams must be at least 1".into());
        }
        if !(self.zipf_exponent.is_finite() && self.zipf_exponent >= 0.0) {
            return Err(format!(
                "Zipf exponent {}: a number ≥ 0",
                self.zipf_exponent
            ));
        }
        Ok(())
    }
}

/// One live stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    /// `app/key`, what the ring hashes.
    pub key: String,
    /// Ingest bitrate.
    pub bitrate_bps: u64,
    /// Viewers.
    pub viewers: u32,
}

/// Bitrates of the streams (bits per second) and how often each occurs, in percent.
const BITRATES: [(u64, u32); 5] = [
    (1_000_000, 20),
    (2_500_000, 30),
    (4_500_000, 30),
    (6_000_000, 15),
    (8_000_000, 5),
];

/// The streams: bitrates drawn from [`BITRATES`], viewers by rank on the Zipf law, the
/// fractional part of each share rounded at random.
pub fn streams(size: &Size, seed: u64) -> Vec<Stream> {
    let mut rng = StdRng::seed_from_u64(seed);
    let weights: Vec<f64> = (1..=size.streams)
        .map(|rank| (rank as f64).powf(-size.zipf_exponent))
        .collect();
    let total: f64 = weights.iter().sum();
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let share = size.viewers as f64 * w / total;
            let viewers = share.floor() as u32 + u32::from(rng.random::<f64>() < share.fract());
            let mut pick = rng.random_range(0..100);
            let bitrate_bps = BITRATES
                .iter()
                .find(|(_, pct)| {
                    let hit = pick < *pct;
                    pick = pick.saturating_sub(*pct);
                    hit
                })
                .map_or(BITRATES[0].0, |(bps, _)| *bps);
            Stream {
                key: format!("live/s{i:06}"),
                bitrate_bps,
                viewers,
            }
        })
        .collect()
}

/// The cluster as the policies formed it, with its streams placed and its viewers on edges.
pub struct Model {
    /// The size modelled.
    pub size: Size,
    /// The leader, its state and its log.
    pub leader: Leader,
    /// Policy ticks that acted while the cluster formed, and the entries they wrote.
    pub formation: (u64, LogCount),
    /// The streams.
    pub streams: Vec<Stream>,
    /// The committed live origins.
    pub origins: Vec<NodeId>,
    /// The owner of each stream on the plain ring.
    pub owners: Vec<NodeId>,
    /// GeoDNS and the meshes.
    pub geo: Geo,
    /// Every viewer, on its edge.
    pub viewers: Vec<Viewer>,
}

/// Name of region `r`.
fn region_name(r: u64) -> String {
    format!("region-{r:03}")
}

impl Model {
    /// Registers every node, runs the leader's policies until they are done (learners,
    /// voters, the origin pool), places the streams and the viewers; an error when the size
    /// is not one the model can run ([`Size::check`]).
    pub fn build(size: &Size) -> Result<Model, String> {
        size.check()?;
        let mut rng = StdRng::seed_from_u64(size.seed);
        let mut leader = Leader::bootstrap(size.origins as usize);
        for r in 0..size.regions {
            // Populated latitudes, any longitude.
            let lat = rng.random_range(-45.0..60.0);
            let lon = rng.random_range(-180.0..180.0);
            leader.locate(&region_name(r), lat, lon);
        }
        let edge = Roles {
            edge: true,
            origin: false,
        };
        let origin = Roles {
            edge: false,
            origin: true,
        };
        let mut n = 0;
        for r in 0..size.regions {
            let origins_here =
                (size.origins * (r + 1) / size.regions) - (size.origins * r / size.regions);
            for i in 0..origins_here + size.edges_per_region {
                let roles = if i < origins_here { origin } else { edge };
                leader.register(n, &region_name(r), roles);
                n += 1;
            }
        }
        let ticks = leader.settle(u64::MAX);
        let formation = (ticks, leader.log.clone());
        let streams = streams(size, size.seed + 1);
        let origins = leader.state.live_origins();
        let owners = placement::owners(&Ring::new(origins.iter().copied()), &streams);
        let mesh_min_edges = ClusterSection::default().mesh_min_edges;
        let mut geo = Geo::new(
            &leader.state,
            size.edge_max_connections,
            mesh_min_edges,
            size.seed + 2,
        );
        let viewers = geo.place_viewers(&streams, size.seed + 3);
        Ok(Model {
            size: size.clone(),
            leader,
            formation,
            streams,
            origins,
            owners,
            geo,
            viewers,
        })
    }

    /// The origins of region `r`.
    fn origins_in(&self, r: u64) -> BTreeSet<NodeId> {
        let name = region_name(r);
        self.origins
            .iter()
            .copied()
            .filter(|o| self.leader.state.nodes[o].region == name)
            .collect()
    }

    /// Computes every figure of the report (it consumes the model: regions are lost, nodes
    /// fail).
    pub fn report(mut self) -> Report {
        let n = self.origins.len();
        let plain = placement::balance(&self.owners, &self.streams, n);
        let ring = Ring::new(self.origins.iter().copied());
        let bounded_owners = placement::bounded(&ring, &self.streams);
        let bounded = placement::balance(&bounded_owners, &self.streams, n);
        let one = BTreeSet::from([self.origins[n / 2]]);
        let moves = |leaving: &BTreeSet<NodeId>, before: &[NodeId], bounded: bool| {
            let place = if bounded {
                placement::bounded
            } else {
                placement::owners
            };
            placement::moves(&self.origins, leaving, &self.streams, before, place)
        };
        let one_leaves = moves(&one, &self.owners, false);
        let one_leaves_bounded = moves(&one, &bounded_owners, true);
        let lost_origins = self.origins_in(0);
        let region_origins = moves(&lost_origins, &self.owners, false);

        let copies = self.geo.copies(&self.streams, &self.owners, &self.viewers);
        let egress = |per_stream: &[u32], owners: &[NodeId]| {
            spread(&Copies::origin_egress(per_stream, &self.streams, owners), n)
        };
        let direct_egress = egress(&copies.direct, &self.owners);
        let mesh_egress = egress(&copies.mesh, &self.owners);
        let (viewers_per_edge, viewer_bps_per_edge) = self.viewers_per_edge();

        // Region 0 is lost: its edges leave GeoDNS's answers, its viewers spill, its origins'
        // streams move.
        let mut viewers = std::mem::take(&mut self.viewers);
        let health = HealthConfig::default();
        let region_loss = self.geo.lose_region(0, &health, &mut viewers);
        let after_ring = Ring::new(
            self.origins
                .iter()
                .copied()
                .filter(|o| !lost_origins.contains(o)),
        );
        let after_owners = placement::owners(&after_ring, &self.streams);
        let after = self.geo.copies(&self.streams, &after_owners, &viewers);
        let mesh_egress_after = egress(&after.mesh, &after_owners);

        let streams_per_origin = self.streams.len() / n.max(1);
        let formed_sizes = control_plane::sizes(&self.leader, streams_per_origin);
        let churn = control_plane::churn(
            &mut self.leader,
            &self.size.churn,
            &self.streams,
            self.size.seed + 4,
        );
        let storm = control_plane::region_storm(&mut self.leader, &region_name(1));
        let raft_sizes = self
            .size
            .raft_sizes
            .iter()
            .map(|&nodes| {
                let cluster = control_plane::sized_cluster(nodes, self.size.regions);
                control_plane::sizes(&cluster, streams_per_origin)
            })
            .collect();
        Report {
            size: self.size.clone(),
            nodes: self.leader.state.nodes.len(),
            voters: self.leader.state.voters.len(),
            timings: self.leader.timings,
            formation: self.formation.clone(),
            plain,
            bounded,
            one_leaves,
            one_leaves_bounded,
            region_origins,
            lost_origins: lost_origins.len(),
            viewers_total: viewers.len(),
            viewers_per_edge,
            viewer_bps_per_edge,
            edges: self.geo.edges.len(),
            regions: self.geo.region_count(),
            copies,
            direct_egress,
            mesh_egress,
            region_loss,
            after,
            mesh_egress_after,
            streams: self.streams,
            formed_sizes,
            churn,
            storm,
            raft_sizes,
        }
    }

    /// Viewers per edge, and the bits per second they take.
    fn viewers_per_edge(&self) -> (Spread, Spread) {
        let mut count: BTreeMap<NodeId, u64> = BTreeMap::new();
        let mut bps: BTreeMap<NodeId, u64> = BTreeMap::new();
        for v in &self.viewers {
            let edge = self.geo.edges[v.edge as usize].id;
            *count.entry(edge).or_default() += 1;
            *bps.entry(edge).or_default() += self.streams[v.stream as usize].bitrate_bps;
        }
        let edges = self.geo.edges.len();
        (spread(&count, edges), spread(&bps, edges))
    }
}

/// Total, mean and maximum of a load over `members` members (absent ones count as 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Sum over all members.
    pub total: u64,
    /// Mean per member.
    pub mean: f64,
    /// Highest member.
    pub max: u64,
}

fn spread(per: &BTreeMap<NodeId, u64>, members: usize) -> Spread {
    let total = per.values().sum();
    Spread {
        total,
        mean: total as f64 / members.max(1) as f64,
        max: per.values().copied().max().unwrap_or(0),
    }
}

/// Everything the model computed.
pub struct Report {
    /// The size modelled.
    pub size: Size,
    /// Registered nodes.
    pub nodes: usize,
    /// Voters after formation (and churn).
    pub voters: usize,
    /// The timings the cluster ran with.
    pub timings: Timings,
    /// Ticks that acted while the cluster formed, and the entries written.
    pub formation: (u64, LogCount),
    /// Origin balance on the plain ring.
    pub plain: Balance,
    /// Origin balance with `Ring::assign` (bounded loads; not used for routing yet).
    pub bounded: Balance,
    /// One origin leaves: plain ring.
    pub one_leaves: Moves,
    /// One origin leaves: bounded placement.
    pub one_leaves_bounded: Moves,
    /// Region 0's origins leave: plain ring.
    pub region_origins: Moves,
    /// Origins region 0 had.
    pub lost_origins: usize,
    /// Viewers placed.
    pub viewers_total: usize,
    /// Viewers per edge.
    pub viewers_per_edge: Spread,
    /// Egress to viewers per edge, bits per second.
    pub viewer_bps_per_edge: Spread,
    /// Edges.
    pub edges: usize,
    /// Regions.
    pub regions: usize,
    /// Copies per stream before the region loss.
    pub copies: Copies,
    /// Origin egress without the mesh.
    pub direct_egress: Spread,
    /// Origin egress with the mesh.
    pub mesh_egress: Spread,
    /// What the loss of region 0 did to viewers.
    pub region_loss: RegionLoss,
    /// Copies per stream after the region loss.
    pub after: Copies,
    /// Origin egress with the mesh after the region loss.
    pub mesh_egress_after: Spread,
    /// The streams.
    pub streams: Vec<Stream>,
    /// Control-plane sizes of the formed cluster.
    pub formed_sizes: Sizes,
    /// The churn run.
    pub churn: ChurnResult,
    /// Region 1 lost at once: ticks that acted, entries written.
    pub storm: (u64, u64),
    /// Control-plane sizes at [`Size::raft_sizes`].
    pub raft_sizes: Vec<Sizes>,
}

/// The biggest single-stream audience for a given origin and edge bandwidth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ceiling {
    /// Edges one origin can feed one stream to directly.
    pub edges_direct: u64,
    /// Regions one origin can feed one stream to through the mesh (one copy each).
    pub regions_mesh: u64,
    /// Edges one relay edge can feed (the rest of its region).
    pub edges_per_relay: u64,
    /// Viewers one edge carries below GeoDNS's high-water mark.
    pub viewers_per_edge: u64,
}

impl Ceiling {
    /// For `stream_bps`, an origin of `origin_bps` and edges of `edge_bps`, each node using
    /// `usable` of its bandwidth for relay copies and edges taking viewers up to GeoDNS's
    /// high-water mark.
    pub fn compute(origin_bps: u64, edge_bps: u64, stream_bps: u64, usable: f64) -> Ceiling {
        let high_water = skein_dns::AnswerConfig::default().high_water;
        let fit = |bps: u64, share: f64| (bps as f64 * share / stream_bps as f64).floor() as u64;
        Ceiling {
            edges_direct: fit(origin_bps, usable),
            regions_mesh: fit(origin_bps, usable),
            edges_per_relay: fit(edge_bps, usable),
            viewers_per_edge: fit(edge_bps, high_water),
        }
    }
}

/// Rates the leader carries, computed from measured sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControlRates {
    /// Heartbeat RPCs the leader sends per second (one per follower per interval).
    pub heartbeat_rpcs: f64,
    /// Their bits per second.
    pub heartbeat_bps: f64,
    /// Load reports' bits per second into the leader (one node in [`ORIGIN_EVERY`] an origin).
    pub report_bps: f64,
    /// Bytes one membership entry costs the leader to send to every follower.
    pub membership_change_bytes: f64,
    /// The snapshot request over the transport's message limit (1.0: at the limit).
    pub snapshot_of_limit: f64,
    /// Bytes the leader sends to form the group one learner at a time: the `k`-th membership
    /// entry names `k` members and goes to `k - 1` followers (entry size taken as linear in
    /// the members, from the measured one).
    pub formation_bytes: f64,
}

impl ControlRates {
    /// The rates of a cluster whose sizes are `z`.
    pub fn of(z: &Sizes) -> ControlRates {
        let followers = z.nodes.saturating_sub(1) as f64;
        let t = Timings::defaults();
        let heartbeat_rpcs = followers * 1000.0 / t.raft_heartbeat_ms as f64;
        let origins = z.nodes as f64 / ORIGIN_EVERY as f64;
        let reports =
            (z.nodes as f64 - origins) * z.edge_report as f64 + origins * z.origin_report as f64;
        ControlRates {
            heartbeat_rpcs,
            heartbeat_bps: heartbeat_rpcs * z.heartbeat as f64 * 8.0,
            report_bps: reports * 8.0 * 1000.0 / t.load_report_ms as f64,
            membership_change_bytes: followers * z.membership_entry as f64,
            snapshot_of_limit: z.snapshot.sent as f64 / skein_raft::transport::MAX_MESSAGE as f64,
            formation_bytes: {
                let n = z.nodes as f64;
                let per_member = z.membership_entry as f64 / n.max(1.0);
                // Σ k (k - 1) for k = 1..=n.
                per_member * (n - 1.0) * n * (n + 1.0) / 3.0
            },
        }
    }
}

fn gbps(bps: f64) -> f64 {
    bps / 1e9
}

impl Report {
    /// Mean of a per-stream count over the streams that have viewers.
    fn mean_watched(per_stream: &[u32]) -> f64 {
        let watched: Vec<u32> = per_stream.iter().copied().filter(|&c| c > 0).collect();
        watched.iter().map(|&c| f64::from(c)).sum::<f64>() / watched.len().max(1) as f64
    }

    /// The report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.size;
        let _ = writeln!(
            out,
            "Model: {} origins, {} regions x {} edges ({} nodes), {} streams, {} viewers (Zipf s = {}), seed {}.\n",
            s.origins,
            s.regions,
            s.edges_per_region,
            self.nodes,
            s.streams,
            self.viewers_total,
            s.zipf_exponent,
            s.seed
        );
        let (ticks, log) = &self.formation;
        let _ = writeln!(
            out,
            "Formation through the leader's policies: {} acting ticks ({:.0} s at {} ms), {} entries ({} membership), {} voters.\n",
            ticks,
            *ticks as f64 * self.timings.policy_tick_ms as f64 / 1000.0,
            self.timings.policy_tick_ms,
            log.total(),
            log.membership,
            self.voters
        );
        out.push_str("| origin placement | value |\n|---|---|\n");
        let n = self.size.origins;
        let rows = [
            (
                "plain ring: max/mean streams per origin",
                format!("{:.3}", self.plain.streams),
            ),
            (
                "plain ring: max/mean ingest bitrate per origin",
                format!("{:.3}", self.plain.bitrate),
            ),
            (
                "bounded loads (ε = 0.25, `Ring::assign`, not used for routing): max/mean bitrate",
                format!("{:.3}", self.bounded.bitrate),
            ),
            (
                "one origin leaves, plain ring: streams moved",
                format!(
                    "{} ({:.4} of all; 1/N = {:.4}; the leaver owned {})",
                    self.one_leaves.moved,
                    self.one_leaves.fraction,
                    1.0 / n as f64,
                    self.one_leaves.owned_by_leavers
                ),
            ),
            (
                "one origin leaves, bounded placement: streams moved",
                format!(
                    "{} ({:.4})",
                    self.one_leaves_bounded.moved, self.one_leaves_bounded.fraction
                ),
            ),
            (
                "region 0 lost, its origins' streams moved",
                format!(
                    "{} ({:.4}; its {} origins owned {})",
                    self.region_origins.moved,
                    self.region_origins.fraction,
                    self.lost_origins,
                    self.region_origins.owned_by_leavers
                ),
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let top = 0;
        let _ = writeln!(
            out,
            "\n| origin egress | without mesh | with mesh |\n|---|---|---|"
        );
        let _ = writeln!(
            out,
            "| copies per watched stream, mean | {:.1} | {:.1} |",
            Self::mean_watched(&self.copies.direct),
            Self::mean_watched(&self.copies.mesh)
        );
        let _ = writeln!(
            out,
            "| copies of the top stream ({} viewers, {} Mbit/s) | {} | {} |",
            self.streams[top].viewers,
            self.streams[top].bitrate_bps / 1_000_000,
            self.copies.direct[top],
            self.copies.mesh[top]
        );
        let _ = writeln!(
            out,
            "| all origins, Gbit/s | {:.1} | {:.1} |",
            gbps(self.direct_egress.total as f64),
            gbps(self.mesh_egress.total as f64)
        );
        let _ = writeln!(
            out,
            "| per origin, mean / max Gbit/s | {:.2} / {:.2} | {:.2} / {:.2} |",
            gbps(self.direct_egress.mean),
            gbps(self.direct_egress.max as f64),
            gbps(self.mesh_egress.mean),
            gbps(self.mesh_egress.max as f64)
        );
        let relay = spread(
            &self
                .copies
                .relay_bps
                .iter()
                .enumerate()
                .map(|(i, b)| (i as NodeId, *b))
                .collect(),
            self.edges,
        );
        let _ = writeln!(
            out,
            "| relay edges: edge-to-edge egress per edge, mean / max Gbit/s | - | {:.2} / {:.2} |",
            gbps(relay.mean),
            gbps(relay.max as f64)
        );
        let _ = writeln!(
            out,
            "| most edges fed by one relay edge for one stream | - | {} |",
            self.copies.max_relay_fanout
        );
        let _ = writeln!(
            out,
            "\nViewers per edge: mean {:.0}, max {}; their egress per edge mean {:.2}, max {:.2} Gbit/s.\n",
            self.viewers_per_edge.mean,
            self.viewers_per_edge.max,
            gbps(self.viewer_bps_per_edge.mean),
            gbps(self.viewer_bps_per_edge.max as f64)
        );
        let loss = &self.region_loss;
        let _ = writeln!(
            out,
            "Region 0 lost: GeoDNS stops answering its edges after {} ms of failed probes; {} viewers ({:.4} of all) resolve again and land in {} regions ({:?} viewers); origin egress with the mesh goes from {:.1} to {:.1} Gbit/s (max per origin {:.2} Gbit/s).\n",
            loss.detection_ms,
            loss.viewers_moved,
            loss.viewers_moved as f64 / self.viewers_total.max(1) as f64,
            loss.spilled_to.len(),
            loss.spilled_to.values().collect::<Vec<_>>(),
            gbps(self.mesh_egress.total as f64),
            gbps(self.mesh_egress_after.total as f64),
            gbps(self.mesh_egress_after.max as f64)
        );
        let c = Ceiling::compute(10_000_000_000, 10_000_000_000, 1_000_000, 0.9);
        let _ = writeln!(
            out,
            "| single-stream ceiling (10 Gbit/s origin and edges, 1 Mbit/s stream, 90 % usable, high water {}) | value |\n|---|---|",
            skein_dns::AnswerConfig::default().high_water
        );
        let _ = writeln!(
            out,
            "| edges one origin feeds without the mesh | {} |",
            c.edges_direct
        );
        let _ = writeln!(
            out,
            "| audience without the mesh | {} |",
            c.edges_direct * c.viewers_per_edge
        );
        let _ = writeln!(
            out,
            "| regions one origin feeds with the mesh | {} |",
            c.regions_mesh
        );
        let _ = writeln!(
            out,
            "| edges one relay edge feeds | {} |",
            c.edges_per_relay
        );
        let _ = writeln!(
            out,
            "| audience with the mesh ({} regions x {} edges here) | {} |",
            self.regions,
            s.edges_per_region,
            self.regions as u64 * s.edges_per_region * c.viewers_per_edge
        );
        let ch = &self.churn;
        let _ = writeln!(
            out,
            "\nChurn: {} failures in {} day(s) ({:.3} per node per day, mean {} s down): {} entries ({:?}, {} membership), {:.4} entries/s, busiest second {}; the live origin set changed {} times, {} stream moves in all. Region 1 lost at once: {} acting ticks, {} entries.\n",
            ch.failures,
            s.churn.days,
            s.churn.failures_per_node_day,
            s.churn.mean_down_secs,
            ch.log.total(),
            ch.log.commands,
            ch.log.membership,
            ch.entries_per_sec,
            ch.busiest_second,
            ch.ring_changes,
            ch.streams_moved,
            self.storm.0,
            self.storm.1
        );
        let _ = writeln!(
            out,
            "| nodes | heartbeat B | health entry B | membership entry B | edge report B | origin report B | snapshot stored B | snapshot sent B |\n|---|---|---|---|---|---|---|---|"
        );
        let all = || std::iter::once(&self.formed_sizes).chain(&self.raft_sizes);
        for (i, z) in all().enumerate() {
            let formed = if i == 0 { " (the model)" } else { "" };
            let _ = writeln!(
                out,
                "| {}{formed} | {} | {} | {} | {} | {} | {} | {} |",
                z.nodes,
                z.heartbeat,
                z.health_entry,
                z.membership_entry,
                z.edge_report,
                z.origin_report,
                z.snapshot.stored,
                z.snapshot.sent
            );
        }
        let _ = writeln!(
            out,
            "\nComputed from the measured sizes (Raft heartbeat every {} ms to every follower, a load report from every node every {} ms, one node in {ORIGIN_EVERY} an origin):\n",
            self.timings.raft_heartbeat_ms, self.timings.load_report_ms
        );
        let _ = writeln!(
            out,
            "| nodes | leader heartbeat RPC/s | heartbeats Mbit/s | load reports in, Mbit/s | one membership change to all, MB | forming the group, GB | snapshot sent / 64 MiB limit |\n|---|---|---|---|---|---|---|"
        );
        for z in all() {
            let r = ControlRates::of(z);
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                z.nodes,
                r.heartbeat_rpcs,
                r.heartbeat_bps / 1e6,
                r.report_bps / 1e6,
                r.membership_change_bytes / 1e6,
                r.formation_bytes / 1e9,
                r.snapshot_of_limit
            );
        }
        out
    }
}
