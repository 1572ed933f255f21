//! Keeping the cluster's trust in shape: who signs certificates (the nodes holding the CA key,
//! normally the voters), handing the key to a new voter and deleting it from a node that is no
//! longer one, renewing this node's short-lived certificate, and closing the connections of
//! removed nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;

use crate::error::ClusterError;
use crate::forward;
use crate::identity::{self, CA_KEY, NODE_CERT};
use crate::inner::{Inner, now_ms};
use crate::network;
use crate::pki;
use crate::rpc::{Request, Response, SecretPem};
use crate::state::{ClusterState, Command};
use crate::types::NodeId;

/// How long a failed renewal waits before the next attempt.
const RENEW_RETRY: Duration = Duration::from_secs(2);

/// Lifetime of the node certificates signed now.
fn lifetime(state: &ClusterState) -> Duration {
    Duration::from_millis(state.settings.cert_lifetime_ms.max(1_000))
}

/// Signs `csr_pem` for `node`: here when this node holds the CA key, else by a node that does.
pub(crate) async fn sign(
    inner: &Inner,
    node: NodeId,
    csr_pem: &str,
) -> Result<String, ClusterError> {
    let state = inner.state.borrow().clone();
    if let Some(key) = identity::read_ca_key(&inner.config.data_dir)? {
        return pki::sign_csr(&state.ca_cert_pem, &key, csr_pem, node, lifetime(&state));
    }
    let mut errors = Vec::new();
    for holder in state.ca_key_holders.iter().filter(|h| **h != inner.id) {
        let Some(addr) = state.nodes.get(holder).map(|n| n.internal_addr) else {
            continue;
        };
        let req = Request::Sign {
            node,
            csr_pem: csr_pem.into(),
        };
        match network::send(
            &inner.transport,
            *holder,
            addr,
            &req,
            Duration::from_secs(10),
        )
        .await
        {
            Ok(Response::Signed(cert)) => return Ok(cert),
            Ok(Response::Refused(why) | Response::Failed(why)) => {
                errors.push(format!("node {holder}: {why}"));
            }
            Ok(other) => errors.push(format!("node {holder}: unexpected answer {other:?}")),
            Err(e) => errors.push(format!("node {holder}: {e}")),
        }
    }
    if errors.is_empty() {
        errors.push("no node is known to hold it".into());
    }
    Err(ClusterError::NoSigner(errors.join("; ")))
}

/// A holder's answer to [`Request::Sign`] from `peer`: for itself (a renewal, with the key it
/// registered) or, from the leader, for a node that is joining.
pub(crate) async fn handle_sign(
    inner: &Inner,
    peer: NodeId,
    node: NodeId,
    csr_pem: &str,
) -> Response {
    let dir = &inner.config.data_dir;
    let Ok(Some(key)) = identity::read_ca_key(dir) else {
        return Response::Refused(format!("node {} does not hold the CA key", inner.id));
    };
    let leader = inner.raft.metrics().borrow_watched().current_leader;
    if peer != node && leader != Some(peer) {
        tracing::warn!(
            peer,
            node,
            "refused to sign: only the node itself or the leader may ask"
        );
        return Response::Refused(
            "only the node itself or the leader may ask for its certificate".into(),
        );
    }
    // A join: the leader committed the registration, which may not have been applied here yet.
    let mut rx = inner.state.clone();
    let wait = rx.wait_for(|s| s.is_member(node) || s.removed.contains_key(&node));
    let state = match tokio::time::timeout(Duration::from_secs(5), wait).await {
        Ok(Ok(s)) => s.clone(),
        _ => return Response::Refused(format!("node {node} is not a member")),
    };
    let Some(info) = state.nodes.get(&node).filter(|_| state.is_member(node)) else {
        return Response::Refused(format!("node {node} is not a member"));
    };
    match pki::csr_key_sha256(csr_pem) {
        Ok(k) if k == info.key_sha256 => {}
        Ok(_) => return Response::Refused(format!("the CSR is not for node {node}'s key")),
        Err(e) => return Response::Refused(e.to_string()),
    }
    match pki::sign_csr(&state.ca_cert_pem, &key, csr_pem, node, lifetime(&state)) {
        Ok(cert) => {
            tracing::info!(node, by = peer, "signed a node certificate");
            Response::Signed(cert)
        }
        Err(e) => Response::Failed(e.to_string()),
    }
}

/// A holder's answer to [`Request::FetchCaKey`]: the key, to a voter only.
pub(crate) fn handle_fetch_ca_key(inner: &Inner, peer: NodeId) -> Response {
    let is_voter = inner
        .raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == peer);
    if !is_voter || !inner.state.borrow().is_member(peer) {
        tracing::warn!(peer, "refused the CA key to a node that is not a voter");
        return Response::Refused("only voters get the CA key".into());
    }
    match identity::read_ca_key(&inner.config.data_dir) {
        Ok(Some(key)) => {
            tracing::info!(peer, "handed the CA key to a new voter");
            Response::CaKey(SecretPem(key))
        }
        Ok(None) => Response::Refused(format!("node {} does not hold the CA key", inner.id)),
        Err(e) => Response::Failed(e.to_string()),
    }
}

/// Every node: closes removed nodes' connections as soon as the removal is applied (the
/// removed node is told so by the close, see the transport), and
/// periodically keeps the CA key where it belongs and renews this node's certificate.
pub(crate) async fn upkeep_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.config.heartbeat_interval);
    let mut state = inner.state.clone();
    let mut renew_after = Instant::now();
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                for node in inner.transport.close_non_members() {
                    tracing::warn!(node, "closed the connections of a removed node");
                }
            }
            _ = tick.tick() => {
                if let Err(e) = keep_ca_key(&inner).await {
                    tracing::warn!("CA key upkeep: {e}");
                }
                if Instant::now() >= renew_after
                    && let Err(e) = renew_if_due(&inner).await
                {
                    tracing::warn!("certificate renewal failed, retrying in {RENEW_RETRY:?}: {e}");
                    renew_after = Instant::now() + RENEW_RETRY;
                }
            }
        }
    }
}

/// A voter without the key fetches it from a holder; a holder that is no longer a voter
/// deletes it once a voter holds it, a removed node at once; the state records who holds it.
async fn keep_ca_key(inner: &Inner) -> Result<(), ClusterError> {
    let me = inner.id;
    let dir = &inner.config.data_dir;
    if inner.transport.is_removed() {
        if identity::read_ca_key(dir)?.is_some() {
            identity::remove_ca_key(dir)?;
            tracing::warn!("removed from the cluster: deleted the CA key from the data directory");
        }
        return Ok(());
    }
    let state = inner.state.borrow().clone();
    if state.cluster_id.is_none() || !state.is_member(me) {
        return Ok(());
    }
    let mut holds = identity::read_ca_key(dir)?.is_some();
    let voter = state.voters.contains(&me);
    if voter && !holds {
        holds = fetch_ca_key(inner, &state).await?;
    }
    if holds && voter && !state.ca_key_holders.contains(&me) {
        forward::write_ok(
            inner,
            Command::SetCaKeyHolder {
                node: me,
                holds: true,
            },
        )
        .await?;
    }
    let another_voter_holds = state
        .ca_key_holders
        .iter()
        .any(|h| *h != me && state.voters.contains(h));
    if holds && !voter && !state.voters_changing && another_voter_holds {
        identity::remove_ca_key(dir)?;
        tracing::info!("no longer a voter: deleted the CA key from the data directory");
        forward::write_ok(
            inner,
            Command::SetCaKeyHolder {
                node: me,
                holds: false,
            },
        )
        .await?;
    }
    Ok(())
}

/// Asks the holders for the CA key; `true` once it is stored in the data directory.
async fn fetch_ca_key(inner: &Inner, state: &ClusterState) -> Result<bool, ClusterError> {
    for holder in state.ca_key_holders.iter().filter(|h| **h != inner.id) {
        let Some(addr) = state.nodes.get(holder).map(|n| n.internal_addr) else {
            continue;
        };
        let resp = network::send(
            &inner.transport,
            *holder,
            addr,
            &Request::FetchCaKey,
            Duration::from_secs(5),
        )
        .await;
        match resp {
            Ok(Response::CaKey(SecretPem(key))) => {
                pki::check_ca_key(&state.ca_cert_pem, &key)?;
                identity::write_file(&inner.config.data_dir, CA_KEY, key.as_bytes())?;
                tracing::info!(
                    from = holder,
                    "voter: received the CA key; this node now signs joins and renewals"
                );
                return Ok(true);
            }
            Ok(other) => tracing::debug!(holder, "CA key: {other:?}"),
            Err(e) => tracing::debug!(holder, "CA key: {e}"),
        }
    }
    Ok(false)
}

/// Renews this node's certificate after two thirds of its lifetime: a CSR for the same key,
/// signed by a holder of the CA key, used for every new connection from then on.
async fn renew_if_due(inner: &Inner) -> Result<(), ClusterError> {
    let mut tls = identity::read_tls(&inner.config.data_dir)?;
    if now_ms() < pki::renew_at_ms(pki::validity_ms(&tls.cert_pem)?) {
        return Ok(());
    }
    let cert = sign(inner, inner.id, &pki::make_csr(&tls.key_pem)?).await?;
    let presented = pki::node_id_from_cert(pki::cert_der(&cert)?.as_ref());
    if presented != Some(inner.id) {
        return Err(ClusterError::Invalid(format!(
            "renewed certificate is for node {presented:?}, not {}",
            inner.id
        )));
    }
    let (_, until) = pki::validity_ms(&cert)?;
    identity::write_file(&inner.config.data_dir, NODE_CERT, cert.as_bytes())?;
    tls.cert_pem = cert;
    inner.transport.reload(&tls)?;
    *inner.cert_expires_at_ms.lock() = Some(until);
    tracing::info!(valid_until_ms = until, "node certificate renewed");
    Ok(())
}
