//! The replicated state machine: [`ClusterState`] and the [`Command`]s that change it.
//!
//! `apply` is pure and deterministic: every input (including the clock) comes from the command,
//! so every node that applies the same log ends with the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::types::{
    NodeHealth, NodeId, NodeInfo, OriginSlot, OriginState, PublicAddrs, Region, Roles, Settings,
    StreamKeyRecord, TokenRecord,
};

/// Everything the cluster agrees on. Published after every applied batch through
/// [`crate::Cluster::state`].
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Set by the bootstrap entry; identifies the cluster.
    pub cluster_id: Option<Uuid>,
    /// Next id handed out by `RegisterNode`; only ever grows.
    pub next_node_id: NodeId,
    /// Registered nodes.
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Regions by name.
    pub regions: BTreeMap<String, Region>,
    /// The origin pool.
    pub origins: BTreeMap<NodeId, OriginSlot>,
    /// Raft voters, mirrored from the last applied membership entry.
    pub voters: BTreeSet<NodeId>,
    /// Raft learners, mirrored from the last applied membership entry.
    pub learners: BTreeSet<NodeId>,
    /// `true` while a voter change is in its joint phase (old and new voter sets both count).
    pub voters_changing: bool,
    /// Cluster-wide settings.
    pub settings: Settings,
    /// Join tokens by id.
    pub tokens: BTreeMap<String, TokenRecord>,
    /// Cluster CA certificate (PEM). The CA's private key is never part of the state: it is
    /// kept in the data directory of the nodes listed in `ca_key_holders`.
    pub ca_cert_pem: String,
    /// Nodes that hold the CA private key (voters; they sign joins and renewals).
    pub ca_key_holders: BTreeSet<NodeId>,
    /// Removed nodes and their uuids: their certificates are refused, their uuids cannot join
    /// again.
    pub removed: BTreeMap<NodeId, Uuid>,
    /// Stream signing keys by id (publish and play tokens). Absent in states written before
    /// stream keys existed.
    #[serde(default)]
    pub stream_keys: BTreeMap<String, StreamKeyRecord>,
}

impl fmt::Debug for ClusterState {
    // Written out to keep the token hashes out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterState")
            .field("cluster_id", &self.cluster_id)
            .field("next_node_id", &self.next_node_id)
            .field("nodes", &self.nodes)
            .field("regions", &self.regions)
            .field("origins", &self.origins)
            .field("voters", &self.voters)
            .field("learners", &self.learners)
            .field("voters_changing", &self.voters_changing)
            .field("settings", &self.settings)
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .field("ca_key_holders", &self.ca_key_holders)
            .field("removed", &self.removed)
            .field("stream_keys", &self.stream_keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A change to the cluster state. Applied in log order on every node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// First entry of a new cluster.
    Bootstrap {
        /// New cluster id.
        cluster_id: Uuid,
        /// CA certificate (PEM).
        ca_cert_pem: String,
        /// Initial settings.
        settings: Settings,
    },
    /// Adds a node, or updates it if its uuid is known and the key is the same (same id back).
    /// Refused for a removed uuid or a known uuid with another key.
    RegisterNode {
        /// Identity kept on the node's disk.
        uuid: Uuid,
        /// Hex SHA-256 of the node's public key (from its CSR).
        key_sha256: String,
        /// A single-use join token consumed by this registration.
        consume_token: Option<String>,
        /// Display name.
        name: String,
        /// Region name; created if unknown.
        region: String,
        /// Internal QUIC address.
        internal_addr: SocketAddr,
        /// Public addresses.
        public: PublicAddrs,
        /// Allowed roles.
        roles: Roles,
    },
    /// Commits a health change observed by the leader.
    SetNodeHealth {
        /// Node.
        node: NodeId,
        /// New health.
        health: NodeHealth,
    },
    /// Changes what a node may do; a node that may no longer be an origin leaves the pool.
    SetRoles {
        /// Node.
        node: NodeId,
        /// New roles.
        roles: Roles,
    },
    /// Puts a node into the origin pool as active (or re-activates a draining one).
    PromoteOrigin {
        /// Node.
        node: NodeId,
        /// Leader clock, unix ms.
        now_ms: u64,
    },
    /// Takes an origin out of the ring while its streams move away.
    DrainOrigin {
        /// Node.
        node: NodeId,
        /// Leader clock, unix ms.
        now_ms: u64,
    },
    /// Removes a node from the origin pool.
    DemoteOrigin {
        /// Node.
        node: NodeId,
    },
    /// Sets the wanted pool size.
    SetOriginTarget {
        /// Wanted number of active origins.
        target: usize,
    },
    /// Replaces all settings.
    SetSettings(Settings),
    /// Adds or replaces a region.
    UpsertRegion(Region),
    /// Removes a node for good (its id is never reused).
    RemoveNode {
        /// Node.
        node: NodeId,
    },
    /// Stores a join token; expired tokens are dropped at the same time.
    CreateToken {
        /// Token record (only the hash of the secret).
        token: TokenRecord,
        /// Leader clock, unix ms.
        now_ms: u64,
    },
    /// Deletes a join token.
    RevokeToken {
        /// Token id.
        id: String,
    },
    /// Records whether a node holds the CA private key.
    SetCaKeyHolder {
        /// Node.
        node: NodeId,
        /// `true` once it has the key, `false` once it deleted it.
        holds: bool,
    },
    /// Adds a stream signing key; being the newest, it signs from now on (rotation).
    AddStreamKey(StreamKeyRecord),
    /// Retires a stream signing key: tokens it signed no longer verify. The last key stays.
    RetireStreamKey {
        /// Key id.
        id: String,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Bootstrap { cluster_id, .. } => write!(f, "bootstrap cluster {cluster_id}"),
            Command::RegisterNode {
                uuid, name, region, ..
            } => write!(f, "register node {name} ({uuid}) in {region}"),
            Command::SetNodeHealth { node, health } => write!(f, "node {node} is {health:?}"),
            Command::SetRoles { node, roles } => write!(f, "node {node} roles {roles}"),
            Command::PromoteOrigin { node, .. } => write!(f, "promote node {node} to origin"),
            Command::DrainOrigin { node, .. } => write!(f, "drain origin {node}"),
            Command::DemoteOrigin { node } => write!(f, "demote origin {node}"),
            Command::SetOriginTarget { target } => write!(f, "origin target {target}"),
            Command::SetSettings(_) => f.write_str("set settings"),
            Command::UpsertRegion(r) => write!(f, "region {}", r.name),
            Command::RemoveNode { node } => write!(f, "remove node {node}"),
            Command::CreateToken { token, .. } => write!(f, "create token {}", token.id),
            Command::RevokeToken { id } => write!(f, "revoke token {id}"),
            Command::SetCaKeyHolder { node, holds: true } => {
                write!(f, "node {node} holds the CA key")
            }
            Command::SetCaKeyHolder { node, holds: false } => {
                write!(f, "node {node} dropped the CA key")
            }
            Command::AddStreamKey(key) => write!(f, "add stream key {}", key.id),
            Command::RetireStreamKey { id } => write!(f, "retire stream key {id}"),
        }
    }
}

/// Outcome of applying a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied (also the response to blank and membership entries).
    Ok,
    /// `RegisterNode` result.
    Registered {
        /// Allocated (or existing) id.
        id: NodeId,
        /// `false` when the uuid was already registered.
        created: bool,
    },
    /// Not applied; the state is unchanged.
    Rejected(String),
}

impl ClusterState {
    /// Applies one command logged at `index`. Deterministic; never panics.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> CommandResult {
        match cmd {
            Command::Bootstrap {
                cluster_id,
                ca_cert_pem,
                settings,
            } => {
                if self.cluster_id.is_some() {
                    return reject("cluster already bootstrapped");
                }
                self.cluster_id = Some(*cluster_id);
                self.ca_cert_pem.clone_from(ca_cert_pem);
                self.settings = settings.clone();
                self.next_node_id = self.next_node_id.max(1);
                CommandResult::Ok
            }
            Command::RegisterNode {
                uuid,
                key_sha256,
                consume_token,
                name,
                region,
                internal_addr,
                public,
                roles,
            } => {
                if let Some(id) = self.removed_id(uuid) {
                    return reject(format!(
                        "node {uuid} (id {id}) was removed from the cluster; wipe its data directory to join as a new node"
                    ));
                }
                if self
                    .node_by_uuid(uuid)
                    .is_some_and(|n| n.key_sha256 != *key_sha256)
                {
                    return reject(format!(
                        "node {uuid} is already a member with another key; a node can only join again with its own key"
                    ));
                }
                if let Some(id) = consume_token
                    && self.tokens.remove(id).is_none()
                {
                    return reject(crate::token::REFUSED);
                }
                self.regions
                    .entry(region.clone())
                    .or_insert_with(|| Region {
                        name: region.clone(),
                        lat: None,
                        lon: None,
                        vips: Vec::new(),
                    });
                if let Some(node) = self.nodes.values_mut().find(|n| n.uuid == *uuid) {
                    node.name.clone_from(name);
                    node.region.clone_from(region);
                    node.internal_addr = *internal_addr;
                    node.public = *public;
                    node.roles = *roles;
                    return CommandResult::Registered {
                        id: node.id,
                        created: false,
                    };
                }
                let id = self.next_node_id.max(1);
                self.next_node_id = id + 1;
                self.nodes.insert(
                    id,
                    NodeInfo {
                        id,
                        uuid: *uuid,
                        name: name.clone(),
                        region: region.clone(),
                        internal_addr: *internal_addr,
                        public: *public,
                        roles: *roles,
                        health: NodeHealth::Up,
                        joined_index: index,
                        key_sha256: key_sha256.clone(),
                    },
                );
                CommandResult::Registered { id, created: true }
            }
            Command::SetNodeHealth { node, health } => match self.nodes.get_mut(node) {
                Some(n) => {
                    n.health = *health;
                    CommandResult::Ok
                }
                None => unknown(*node),
            },
            Command::SetRoles { node, roles } => match self.nodes.get_mut(node) {
                Some(n) => {
                    n.roles = *roles;
                    if !roles.origin {
                        self.origins.remove(node);
                    }
                    CommandResult::Ok
                }
                None => unknown(*node),
            },
            Command::PromoteOrigin { node, now_ms } => match self.nodes.get(node) {
                Some(n) if !n.roles.origin => reject(format!("node {node} may not be an origin")),
                Some(_) => {
                    let slot = OriginSlot {
                        state: OriginState::Active,
                        since_index: index,
                        since_ms: *now_ms,
                    };
                    match self.origins.get_mut(node) {
                        Some(s) if s.state == OriginState::Active => {}
                        Some(s) => *s = slot,
                        None => {
                            self.origins.insert(*node, slot);
                        }
                    }
                    CommandResult::Ok
                }
                None => unknown(*node),
            },
            Command::DrainOrigin { node, now_ms } => match self.origins.get_mut(node) {
                Some(s) => {
                    if s.state == OriginState::Active {
                        *s = OriginSlot {
                            state: OriginState::Draining,
                            since_index: index,
                            since_ms: *now_ms,
                        };
                    }
                    CommandResult::Ok
                }
                None => reject(format!("node {node} is not an origin")),
            },
            Command::DemoteOrigin { node } => match self.origins.remove(node) {
                Some(_) => CommandResult::Ok,
                None => reject(format!("node {node} is not an origin")),
            },
            Command::SetOriginTarget { target } => {
                self.settings.origin_target = *target;
                CommandResult::Ok
            }
            Command::SetSettings(settings) => {
                if settings.balance_epsilon.is_nan() || settings.balance_epsilon <= 0.0 {
                    return reject("balance_epsilon must be > 0");
                }
                self.settings = settings.clone();
                CommandResult::Ok
            }
            Command::UpsertRegion(region) => {
                self.regions.insert(region.name.clone(), region.clone());
                CommandResult::Ok
            }
            Command::RemoveNode { node } => match self.nodes.remove(node) {
                Some(info) => {
                    self.origins.remove(node);
                    self.ca_key_holders.remove(node);
                    self.removed.insert(*node, info.uuid);
                    CommandResult::Ok
                }
                None => unknown(*node),
            },
            Command::CreateToken { token, now_ms } => {
                self.tokens.retain(|_, t| t.expires_at_ms > *now_ms);
                if self.tokens.contains_key(&token.id) {
                    return reject(format!("token id {} exists", token.id));
                }
                self.tokens.insert(token.id.clone(), token.clone());
                CommandResult::Ok
            }
            Command::RevokeToken { id } => match self.tokens.remove(id) {
                Some(_) => CommandResult::Ok,
                None => reject(format!("no token {id}")),
            },
            Command::SetCaKeyHolder { node, holds } => {
                if !self.nodes.contains_key(node) {
                    return unknown(*node);
                }
                if *holds {
                    self.ca_key_holders.insert(*node);
                } else {
                    self.ca_key_holders.remove(node);
                }
                CommandResult::Ok
            }
            Command::AddStreamKey(key) => {
                if self.stream_keys.contains_key(&key.id) {
                    return reject(format!("stream key {} exists", key.id));
                }
                self.stream_keys.insert(key.id.clone(), key.clone());
                CommandResult::Ok
            }
            Command::RetireStreamKey { id } => {
                if !self.stream_keys.contains_key(id) {
                    return reject(format!("no stream key {id}"));
                }
                if self.stream_keys.len() == 1 {
                    return reject(format!(
                        "{id} is the last stream key: rotate (add a new one) before retiring it"
                    ));
                }
                self.stream_keys.remove(id);
                CommandResult::Ok
            }
        }
    }

    /// Mirrors a membership entry into `voters` / `learners`.
    pub(crate) fn set_membership(
        &mut self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        joint: bool,
    ) {
        self.voters = voters;
        self.learners = learners;
        self.voters_changing = joint;
    }

    /// Active origins whose committed health is up: the pool every edge starts routing with
    /// (then subtracts the origins it sees dead itself).
    pub fn live_origins(&self) -> Vec<NodeId> {
        self.origins
            .iter()
            .filter(|(id, slot)| {
                slot.state == OriginState::Active
                    && self
                        .nodes
                        .get(id)
                        .is_some_and(|n| n.health == NodeHealth::Up)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether `node` is a registered node that was not removed: the only nodes whose
    /// certificates the cluster transport accepts.
    pub fn is_member(&self, node: NodeId) -> bool {
        self.nodes.contains_key(&node) && !self.removed.contains_key(&node)
    }

    /// The id `uuid` had before it was removed, if it was.
    pub fn removed_id(&self, uuid: &Uuid) -> Option<NodeId> {
        self.removed
            .iter()
            .find(|(_, u)| *u == uuid)
            .map(|(id, _)| *id)
    }

    /// The node registered with `uuid`, if any.
    pub fn node_by_uuid(&self, uuid: &Uuid) -> Option<&NodeInfo> {
        self.nodes.values().find(|n| n.uuid == *uuid)
    }
}

fn reject(msg: impl Into<String>) -> CommandResult {
    CommandResult::Rejected(msg.into())
}

fn unknown(node: NodeId) -> CommandResult {
    reject(format!("unknown node {node}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 3, 1], port))
    }

    fn register(uuid: Uuid, region: &str) -> Command {
        register_with(uuid, region, &format!("key-of-{uuid}"), None)
    }

    fn register_with(uuid: Uuid, region: &str, key: &str, consume: Option<&str>) -> Command {
        Command::RegisterNode {
            uuid,
            key_sha256: key.into(),
            consume_token: consume.map(Into::into),
            name: format!("n-{uuid}"),
            region: region.into(),
            internal_addr: addr(7000),
            public: PublicAddrs {
                rtmp: addr(1935),
                http: addr(8080),
            },
            roles: Roles::default(),
        }
    }

    #[test]
    fn register_is_idempotent_by_uuid_and_ids_are_never_reused() {
        let mut s = ClusterState::default();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        assert_eq!(
            s.apply(1, &register(a, "eu")),
            CommandResult::Registered {
                id: 1,
                created: true
            }
        );
        assert_eq!(
            s.apply(2, &register(a, "us")),
            CommandResult::Registered {
                id: 1,
                created: false
            }
        );
        assert_eq!(s.nodes[&1].region, "us");
        assert_eq!(
            s.apply(3, &register(b, "eu")),
            CommandResult::Registered {
                id: 2,
                created: true
            }
        );
        assert_eq!(
            s.apply(4, &Command::RemoveNode { node: 2 }),
            CommandResult::Ok
        );
        assert_eq!(s.removed.get(&2), Some(&b));
        assert!(!s.is_member(2) && s.is_member(1));
        // A removed uuid cannot come back; a new node never gets id 2 again.
        assert!(matches!(
            s.apply(5, &register(b, "eu")),
            CommandResult::Rejected(why) if why.contains("was removed")
        ));
        assert_eq!(
            s.apply(6, &register(Uuid::new_v4(), "eu")),
            CommandResult::Registered {
                id: 3,
                created: true
            }
        );
        assert!(s.regions.contains_key("eu") && s.regions.contains_key("us"));
    }

    #[test]
    fn a_member_s_uuid_cannot_be_taken_over_with_another_key() {
        let mut s = ClusterState::default();
        let a = Uuid::new_v4();
        s.apply(1, &register_with(a, "eu", "k1", None));
        assert!(matches!(
            s.apply(2, &register_with(a, "eu", "k2", None)),
            CommandResult::Rejected(why) if why.contains("another key")
        ));
        assert_eq!(
            s.apply(3, &register_with(a, "eu", "k1", None)),
            CommandResult::Registered {
                id: 1,
                created: false
            }
        );
    }

    #[test]
    fn a_single_use_token_is_consumed_by_its_registration() {
        let mut s = ClusterState::default();
        let token = crate::token::JoinToken::generate();
        s.apply(
            1,
            &Command::CreateToken {
                token: token.record(u64::MAX, None, true),
                now_ms: 0,
            },
        );
        let first = register_with(Uuid::new_v4(), "eu", "k1", Some(&token.id));
        assert!(matches!(
            s.apply(2, &first),
            CommandResult::Registered { id: 1, .. }
        ));
        assert!(!s.tokens.contains_key(&token.id));
        let second = register_with(Uuid::new_v4(), "eu", "k2", Some(&token.id));
        assert_eq!(
            s.apply(3, &second),
            CommandResult::Rejected(crate::token::REFUSED.into())
        );
        assert_eq!(s.nodes.len(), 1);
    }

    #[test]
    fn origin_lifecycle() {
        let mut s = ClusterState::default();
        s.apply(1, &register(Uuid::new_v4(), "eu"));
        assert_eq!(
            s.apply(
                2,
                &Command::PromoteOrigin {
                    node: 1,
                    now_ms: 10
                }
            ),
            CommandResult::Ok
        );
        assert_eq!(s.live_origins(), vec![1]);
        s.apply(
            3,
            &Command::SetNodeHealth {
                node: 1,
                health: NodeHealth::Down,
            },
        );
        assert!(s.live_origins().is_empty());
        s.apply(
            4,
            &Command::SetNodeHealth {
                node: 1,
                health: NodeHealth::Up,
            },
        );
        s.apply(
            5,
            &Command::DrainOrigin {
                node: 1,
                now_ms: 20,
            },
        );
        assert!(s.live_origins().is_empty());
        assert_eq!(s.origins[&1].state, OriginState::Draining);
        s.apply(6, &Command::DemoteOrigin { node: 1 });
        assert!(s.origins.is_empty());
        assert!(matches!(
            s.apply(7, &Command::PromoteOrigin { node: 9, now_ms: 0 }),
            CommandResult::Rejected(_)
        ));
        s.apply(
            8,
            &Command::SetRoles {
                node: 1,
                roles: Roles {
                    edge: true,
                    origin: false,
                },
            },
        );
        assert!(matches!(
            s.apply(9, &Command::PromoteOrigin { node: 1, now_ms: 0 }),
            CommandResult::Rejected(_)
        ));
    }

    #[test]
    fn tokens_expire_on_create_and_can_be_revoked() {
        let mut s = ClusterState::default();
        let tok = |id: &str, exp| TokenRecord {
            id: id.into(),
            secret_sha256: "00".into(),
            expires_at_ms: exp,
            created_by: None,
            single_use: false,
        };
        s.apply(
            1,
            &Command::CreateToken {
                token: tok("aaaaaa", 100),
                now_ms: 0,
            },
        );
        s.apply(
            2,
            &Command::CreateToken {
                token: tok("bbbbbb", 1000),
                now_ms: 200,
            },
        );
        assert!(!s.tokens.contains_key("aaaaaa"));
        assert!(s.tokens.contains_key("bbbbbb"));
        assert_eq!(
            s.apply(
                3,
                &Command::RevokeToken {
                    id: "bbbbbb".into()
                }
            ),
            CommandResult::Ok
        );
        assert!(s.tokens.is_empty());
    }

    #[test]
    fn same_log_same_state() {
        let cmds = [
            register(Uuid::from_u128(1), "eu"),
            register(Uuid::from_u128(2), "us"),
            Command::PromoteOrigin { node: 2, now_ms: 5 },
            Command::SetOriginTarget { target: 3 },
        ];
        let run = || {
            let mut s = ClusterState::default();
            for (i, c) in cmds.iter().enumerate() {
                s.apply(i as u64 + 1, c);
            }
            serde_json::to_string(&s).unwrap_or_default()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn stream_keys_rotate_and_the_last_one_stays() {
        let mut s = ClusterState::default();
        let key = |id: &str, created_ms| StreamKeyRecord {
            id: id.into(),
            secret: "c2VjcmV0".into(),
            created_ms,
        };
        assert_eq!(
            s.apply(1, &Command::AddStreamKey(key("a", 1))),
            CommandResult::Ok
        );
        assert!(matches!(
            s.apply(2, &Command::AddStreamKey(key("a", 2))),
            CommandResult::Rejected(_)
        ));
        let retire = |id: &str| Command::RetireStreamKey { id: id.into() };
        assert!(matches!(
            s.apply(3, &retire("a")),
            CommandResult::Rejected(_)
        ));
        assert_eq!(
            s.apply(4, &Command::AddStreamKey(key("b", 5))),
            CommandResult::Ok
        );
        assert_eq!(s.apply(5, &retire("a")), CommandResult::Ok);
        assert!(matches!(
            s.apply(6, &retire("a")),
            CommandResult::Rejected(_)
        ));
        assert_eq!(s.stream_keys.keys().collect::<Vec<_>>(), ["b"]);
        assert!(!format!("{s:?}").contains("c2VjcmV0"), "no secret in Debug");
    }
}
