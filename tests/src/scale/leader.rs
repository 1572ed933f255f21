//! The Raft leader's policy loop without Raft: the cluster state from `skein-raft`, the real
//! [`policy::decide`], and what the leader does with each decision, counted as log entries.
//! Time is simulated in policy ticks; nodes go silent when they fail and speak again when they
//! return, which is all the policies see of them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use skein_raft::policy::{self, Action, HealthView};
use skein_raft::{
    ClusterConfig, ClusterState, Command, CommandResult, NodeId, PublicAddrs, Region, Roles,
};
use uuid::Uuid;

/// The timings of a cluster member with the defaults of `ClusterConfig::new`, in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// The leader's policy tick (`policy_interval`).
    pub policy_tick_ms: u64,
    /// Raft heartbeats to every follower (`raft_heartbeat`).
    pub raft_heartbeat_ms: u64,
    /// Load reports from every node to the leader (`heartbeat_interval`).
    pub load_report_ms: u64,
}

impl Timings {
    /// The defaults every node runs with.
    pub fn defaults() -> Timings {
        let addr = node_addr(0, 0);
        let config = ClusterConfig::new(
            "",
            "",
            "",
            addr,
            PublicAddrs {
                rtmp: addr,
                http: addr,
            },
        );
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        Timings {
            policy_tick_ms: ms(config.policy_interval),
            raft_heartbeat_ms: ms(config.raft_heartbeat),
            load_report_ms: ms(config.heartbeat_interval),
        }
    }
}

/// Log entries the leader wrote, by what wrote them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogCount {
    /// State-machine commands, by command name (`SetNodeHealth`, `PromoteOrigin`, ...).
    pub commands: BTreeMap<&'static str, u64>,
    /// Membership entries: one per learner added, two per voter change (joint, then final).
    pub membership: u64,
}

impl LogCount {
    /// All entries.
    pub fn total(&self) -> u64 {
        self.commands.values().sum::<u64>() + self.membership
    }
}

/// The name of a command's variant, for counting.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Bootstrap { .. } => "Bootstrap",
        Command::RegisterNode { .. } => "RegisterNode",
        Command::SetNodeHealth { .. } => "SetNodeHealth",
        Command::SetRoles { .. } => "SetRoles",
        Command::PromoteOrigin { .. } => "PromoteOrigin",
        Command::DrainOrigin { .. } => "DrainOrigin",
        Command::DemoteOrigin { .. } => "DemoteOrigin",
        Command::SetOriginTarget { .. } => "SetOriginTarget",
        Command::SetSettings(_) => "SetSettings",
        Command::UpsertRegion(_) => "UpsertRegion",
        Command::RemoveNode { .. } => "RemoveNode",
        Command::CreateToken { .. } => "CreateToken",
        Command::RevokeToken { .. } => "RevokeToken",
        Command::SetCaKeyHolder { .. } => "SetCaKeyHolder",
        Command::AddStreamKey(_) => "AddStreamKey",
        Command::RetireStreamKey { .. } => "RetireStreamKey",
    }
}

/// The address the model gives node number `n` (never dialled: only its bytes count).
pub fn node_addr(n: u64, port: u16) -> SocketAddr {
    // 127.1.0.0 and up: distinct for every n below 2^24 - 2^16.
    let [_, a, b, c] = (n as u32 + (1 << 16)).to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(127, a, b, c), port))
}

/// A leader over a simulated cluster: the committed state, the leader's health view and the
/// log it has written.
pub struct Leader {
    /// The committed cluster state.
    pub state: ClusterState,
    view: HealthView,
    index: u64,
    /// Entries written so far.
    pub log: LogCount,
    /// Simulated clock, ms.
    pub now_ms: u64,
    /// The timings the leader and the nodes run with.
    pub timings: Timings,
    /// Nodes that are down, with the time they went silent.
    down_since: BTreeMap<NodeId, u64>,
}

impl Leader {
    /// A bootstrapped cluster whose first node (the leader, id 1) is the only voter, with
    /// `settings`' origin target.
    pub fn bootstrap(origin_target: usize) -> Leader {
        let mut state = ClusterState::default();
        let settings = skein_raft::Settings {
            origin_target,
            ..Default::default()
        };
        state.apply(
            1,
            &Command::Bootstrap {
                cluster_id: Uuid::from_u128(1),
                ca_cert_pem: String::new(),
                settings,
            },
        );
        let mut leader = Leader {
            state,
            view: HealthView::default(),
            index: 1,
            log: LogCount::default(),
            now_ms: 0,
            timings: Timings::defaults(),
            down_since: BTreeMap::new(),
        };
        leader.view.leader = 1;
        leader.view.voters = BTreeSet::from([1]);
        leader.mirror();
        leader
    }

    /// Commits `command` as the leader would, counting it; panics if the state rejects it
    /// (the model only writes valid commands).
    pub fn commit(&mut self, command: Command) {
        self.index += 1;
        let result = self.state.apply(self.index, &command);
        assert!(
            !matches!(result, CommandResult::Rejected(_)),
            "{command}: {result:?}"
        );
        *self.log.commands.entry(command_name(&command)).or_default() += 1;
    }

    /// Registers node number `n` in `region`, allowed `roles`.
    pub fn register(&mut self, n: u64, region: &str, roles: Roles) {
        self.commit(Command::RegisterNode {
            uuid: Uuid::from_u128(u128::from(n) + 1),
            key_sha256: format!("{n:064x}"),
            consume_token: None,
            name: format!("node-{n}"),
            region: region.to_owned(),
            internal_addr: node_addr(n, 7000),
            public: PublicAddrs {
                rtmp: node_addr(n, 1935),
                http: node_addr(n, 8080),
            },
            roles,
        });
    }

    /// Sets a region's coordinates.
    pub fn locate(&mut self, name: &str, lat: f64, lon: f64) {
        self.commit(Command::UpsertRegion(Region {
            name: name.to_owned(),
            lat: Some(lat),
            lon: Some(lon),
            vips: Vec::new(),
        }));
    }

    /// The node stops heartbeating now.
    pub fn fail(&mut self, node: NodeId) {
        self.down_since.entry(node).or_insert(self.now_ms);
    }

    /// The node heartbeats again from now on.
    pub fn recover(&mut self, node: NodeId) {
        self.down_since.remove(&node);
    }

    /// Mirrors the membership into the state, as the store does for membership entries.
    fn mirror(&mut self) {
        self.state.voters.clone_from(&self.view.voters);
        self.state.learners.clone_from(&self.view.learners);
    }

    fn refresh_view(&mut self) {
        let now = self.now_ms;
        // A live node's last report is half an interval old on average.
        let live = self.timings.load_report_ms / 2;
        let silent = |id: &NodeId| self.down_since.get(id).map_or(live, |since| now - since);
        self.view.now_ms = now;
        self.view.silent_ms = self
            .state
            .nodes
            .keys()
            .map(|id| (*id, silent(id)))
            .collect();
        // A live learner keeps up with the log (the model has no replication lag); a drained
        // origin reports no origin streams once its streams have moved, at its next report.
        self.view.caught_up = self
            .state
            .nodes
            .keys()
            .copied()
            .filter(|id| !self.down_since.contains_key(id))
            .collect();
    }

    /// One policy tick at the current time: at most [`policy::STEPS_PER_TICK`] decisions,
    /// ending early at a membership change. Returns whether anything was done.
    pub fn tick(&mut self) -> bool {
        self.refresh_view();
        let mut acted = false;
        for _ in 0..policy::STEPS_PER_TICK {
            let Some(action) = policy::decide(&self.state, &self.view) else {
                break;
            };
            acted = true;
            match action {
                Action::Commit(command) => self.commit(command),
                Action::AddLearner(node, _) => {
                    self.view.learners.insert(node);
                    self.log.membership += 1;
                    self.mirror();
                    break;
                }
                Action::SetVoters(voters, _) => {
                    let old = std::mem::replace(&mut self.view.voters, voters);
                    self.view.learners.extend(old);
                    let voters = self.view.voters.clone();
                    self.view.learners.retain(|n| !voters.contains(n));
                    self.log.membership += 2;
                    self.mirror();
                    break;
                }
                Action::RemoveFromMembership(node) => {
                    self.view.learners.remove(&node);
                    self.log.membership += 2;
                    self.mirror();
                    break;
                }
            }
        }
        acted
    }

    /// Ticks until the policies have nothing left to do (at most `max_ticks`); returns the
    /// ticks that acted.
    pub fn settle(&mut self, max_ticks: u64) -> u64 {
        let mut ticks = 0;
        while ticks < max_ticks && self.tick() {
            ticks += 1;
            self.now_ms += self.timings.policy_tick_ms;
        }
        ticks
    }
}
