//! [`Cluster`]: the handle the media node uses (`init`, `join`, `open`, status, tokens, relay).
//! The work behind it lives in the modules it starts: the RPC server, the leader loops, write
//! forwarding and joins.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, Raft};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::identity::{self, CA_CERT, CA_KEY, DB, Identity, NODE_CERT, NODE_KEY};
use crate::inner::{Inner, now_ms};
use crate::join::{self, JoinInfo};
use crate::join_guard::SourceSlots;
use crate::network::Network;
use crate::relay::{self, RelayListener, RelayStream};
use crate::state::{ClusterState, Command, CommandResult};
use crate::status::ClusterStatus;
use crate::store::{self, LogStore, StateMachine};
use crate::token::JoinToken;
use crate::transport::{ClusterTransport, Members, NodeTls};
use crate::types::{LoadReport, NodeId, Region, StreamKeyRecord};
use crate::{forward, leader, pki, server, trust};

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
    /// Bootstraps a one-node cluster in `config.data_dir`: creates the cluster CA (its private
    /// key goes to `ca.key` in the data directory, see [`Cluster::ca_key_path`], never into the
    /// replicated state), this node's key and certificate (node id 1), the first log entries
    /// and a join token valid for `token_ttl`. Fails if the directory already belongs to a
    /// cluster.
    pub async fn init(
        config: ClusterConfig,
        token_ttl: Duration,
    ) -> Result<(Cluster, JoinInfo), ClusterError> {
        let dir = config.data_dir.clone();
        identity::create_private_dir(&dir)?;
        if identity::read_identity(&dir)?
            .and_then(|i| i.node_id)
            .is_some()
        {
            return Err(ClusterError::AlreadyInitialized(dir.display().to_string()));
        }
        let (ca_cert_pem, ca_key_pem) = pki::generate_ca()?;
        let key_pem = pki::generate_node_key()?;
        let lifetime = Duration::from_millis(config.settings.cert_lifetime_ms.max(1_000));
        let cert_pem = pki::sign_csr(
            &ca_cert_pem,
            &ca_key_pem,
            &pki::make_csr(&key_pem)?,
            1,
            lifetime,
        )?;
        let cluster_id = Uuid::new_v4();
        let identity = Identity {
            uuid: Uuid::new_v4(),
            node_id: Some(1),
            cluster_id: Some(cluster_id),
        };
        identity::write_file(&dir, NODE_KEY, key_pem.as_bytes())?;
        identity::write_file(&dir, NODE_CERT, cert_pem.as_bytes())?;
        identity::write_file(&dir, CA_CERT, ca_cert_pem.as_bytes())?;
        identity::write_file(&dir, CA_KEY, ca_key_pem.as_bytes())?;
        let key_sha256 = pki::key_sha256(&key_pem)?;
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
            .map_err(ClusterError::raft)?;
        cluster
            .inner
            .raft
            .wait(Some(Duration::from_secs(30)))
            .current_leader(1, "bootstrap leader")
            .await
            .map_err(ClusterError::raft)?;
        let c = &cluster.inner.config;
        cluster
            .write(Command::Bootstrap {
                cluster_id,
                ca_cert_pem: ca_cert_pem.clone(),
                settings: c.settings.clone(),
            })
            .await?;
        let reg = cluster
            .write(Command::RegisterNode {
                uuid: identity.uuid,
                key_sha256,
                consume_token: None,
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
            return Err(ClusterError::Raft(
                format!("bootstrap registration gave {reg:?}").into(),
            ));
        }
        forward::write_ok(
            &cluster.inner,
            Command::SetCaKeyHolder {
                node: 1,
                holds: true,
            },
        )
        .await?;
        identity::write_identity(&dir, &identity)?;
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
        join::join(&config, seeds, token, ca_hash).await?;
        Cluster::open(config).await
    }

    /// Whether `data_dir` holds the identity of a node that has joined (or initialised) a
    /// cluster, i.e. whether [`Cluster::open`] can restart it.
    pub fn is_member(data_dir: &Path) -> bool {
        identity::is_member(data_dir).unwrap_or(false)
    }

    /// Restarts a node from its data directory (same id, key and certificate).
    pub async fn open(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let id = identity::node_id(&config.data_dir)?;
        let tls = identity::read_tls(&config.data_dir)?;
        Cluster::start(config, id, tls).await
    }

    /// Where the cluster CA's private key is kept on a node that holds it (the voters). Back
    /// it up after `init`: if every voter is lost, recovery needs it.
    pub fn ca_key_path(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join(CA_KEY)
    }

    /// Whether the node in `data_dir` holds the CA private key (and can sign).
    pub fn holds_ca_key(data_dir: &Path) -> bool {
        identity::read_ca_key(data_dir).is_ok_and(|k| k.is_some())
    }

    /// **Unsafe break-glass** for a lost majority (like etcd's `--force-new-cluster`): rewrites
    /// the stored membership of the (stopped) node in `config.data_dir` to this node alone as
    /// the only voter, keeping the applied state. Entries that were not applied here are lost,
    /// and if the old majority comes back it must not be restarted with its old data (it would
    /// form a second cluster). Run it on one node only, then [`Cluster::open`] it; the policies
    /// then re-add the other registered nodes as learners and voters.
    ///
    /// `ca_key_pem` installs the CA private key (e.g. a backup of `ca.key`) on a node that
    /// does not hold it; it must match the cluster's CA certificate. Without a key the node
    /// cannot sign joins or renewals. Returns whether the node holds the key afterwards.
    pub fn recover_force_new_cluster(
        config: &ClusterConfig,
        ca_key_pem: Option<&str>,
    ) -> Result<bool, ClusterError> {
        let dir = &config.data_dir;
        let id = identity::node_id(dir)?;
        if let Some(key) = ca_key_pem {
            pki::check_ca_key(&identity::read_tls(dir)?.ca_cert_pem, key)?;
        }
        let db = store::open_db(&dir.join(DB))?;
        store::force_single_voter(&db, id, config.internal_addr.to_string())?;
        if let Some(key) = ca_key_pem {
            identity::write_file(dir, CA_KEY, key.as_bytes())?;
        }
        tracing::warn!(node = id, "membership forced to this node alone");
        Ok(Cluster::holds_ca_key(dir))
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
        let cert_expires_at_ms = pki::validity_ms(&tls.cert_pem)?.1;
        if cert_expires_at_ms <= now_ms() {
            tracing::warn!(
                expired_at_ms = cert_expires_at_ms,
                "this node's certificate has expired; unless it holds the CA key and renews it itself, the other nodes refuse it: remove the node and join it again"
            );
        }
        let transport = Arc::new(
            ClusterTransport::bind(
                id,
                config.internal_addr,
                &tls,
                Members::new(state_rx.clone()),
            )
            .await?,
        );
        let net = Network {
            transport: transport.clone(),
        };
        let raft = Raft::new(id, config.raft_config()?, net, log, sm)
            .await
            .map_err(ClusterError::raft)?;
        let (relay_tx, relay_rx) = mpsc::channel(64);
        let config_join_limit = config.join_limits.connections_per_source;
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
            join_sources: SourceSlots::new(config_join_limit),
            cert_expires_at_ms: Mutex::new(Some(cert_expires_at_ms)),
        });
        let tasks = vec![
            tokio::spawn(server::accept_loop(inner.clone())),
            tokio::spawn(leader::heartbeat_loop(inner.clone())),
            tokio::spawn(leader::policy_loop(inner.clone())),
            tokio::spawn(trust::upkeep_loop(inner.clone())),
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

    /// Current Raft leader as known here (not this node once a quorum stopped answering it).
    pub fn leader(&self) -> Option<NodeId> {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        self.inner.known_leader(&metrics)
    }

    /// Records this node's load; it goes to the leader with the next heartbeat (not logged).
    pub fn report_load(&self, load: LoadReport) {
        *self.inner.load.lock() = load;
    }

    /// Applies a command through the leader (forwarded when this node is not the leader).
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        forward::write(&self.inner, cmd).await
    }

    /// Expiry of the certificate this node uses now (unix ms); renewed after two thirds of
    /// its lifetime.
    pub fn cert_expires_at_ms(&self) -> Option<u64> {
        *self.inner.cert_expires_at_ms.lock()
    }

    /// Creates a join token valid for `ttl` (`skein token create`), usable until it expires.
    pub async fn create_token(&self, ttl: Duration) -> Result<JoinToken, ClusterError> {
        self.new_token(ttl, false).await
    }

    /// Creates a join token valid for `ttl` that the first successful join consumes
    /// (`skein token create --single-use`).
    pub async fn create_single_use_token(&self, ttl: Duration) -> Result<JoinToken, ClusterError> {
        self.new_token(ttl, true).await
    }

    async fn new_token(&self, ttl: Duration, single_use: bool) -> Result<JoinToken, ClusterError> {
        let t = JoinToken::generate();
        let now = now_ms();
        let rec = t.record(
            now + ttl.as_millis() as u64,
            Some(self.inner.id),
            single_use,
        );
        forward::write_ok(
            &self.inner,
            Command::CreateToken {
                token: rec,
                now_ms: now,
            },
        )
        .await?;
        Ok(t)
    }

    /// Deletes a join token.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClusterError> {
        forward::write_ok(&self.inner, Command::RevokeToken { id: id.into() }).await
    }

    /// Adds a stream signing key; it signs from now on, older keys keep verifying.
    pub async fn add_stream_key(&self, key: StreamKeyRecord) -> Result<(), ClusterError> {
        forward::write_ok(&self.inner, Command::AddStreamKey(key)).await
    }

    /// Retires a stream signing key (refused for the last one).
    pub async fn retire_stream_key(&self, id: &str) -> Result<(), ClusterError> {
        forward::write_ok(&self.inner, Command::RetireStreamKey { id: id.into() }).await
    }

    /// Adds or replaces a region (coordinates and VIPs for the GeoDNS).
    pub async fn upsert_region(&self, region: Region) -> Result<(), ClusterError> {
        forward::write_ok(&self.inner, Command::UpsertRegion(region)).await
    }

    /// Sets the wanted number of origins.
    pub async fn set_origin_target(&self, target: usize) -> Result<(), ClusterError> {
        forward::write_ok(&self.inner, Command::SetOriginTarget { target }).await
    }

    /// Removes a node for good (`skein remove NODE`); the leader then takes it out of the Raft
    /// membership. Its id is never reused.
    pub async fn remove(&self, node: NodeId) -> Result<(), ClusterError> {
        if !self.inner.state.borrow().nodes.contains_key(&node) {
            return Err(ClusterError::UnknownNode(node));
        }
        forward::write_ok(&self.inner, Command::RemoveNode { node }).await
    }

    /// Leaves the cluster (`skein leave`): removes this node and waits (bounded) until it is no
    /// longer a voter, or the members cut it off (they do as soon as the removal is applied).
    /// The caller shuts down afterwards.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let me = self.inner.id;
        self.inner.transport.expect_removal();
        match forward::write_ok(&self.inner, Command::RemoveNode { node: me }).await {
            // The leader applied it and cut this node off before its answer got back.
            Err(_) if self.inner.transport.is_removed() => return Ok(()),
            r => r?,
        }
        for _ in 0..150 {
            if !self.inner.state.borrow().voters.contains(&me) || self.inner.transport.is_removed()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!("left the registry but still a voter after 15 s");
        Ok(())
    }

    /// Cluster status; asked from the leader (with loads and heartbeats) when reachable, else
    /// built from the local committed state.
    pub async fn status(&self) -> ClusterStatus {
        match forward::leader_status(&self.inner).await {
            Some(s) => s,
            None => self.inner.local_status(),
        }
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
    /// `node`'s id). On failure, [`ClusterError::peer_failure`] tells a dead or unreachable
    /// peer from an unknown one and from one that refused us.
    pub async fn open_relay(&self, node: NodeId) -> Result<RelayStream, ClusterError> {
        let addr = self
            .inner
            .state
            .borrow()
            .nodes
            .get(&node)
            .map(|n| n.internal_addr);
        relay::open(&self.inner.transport, node, addr).await
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
