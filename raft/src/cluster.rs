//! [`Cluster`]: the handle the media node uses (`init`, `join`, `open`, status, tokens, relay).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
use parking_lot::Mutex;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::ClusterError;
use crate::network::{self, Network};
use crate::pki;
use crate::policy::{self, Action, HealthView};
use crate::rpc::{JoinAccepted, JoinRequest, Request, Response};
use crate::state::{ClusterState, Command, CommandResult};
use crate::status::{self, ClusterStatus, LiveInfo};
use crate::store::{self, LogStore, StateMachine};
use crate::token::{self, JoinToken};
use crate::transport::{
    self, ALPN_JOIN, ALPN_RAFT, ALPN_RELAY, CLOSE_NO_CERT, NodeTls, PinnedCaVerifier, Transport,
};
use crate::typecfg::TypeConfig;
use crate::types::{LoadReport, NodeId, PublicAddrs, Region, Roles, Settings};

/// Configuration of one node. Paths and addresses are the caller's; nothing is global.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Directory for the identity, keys, certificates and the Raft database.
    pub data_dir: PathBuf,
    /// Node name shown in status.
    pub name: String,
    /// Region this node serves.
    pub region: String,
    /// Internal QUIC address: bound and advertised (never the public one).
    pub internal_addr: SocketAddr,
    /// Public addresses (RTMP, HTTP), for status and DNS.
    pub public: PublicAddrs,
    /// Allowed roles.
    pub roles: Roles,
    /// Settings of a new cluster (used by `init` only).
    pub settings: Settings,
    /// How often load reports go to the leader.
    pub heartbeat_interval: Duration,
    /// How often the leader runs its policies.
    pub policy_interval: Duration,
    /// Raft heartbeat interval.
    pub raft_heartbeat: Duration,
    /// Raft election timeout; the upper bound is twice this.
    pub election_timeout: Duration,
}

impl ClusterConfig {
    /// Configuration with default timings.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        name: impl Into<String>,
        region: impl Into<String>,
        internal_addr: SocketAddr,
        public: PublicAddrs,
    ) -> ClusterConfig {
        ClusterConfig {
            data_dir: data_dir.into(),
            name: name.into(),
            region: region.into(),
            internal_addr,
            public,
            roles: Roles::default(),
            settings: Settings::default(),
            heartbeat_interval: Duration::from_millis(500),
            policy_interval: Duration::from_millis(500),
            raft_heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(500),
        }
    }

    fn raft_config(&self) -> Result<Arc<openraft::Config>, ClusterError> {
        let min = self.election_timeout.as_millis() as u64;
        let cfg = openraft::Config {
            cluster_name: "skein".into(),
            heartbeat_interval: self.raft_heartbeat.as_millis() as u64,
            election_timeout_min: min,
            election_timeout_max: min * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(500),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        };
        Ok(Arc::new(
            cfg.validate()
                .map_err(|e| ClusterError::Raft(e.to_string()))?,
        ))
    }
}

/// What `init` hands back: everything `skein join` needs.
#[derive(Clone, Debug)]
pub struct JoinInfo {
    /// Bootstrap join token.
    pub token: JoinToken,
    /// `sha256:<hex>` of the cluster CA certificate.
    pub ca_hash: String,
    /// Seed addresses (the internal address of this node).
    pub seeds: Vec<SocketAddr>,
}

impl JoinInfo {
    /// The command to print for operators, e.g.
    /// `skein join 10.0.0.1:7946 --token abcdef.0123456789abcdef --ca-hash sha256:... --region R`.
    pub fn command(&self, region: &str) -> String {
        let seeds: Vec<String> = self.seeds.iter().map(ToString::to_string).collect();
        format!(
            "skein join {} --token {} --ca-hash {} --region {region}",
            seeds.join(","),
            self.token,
            self.ca_hash
        )
    }
}

/// A media relay stream from or to another cluster node, authenticated by the cluster CA.
pub struct RelayStream {
    /// Node id from the peer's certificate.
    pub peer: NodeId,
    /// Sending half.
    pub send: SendStream,
    /// Receiving half.
    pub recv: RecvStream,
}

/// Incoming relay streams (see [`Cluster::relay_listener`]).
pub struct RelayListener {
    rx: mpsc::Receiver<RelayStream>,
}

impl RelayListener {
    /// Next relay stream opened by a peer; `None` after shutdown.
    pub async fn accept(&mut self) -> Option<RelayStream> {
        self.rx.recv().await
    }
}

/// Identity kept on disk so that a repeated join or a restart keeps the same node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Identity {
    uuid: Uuid,
    node_id: Option<NodeId>,
    cluster_id: Option<Uuid>,
}

const IDENTITY: &str = "identity.json";
const NODE_KEY: &str = "node.key";
const NODE_CERT: &str = "node.crt";
const CA_CERT: &str = "ca.crt";
const DB: &str = "raft.redb";

fn read_identity(dir: &Path) -> Result<Option<Identity>, ClusterError> {
    match std::fs::read(dir.join(IDENTITY)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ClusterError::Invalid(format!("{}: {e}", IDENTITY))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes a file atomically (temp + fsync + rename).
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ClusterError> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

fn write_identity(dir: &Path, id: &Identity) -> Result<(), ClusterError> {
    let bytes = serde_json::to_vec_pretty(id).map_err(|e| ClusterError::Invalid(e.to_string()))?;
    write_file(dir, IDENTITY, &bytes)
}

fn read_text(dir: &Path, name: &str) -> Result<String, ClusterError> {
    std::fs::read_to_string(dir.join(name))
        .map_err(|e| ClusterError::NotInitialized(format!("{} ({name}: {e})", dir.display())))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn raft_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Raft(e.to_string())
}

struct Heard {
    at: Instant,
    load: LoadReport,
}

struct Inner {
    id: NodeId,
    config: ClusterConfig,
    raft: Raft<TypeConfig, StateMachine>,
    transport: Arc<Transport>,
    state: watch::Receiver<Arc<ClusterState>>,
    /// Leader-side heartbeat table (memory only).
    heard: Mutex<HashMap<NodeId, Heard>>,
    /// This node's latest load, sent with every heartbeat.
    load: Mutex<LoadReport>,
    relay_tx: mpsc::Sender<RelayStream>,
    relay_rx: Mutex<Option<mpsc::Receiver<RelayStream>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// To wait, at shutdown, until storage is released (so the directory can be reopened).
    db: std::sync::Weak<redb::Database>,
}

/// A running cluster member. Dropping it stops the node's background tasks and endpoint;
/// prefer [`Cluster::shutdown`] for an orderly stop.
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
        self.inner
            .transport
            .endpoint
            .close(0u32.into(), b"shutdown");
    }
}

impl Cluster {
    /// Bootstraps a one-node cluster in `config.data_dir`: creates the cluster CA, this node's
    /// key and certificate (node id 1), the first log entries and a join token valid for
    /// `token_ttl`. Fails if the directory already belongs to a cluster.
    pub async fn init(
        config: ClusterConfig,
        token_ttl: Duration,
    ) -> Result<(Cluster, JoinInfo), ClusterError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir)?;
        if read_identity(&dir)?.and_then(|i| i.node_id).is_some() {
            return Err(ClusterError::AlreadyInitialized(dir.display().to_string()));
        }
        let (ca_cert_pem, ca_key_pem) = pki::generate_ca()?;
        let key_pem = pki::generate_node_key()?;
        let cert_pem = pki::sign_csr(&ca_cert_pem, &ca_key_pem, &pki::make_csr(&key_pem)?, 1)?;
        let cluster_id = Uuid::new_v4();
        let identity = Identity {
            uuid: Uuid::new_v4(),
            node_id: Some(1),
            cluster_id: Some(cluster_id),
        };
        write_file(&dir, NODE_KEY, key_pem.as_bytes())?;
        write_file(&dir, NODE_CERT, cert_pem.as_bytes())?;
        write_file(&dir, CA_CERT, ca_cert_pem.as_bytes())?;
        let tls = NodeTls {
            ca_cert_pem: ca_cert_pem.clone(),
            cert_pem,
            key_pem,
        };
        let cluster = Cluster::start(config, 1, tls).await?;
        let addr = cluster.inner.config.internal_addr;
        cluster
            .inner
            .raft
            .initialize(BTreeMap::from([(1, BasicNode::new(addr))]))
            .await
            .map_err(raft_err)?;
        cluster
            .inner
            .raft
            .wait(Some(Duration::from_secs(30)))
            .current_leader(1, "bootstrap leader")
            .await
            .map_err(raft_err)?;
        let c = &cluster.inner.config;
        cluster
            .write(Command::Bootstrap {
                cluster_id,
                ca_cert_pem: ca_cert_pem.clone(),
                ca_key_pem,
                settings: c.settings.clone(),
            })
            .await?;
        let reg = cluster
            .write(Command::RegisterNode {
                uuid: identity.uuid,
                name: c.name.clone(),
                region: c.region.clone(),
                internal_addr: addr,
                public: c.public,
                roles: c.roles,
            })
            .await?;
        if reg
            != (CommandResult::Registered {
                id: 1,
                created: true,
            })
        {
            return Err(ClusterError::Raft(format!(
                "bootstrap registration gave {reg:?}"
            )));
        }
        write_identity(&dir, &identity)?;
        let token = cluster.create_token(token_ttl).await?;
        let info = JoinInfo {
            token,
            ca_hash: pki::ca_hash_pem(&ca_cert_pem)?,
            seeds: vec![addr],
        };
        tracing::info!(node = 1, %cluster_id, "cluster initialised");
        Ok((cluster, info))
    }

    /// Joins the cluster through `seeds` with a join `token` (`ID.SECRET`), trusting only a
    /// seed whose CA hashes to `ca_hash` (`sha256:<hex>`). Idempotent: a node that already
    /// joined from this data directory simply reopens; one that was interrupted keeps its uuid
    /// and key and gets its id back.
    pub async fn join(
        config: ClusterConfig,
        seeds: &[SocketAddr],
        token: &str,
        ca_hash: &str,
    ) -> Result<Cluster, ClusterError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir)?;
        let mut identity = read_identity(&dir)?.unwrap_or_else(|| Identity {
            uuid: Uuid::new_v4(),
            ..Identity::default()
        });
        if identity.node_id.is_some() && dir.join(NODE_CERT).exists() {
            return Cluster::open(config).await;
        }
        let pinned = pki::parse_ca_hash(ca_hash)?;
        JoinToken::parse(token).map_err(ClusterError::Invalid)?;
        write_identity(&dir, &identity)?;
        let key_pem = match std::fs::read_to_string(dir.join(NODE_KEY)) {
            Ok(k) => k,
            Err(_) => {
                let k = pki::generate_node_key()?;
                write_file(&dir, NODE_KEY, k.as_bytes())?;
                k
            }
        };
        let req = JoinRequest {
            token: token.to_string(),
            csr_pem: pki::make_csr(&key_pem)?,
            uuid: identity.uuid,
            name: config.name.clone(),
            region: config.region.clone(),
            internal_addr: config.internal_addr,
            public: config.public,
            roles: config.roles,
        };
        let accepted =
            join_via_seeds(config.internal_addr.ip(), seeds, pinned, ca_hash, &req).await?;
        if pki::ca_hash_pem(&accepted.ca_cert_pem)? != ca_hash {
            return Err(ClusterError::CaMismatch {
                presented: pki::ca_hash_pem(&accepted.ca_cert_pem)?,
                pinned: ca_hash.to_string(),
            });
        }
        write_file(&dir, NODE_CERT, accepted.cert_pem.as_bytes())?;
        write_file(&dir, CA_CERT, accepted.ca_cert_pem.as_bytes())?;
        identity.node_id = Some(accepted.node_id);
        identity.cluster_id = accepted.cluster_id;
        write_identity(&dir, &identity)?;
        tracing::info!(
            node = accepted.node_id,
            members = accepted.members.len(),
            "joined cluster"
        );
        Cluster::open(config).await
    }

    /// Whether `data_dir` holds the identity of a node that has joined (or initialised) a
    /// cluster, i.e. whether [`Cluster::open`] can restart it.
    pub fn is_member(data_dir: &Path) -> bool {
        read_identity(data_dir)
            .ok()
            .flatten()
            .is_some_and(|i| i.node_id.is_some())
            && data_dir.join(NODE_CERT).exists()
    }

    /// Restarts a node from its data directory (same id, key and certificate).
    pub async fn open(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let dir = config.data_dir.clone();
        let id = read_identity(&dir)?
            .and_then(|i| i.node_id)
            .ok_or_else(|| ClusterError::NotInitialized(dir.display().to_string()))?;
        let tls = NodeTls {
            ca_cert_pem: read_text(&dir, CA_CERT)?,
            cert_pem: read_text(&dir, NODE_CERT)?,
            key_pem: read_text(&dir, NODE_KEY)?,
        };
        Cluster::start(config, id, tls).await
    }

    /// **Unsafe break-glass** for a lost majority (like etcd's `--force-new-cluster`): rewrites
    /// the stored membership of the (stopped) node in `config.data_dir` to this node alone as
    /// the only voter, keeping the applied state. Entries that were not applied here are lost,
    /// and if the old majority comes back it must not be restarted with its old data (it would
    /// form a second cluster). Run it on one node only, then [`Cluster::open`] it; the policies
    /// then re-add the other registered nodes as learners and voters.
    pub fn recover_force_new_cluster(config: &ClusterConfig) -> Result<(), ClusterError> {
        let dir = &config.data_dir;
        let id = read_identity(dir)?
            .and_then(|i| i.node_id)
            .ok_or_else(|| ClusterError::NotInitialized(dir.display().to_string()))?;
        let db = store::open_db(&dir.join(DB))?;
        store::force_single_voter(&db, id, config.internal_addr.to_string())?;
        tracing::warn!(node = id, "membership forced to this node alone");
        Ok(())
    }

    async fn start(
        config: ClusterConfig,
        id: NodeId,
        tls: NodeTls,
    ) -> Result<Cluster, ClusterError> {
        let path = config.data_dir.join(DB);
        let mut attempts = 0;
        // A previous run of this node in the same process may still be releasing the file.
        let db = loop {
            match store::open_db(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => break r?,
            }
        };
        let (state_tx, state_rx) = watch::channel(Arc::new(ClusterState::default()));
        let sm = StateMachine::open(db.clone(), state_tx)?;
        let weak_db = Arc::downgrade(&db);
        let log = LogStore::new(db);
        let transport = Arc::new(Transport::bind(config.internal_addr, &tls).await?);
        let net = Network {
            transport: transport.clone(),
        };
        let raft = Raft::new(id, config.raft_config()?, net, log, sm)
            .await
            .map_err(raft_err)?;
        let (relay_tx, relay_rx) = mpsc::channel(64);
        let inner = Arc::new(Inner {
            id,
            config,
            raft,
            transport,
            state: state_rx,
            heard: Mutex::new(HashMap::new()),
            load: Mutex::new(LoadReport::default()),
            relay_tx,
            relay_rx: Mutex::new(Some(relay_rx)),
            tasks: Mutex::new(Vec::new()),
            db: weak_db,
        });
        let tasks = vec![
            tokio::spawn(accept_loop(inner.clone())),
            tokio::spawn(heartbeat_loop(inner.clone())),
            tokio::spawn(policy_loop(inner.clone())),
        ];
        *inner.tasks.lock() = tasks;
        Ok(Cluster { inner })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// The last committed cluster state; changes whenever entries are applied. Routing uses
    /// `state.live_origins()` minus the origins this node sees dead itself.
    pub fn state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.inner.state.clone()
    }

    /// Current Raft leader as known here.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow_watched().current_leader
    }

    /// Records this node's load; it goes to the leader with the next heartbeat (not logged).
    pub fn report_load(&self, load: LoadReport) {
        *self.inner.load.lock() = load;
    }

    /// Applies a command through the leader (forwarded when this node is not the leader).
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        write(&self.inner, cmd).await
    }

    /// Creates a join token valid for `ttl` (`skein token create`).
    pub async fn create_token(&self, ttl: Duration) -> Result<JoinToken, ClusterError> {
        let t = JoinToken::generate();
        let now = now_ms();
        let rec = t.record(now + ttl.as_millis() as u64, Some(self.inner.id));
        expect_ok(
            self.write(Command::CreateToken {
                token: rec,
                now_ms: now,
            })
            .await?,
        )?;
        Ok(t)
    }

    /// Deletes a join token.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClusterError> {
        expect_ok(self.write(Command::RevokeToken { id: id.into() }).await?)
    }

    /// Adds or replaces a region (coordinates and VIPs for the GeoDNS).
    pub async fn upsert_region(&self, region: Region) -> Result<(), ClusterError> {
        expect_ok(self.write(Command::UpsertRegion(region)).await?)
    }

    /// Sets the wanted number of origins.
    pub async fn set_origin_target(&self, target: usize) -> Result<(), ClusterError> {
        expect_ok(self.write(Command::SetOriginTarget { target }).await?)
    }

    /// Removes a node for good (`skein remove NODE`); the leader then takes it out of the Raft
    /// membership. Its id is never reused.
    pub async fn remove(&self, node: NodeId) -> Result<(), ClusterError> {
        if !self.inner.state.borrow().nodes.contains_key(&node) {
            return Err(ClusterError::UnknownNode(node));
        }
        expect_ok(self.write(Command::RemoveNode { node }).await?)
    }

    /// Leaves the cluster (`skein leave`): removes this node and waits (bounded) until it is no
    /// longer a voter. The caller shuts down afterwards.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let me = self.inner.id;
        expect_ok(self.write(Command::RemoveNode { node: me }).await?)?;
        let mut rx = self.inner.state.clone();
        let wait = rx.wait_for(|s| !s.voters.contains(&me));
        if tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .is_err()
        {
            tracing::warn!("left the registry but still a voter after 15 s");
        }
        Ok(())
    }

    /// Cluster status; asked from the leader (with loads and heartbeats) when reachable, else
    /// built from the local committed state.
    pub async fn status(&self) -> ClusterStatus {
        let inner = &self.inner;
        if let Some(leader) = self.leader()
            && leader != inner.id
            && let Some(addr) = leader_addr(inner, leader)
            && let Ok(Response::Status(s)) = network::send(
                &inner.transport,
                leader,
                addr,
                &Request::Status,
                Duration::from_secs(2),
            )
            .await
        {
            return *s;
        }
        local_status(inner)
    }

    /// Takes the incoming relay stream listener. Only one exists: the second call gets `None`.
    /// Without a listener, incoming relay streams are refused.
    pub fn relay_listener(&self) -> Option<RelayListener> {
        self.inner
            .relay_rx
            .lock()
            .take()
            .map(|rx| RelayListener { rx })
    }

    /// Opens a relay bi-stream to `node` (connection reused; the peer's certificate must carry
    /// `node`'s id).
    pub async fn open_relay(&self, node: NodeId) -> Result<RelayStream, ClusterError> {
        let addr = self
            .inner
            .state
            .borrow()
            .nodes
            .get(&node)
            .map(|n| n.internal_addr)
            .ok_or(ClusterError::UnknownNode(node))?;
        let t = &self.inner.transport;
        let conn = t.connection(addr, ALPN_RELAY).await?;
        let peer = server_node_id(&conn);
        if peer != Some(node) {
            t.forget(addr, ALPN_RELAY);
            return Err(ClusterError::Transport(format!(
                "{addr} is node {peer:?}, not {node}"
            )));
        }
        match conn.open_bi().await {
            Ok((send, recv)) => Ok(RelayStream {
                peer: node,
                send,
                recv,
            }),
            Err(e) => {
                t.forget(addr, ALPN_RELAY);
                Err(ClusterError::Transport(e.to_string()))
            }
        }
    }

    /// Stops Raft, the background tasks and the endpoint (peers are told at once) through a
    /// shared handle; for a process that is about to exit. [`Cluster::shutdown`] also waits
    /// until the database is released.
    pub async fn stop(&self) {
        let tasks: Vec<JoinHandle<()>> = self.inner.tasks.lock().drain(..).collect();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        self.inner
            .transport
            .endpoint
            .close(0u32.into(), b"shutdown");
    }

    /// Stops Raft, the background tasks and the endpoint, and waits (bounded) until the data
    /// directory's database is released so that it can be reopened.
    pub async fn shutdown(self) {
        self.stop().await;
        let endpoint = self.inner.transport.endpoint.clone();
        let db = self.inner.db.clone();
        let transport = Arc::downgrade(&self.inner.transport);
        drop(self);
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        drop(endpoint);
        for _ in 0..100 {
            if db.strong_count() == 0 && transport.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("storage or endpoint still in use after shutdown");
    }
}

fn expect_ok(r: CommandResult) -> Result<(), ClusterError> {
    match r {
        CommandResult::Rejected(why) => Err(ClusterError::Rejected(why)),
        _ => Ok(()),
    }
}

fn server_node_id(conn: &Connection) -> Option<NodeId> {
    transport::peer_node_id(conn)
}

fn leader_addr(inner: &Inner, leader: NodeId) -> Option<SocketAddr> {
    let from_membership = inner
        .raft
        .metrics()
        .borrow_watched()
        .membership_config
        .get_node(&leader)
        .and_then(|n| n.addr.parse().ok());
    from_membership.or_else(|| {
        inner
            .state
            .borrow()
            .nodes
            .get(&leader)
            .map(|n| n.internal_addr)
    })
}

/// Writes through the leader: locally when leader, else forwarded; retried while a leader is
/// being elected (bounded by a deadline).
async fn write(inner: &Inner, cmd: Command) -> Result<CommandResult, ClusterError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hint = match inner.raft.client_write(cmd.clone()).await {
            Ok(r) => return Ok(r.data),
            Err(e) => match e.forward_to_leader() {
                Some(f) => f.leader_id,
                None => return Err(raft_err(e)),
            },
        };
        if let Some(leader) = hint.filter(|l| *l != inner.id)
            && let Some(addr) = leader_addr(inner, leader)
        {
            match network::send(
                &inner.transport,
                leader,
                addr,
                &Request::Write(cmd.clone()),
                // Short: a leader that just died must not hold the write past the election
                // that replaces it (commands are idempotent, so a retry is harmless).
                Duration::from_millis(500),
            )
            .await
            {
                Ok(Response::Written(r)) => return Ok(r),
                Ok(other) => tracing::debug!("forwarded write: {other:?}"),
                Err(e) => tracing::debug!("forwarded write: {e}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::NoLeader);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn local_status(inner: &Inner) -> ClusterStatus {
    let m = inner.raft.metrics().borrow_watched().clone();
    let heard = if m.state == ServerState::Leader {
        let now = Instant::now();
        inner
            .heard
            .lock()
            .iter()
            .map(|(id, h)| {
                (
                    *id,
                    (now.duration_since(h.at).as_millis() as u64, h.load.clone()),
                )
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let state = inner.state.borrow().clone();
    status::build(
        &state,
        LiveInfo {
            reported_by: inner.id,
            leader: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index),
            heard,
        },
    )
}

/// Tries the seeds in order; a CA mismatch stops at once (it will not get better).
async fn join_via_seeds(
    local_ip: IpAddr,
    seeds: &[SocketAddr],
    pinned: [u8; 32],
    pinned_text: &str,
    req: &JoinRequest,
) -> Result<JoinAccepted, ClusterError> {
    let bind_ip = if local_ip.is_unspecified() {
        match local_ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    } else {
        local_ip
    };
    let endpoint = Endpoint::client(SocketAddr::new(bind_ip, 0))
        .map_err(|e| ClusterError::Transport(format!("client endpoint: {e}")))?;
    let mut errors = Vec::new();
    for seed in seeds {
        let verifier = PinnedCaVerifier::new(pinned);
        let attempt = async {
            let conn = endpoint
                .connect_with(verifier.client_config()?, *seed, pki::SERVER_NAME)
                .map_err(|e| ClusterError::Transport(e.to_string()))?
                .await
                .map_err(|e| ClusterError::Transport(e.to_string()))?;
            let r = transport::call::<_, Response>(
                &conn,
                &Request::Join(req.clone()),
                Duration::from_secs(20),
            )
            .await;
            conn.close(0u32.into(), b"done");
            r
        };
        let result = tokio::time::timeout(Duration::from_secs(25), attempt).await;
        if let Some(presented) = verifier.mismatch.lock().take() {
            return Err(ClusterError::CaMismatch {
                presented,
                pinned: pinned_text.to_string(),
            });
        }
        match result {
            Ok(Ok(Response::Joined(a))) => {
                endpoint.close(0u32.into(), b"joined");
                return Ok(a);
            }
            Ok(Ok(Response::Refused(why))) => return Err(ClusterError::JoinRefused(why)),
            Ok(Ok(other)) => errors.push(format!("{seed}: {other:?}")),
            Ok(Err(e)) => errors.push(format!("{seed}: {e}")),
            Err(_) => errors.push(format!("{seed}: timed out")),
        }
    }
    endpoint.close(0u32.into(), b"failed");
    Err(ClusterError::SeedsUnreachable(errors.join("; ")))
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.transport.endpoint.accept().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => serve_connection(inner, conn).await,
                Err(e) => tracing::debug!("incoming handshake failed: {e}"),
            }
        });
    }
}

async fn serve_connection(inner: Arc<Inner>, conn: Connection) {
    let alpn = transport::alpn_of(&conn).unwrap_or_default();
    if alpn == ALPN_JOIN {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let inner = inner.clone();
            tokio::spawn(async move {
                let resp = match transport::read_msg::<Request>(&mut recv).await {
                    Ok(Request::Join(req)) => handle_join(&inner, req).await,
                    Ok(_) => Response::Failed("only join requests on this ALPN".into()),
                    Err(e) => Response::Failed(e.to_string()),
                };
                let _ = transport::write_msg(&mut send, &resp).await;
            });
        }
        return;
    }
    // Everything else needs a cluster certificate.
    let Some(peer) = transport::peer_node_id(&conn) else {
        tracing::warn!(remote = %conn.remote_address(), "connection without cluster certificate closed");
        conn.close(CLOSE_NO_CERT.into(), b"cluster certificate required");
        return;
    };
    if alpn == ALPN_RAFT {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let inner = inner.clone();
            tokio::spawn(async move {
                let resp = match transport::read_msg::<Request>(&mut recv).await {
                    Ok(req) => handle_rpc(&inner, req).await,
                    Err(e) => Response::Failed(e.to_string()),
                };
                let _ = transport::write_msg(&mut send, &resp).await;
            });
        }
    } else if alpn == ALPN_RELAY {
        if !inner.state.borrow().nodes.contains_key(&peer) {
            conn.close(CLOSE_NO_CERT.into(), b"not a member");
            return;
        }
        while let Ok((send, recv)) = conn.accept_bi().await {
            if inner
                .relay_tx
                .send(RelayStream { peer, send, recv })
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

async fn handle_rpc(inner: &Arc<Inner>, req: Request) -> Response {
    let failed = |e: &dyn std::fmt::Display| Response::Failed(e.to_string());
    match req {
        Request::Append(r) => inner
            .raft
            .append_entries(r)
            .await
            .map_or_else(|e| failed(&e), Response::Append),
        Request::Vote(r) => inner
            .raft
            .vote(r)
            .await
            .map_or_else(|e| failed(&e), Response::Vote),
        Request::PreVote(r) => inner
            .raft
            .pre_vote(r)
            .await
            .map_or_else(|e| failed(&e), Response::Vote),
        Request::Snapshot { vote, meta, data } => {
            let snap = openraft::type_config::alias::SnapshotOf::<TypeConfig, Vec<u8>> {
                meta,
                snapshot: data,
            };
            inner
                .raft
                .install_full_snapshot(vote, snap)
                .await
                .map_or_else(|e| failed(&e), Response::Snapshot)
        }
        Request::Heartbeat { node, load } => {
            inner.heard.lock().insert(
                node,
                Heard {
                    at: Instant::now(),
                    load,
                },
            );
            Response::Ack
        }
        Request::Write(cmd) => match inner.raft.client_write(cmd).await {
            Ok(r) => Response::Written(r.data),
            Err(e) => failed(&e),
        },
        Request::Status => Response::Status(Box::new(local_status(inner))),
        Request::Join(req) => handle_join(inner, req).await,
    }
}

/// Leader side of a join (a follower seed forwards to the leader).
async fn handle_join(inner: &Arc<Inner>, req: JoinRequest) -> Response {
    let leader = inner.raft.metrics().borrow_watched().current_leader;
    if leader != Some(inner.id) {
        let Some(l) = leader else {
            return Response::Failed("no leader right now, retry".into());
        };
        let Some(addr) = leader_addr(inner, l) else {
            return Response::Failed("leader address unknown".into());
        };
        return network::send(
            &inner.transport,
            l,
            addr,
            &Request::Join(req),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|e| Response::Failed(format!("forward to leader: {e}")));
    }
    let state = inner.state.borrow().clone();
    if let Err(why) = token::verify(&state, &req.token, now_ms()) {
        tracing::warn!(name = %req.name, "join refused: {why}");
        return Response::Refused(why);
    }
    let reg = write(
        inner,
        Command::RegisterNode {
            uuid: req.uuid,
            name: req.name.clone(),
            region: req.region.clone(),
            internal_addr: req.internal_addr,
            public: req.public,
            roles: req.roles,
        },
    )
    .await;
    let id = match reg {
        Ok(CommandResult::Registered { id, .. }) => id,
        Ok(other) => return Response::Failed(format!("register: {other:?}")),
        Err(e) => return Response::Failed(format!("register: {e}")),
    };
    let cert_pem = match pki::sign_csr(&state.ca_cert_pem, &state.ca_key_pem, &req.csr_pem, id) {
        Ok(c) => c,
        Err(e) => return Response::Refused(e.to_string()),
    };
    // Best effort: the policy loop adds any registered node that is missing.
    if let Err(e) = inner
        .raft
        .add_learner(id, BasicNode::new(req.internal_addr), false)
        .await
    {
        tracing::debug!(node = id, "add learner deferred: {e}");
    }
    tracing::info!(node = id, name = %req.name, region = %req.region, "node joined");
    let state = inner.state.borrow().clone();
    Response::Joined(JoinAccepted {
        node_id: id,
        cert_pem,
        ca_cert_pem: state.ca_cert_pem.clone(),
        cluster_id: state.cluster_id,
        members: state
            .nodes
            .values()
            .map(|n| (n.id, n.internal_addr))
            .collect(),
    })
}

async fn heartbeat_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval);
    loop {
        tick.tick().await;
        let load = inner.load.lock().clone();
        let Some(leader) = inner.raft.metrics().borrow_watched().current_leader else {
            continue;
        };
        if leader == inner.id {
            inner.heard.lock().insert(
                inner.id,
                Heard {
                    at: Instant::now(),
                    load,
                },
            );
            continue;
        }
        if let Some(addr) = leader_addr(&inner, leader) {
            let req = Request::Heartbeat {
                node: inner.id,
                load,
            };
            if let Err(e) = network::send(
                &inner.transport,
                leader,
                addr,
                &req,
                inner.config.heartbeat_interval * 2,
            )
            .await
            {
                tracing::debug!(leader, "heartbeat: {e}");
            }
        }
    }
}

async fn policy_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.policy_interval);
    let mut leader_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        if inner.raft.metrics().borrow_watched().state != ServerState::Leader {
            leader_since = None;
            continue;
        }
        let since = *leader_since.get_or_insert_with(|| {
            inner.heard.lock().clear();
            Instant::now()
        });
        // A bounded number of steps per tick, each waiting for its commit; a membership change
        // ends the tick so the next decision sees the settled configuration.
        for _ in 0..8 {
            let m = inner.raft.metrics().borrow_watched().clone();
            if m.state != ServerState::Leader || m.membership_config.get_joint_config().len() > 1 {
                break;
            }
            let state = inner.state.borrow().clone();
            let view = health_view(&inner, &m, since);
            let Some(action) = policy::decide(&state, &view) else {
                break;
            };
            let membership = !matches!(action, Action::Commit(_));
            if let Err(e) = apply(&inner, action).await {
                tracing::warn!("policy step failed: {e}");
                break;
            }
            if membership {
                break;
            }
        }
    }
}

fn health_view(inner: &Inner, m: &openraft::RaftMetrics<TypeConfig>, since: Instant) -> HealthView {
    let now = Instant::now();
    let heard = inner.heard.lock();
    let state = inner.state.borrow();
    let silent_ms = state
        .nodes
        .keys()
        .map(|id| {
            let last = heard.get(id).map_or(since, |h| h.at.max(since));
            (*id, now.duration_since(last).as_millis() as u64)
        })
        .collect();
    let loads = heard.iter().map(|(id, h)| (*id, h.load.clone())).collect();
    let last = m.last_log_index.unwrap_or(0);
    let caught_up = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .filter(|(_, matched)| matched.as_ref().is_some_and(|l| l.index + 10 >= last))
                .map(|(id, _)| *id)
                .collect()
        })
        .unwrap_or_default();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
    HealthView {
        leader: inner.id,
        now_ms: now_ms(),
        silent_ms,
        loads,
        caught_up,
        voters,
        learners,
    }
}

async fn apply(inner: &Inner, action: Action) -> Result<(), ClusterError> {
    let raft = &inner.raft;
    match action {
        Action::Commit(cmd) => {
            tracing::info!(%cmd, "policy");
            expect_ok(write(inner, cmd).await?)
        }
        Action::AddLearner(id, addr) => {
            tracing::info!(node = id, "policy: add learner");
            raft.add_learner(id, BasicNode::new(addr), false)
                .await
                .map_err(raft_err)?;
            Ok(())
        }
        Action::SetVoters(voters, why) => {
            tracing::info!(?voters, "policy: voter change: {why}");
            raft.change_membership(voters, true)
                .await
                .map_err(raft_err)?;
            Ok(())
        }
        Action::RemoveFromMembership(id) => {
            tracing::info!(node = id, "policy: remove from membership");
            raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(raft_err)?;
            Ok(())
        }
    }
}
