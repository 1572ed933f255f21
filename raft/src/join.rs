//! Joining a cluster: the joining side (ask a seed, verified by the pinned CA hash, for a
//! certificate) and the accepting side (the leader checks the token, registers the node, which
//! refuses a removed uuid or a member's uuid with another key and consumes a single-use token,
//! and has a holder of the CA key sign its certificate; a follower seed forwards to the
//! leader).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::async_runtime::WatchReceiver;
use quinn::Endpoint;
use uuid::Uuid;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, TransportError};
use crate::forward;
use crate::identity::{self, CA_CERT, Identity, NODE_CERT, NODE_KEY};
use crate::inner::{Inner, now_ms};
use crate::network;
use crate::pki;
use crate::rpc::{JoinAccepted, JoinRequest, Request, Response};
use crate::state::{Command, CommandResult};
use crate::token::{self, JoinToken};
use crate::transport::{self, PinnedCaVerifier};
use crate::trust;

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

/// The joining side: unless `config.data_dir` already holds a member, asks a seed for
/// membership and writes the identity, key and certificates it gets. Interrupted joins keep
/// their uuid and key, so the leader gives the same id back.
pub(crate) async fn join(
    config: &ClusterConfig,
    seeds: &[SocketAddr],
    token: &str,
    ca_hash: &str,
) -> Result<(), ClusterError> {
    let dir = config.data_dir.clone();
    identity::create_private_dir(&dir)?;
    if identity::is_member(&dir)? {
        return Ok(());
    }
    let mut identity = identity::read_identity(&dir)?.unwrap_or_else(|| Identity {
        uuid: Uuid::new_v4(),
        ..Identity::default()
    });
    let pinned = pki::parse_ca_hash(ca_hash)?;
    JoinToken::parse(token).map_err(ClusterError::Invalid)?;
    identity::write_identity(&dir, &identity)?;
    let key_pem = match std::fs::read_to_string(dir.join(NODE_KEY)) {
        Ok(k) => k,
        Err(_) => {
            let k = pki::generate_node_key()?;
            identity::write_file(&dir, NODE_KEY, k.as_bytes())?;
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
    let accepted = join_via_seeds(config.internal_addr.ip(), seeds, pinned, ca_hash, &req).await?;
    if pki::ca_hash_pem(&accepted.ca_cert_pem)? != ca_hash {
        return Err(ClusterError::CaMismatch {
            presented: pki::ca_hash_pem(&accepted.ca_cert_pem)?,
            pinned: ca_hash.to_string(),
        });
    }
    identity::write_file(&dir, NODE_CERT, accepted.cert_pem.as_bytes())?;
    identity::write_file(&dir, CA_CERT, accepted.ca_cert_pem.as_bytes())?;
    identity.node_id = Some(accepted.node_id);
    identity.cluster_id = accepted.cluster_id;
    identity::write_identity(&dir, &identity)?;
    tracing::info!(
        node = accepted.node_id,
        members = accepted.members.len(),
        "joined cluster"
    );
    Ok(())
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
    let local = SocketAddr::new(bind_ip, 0);
    let endpoint = Endpoint::client(local).map_err(|source| TransportError::Bind {
        addr: local,
        source,
    })?;
    let mut errors = Vec::new();
    for seed in seeds {
        let verifier = PinnedCaVerifier::new(pinned);
        let attempt = async {
            let conn = endpoint
                .connect_with(verifier.client_config()?, *seed, pki::SERVER_NAME)
                .map_err(|source| TransportError::Connect {
                    addr: *seed,
                    source,
                })?
                .await
                .map_err(|source| TransportError::Connection {
                    addr: *seed,
                    source,
                })?;
            let r = transport::call::<_, Response>(
                &conn,
                &Request::Join(req.clone()),
                Duration::from_secs(20),
            )
            .await;
            conn.close(0u32.into(), b"done");
            Ok::<_, ClusterError>(r?)
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

/// Leader side of a join (a follower seed forwards to the leader).
pub(crate) async fn handle_join(inner: &Arc<Inner>, req: JoinRequest) -> Response {
    let leader = inner.raft.metrics().borrow_watched().current_leader;
    if leader != Some(inner.id) {
        let Some(l) = leader else {
            return Response::Failed("no leader right now, retry".into());
        };
        let Some(addr) = forward::leader_addr(inner, l) else {
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
    let consume_token = match token::verify(&state.tokens, &req.token, now_ms()) {
        Ok(rec) => rec.single_use.then(|| rec.id.clone()),
        Err(why) => {
            tracing::warn!(name = %req.name, "join refused: {why}");
            return Response::Refused(why);
        }
    };
    let key_sha256 = match pki::csr_key_sha256(&req.csr_pem) {
        Ok(k) => k,
        Err(e) => return Response::Refused(e.to_string()),
    };
    let reg = forward::write(
        inner,
        Command::RegisterNode {
            uuid: req.uuid,
            key_sha256,
            consume_token,
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
        Ok(CommandResult::Rejected(why)) => {
            tracing::warn!(name = %req.name, uuid = %req.uuid, "join refused: {why}");
            return Response::Refused(why);
        }
        Ok(other) => return Response::Failed(format!("register: {other:?}")),
        Err(e) => return Response::Failed(format!("register: {e}")),
    };
    let cert_pem = match trust::sign(inner, id, &req.csr_pem).await {
        Ok(c) => c,
        Err(e) => return Response::Failed(e.to_string()),
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
