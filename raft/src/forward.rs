//! Getting to the leader: where it is, writes forwarded to it, and its status.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openraft::RaftMetrics;
use openraft::async_runtime::WatchReceiver;
use openraft::type_config::alias::WatchReceiverOf;

use crate::error::{ClusterError, TransportError};
use crate::inner::Inner;
use crate::network;
use crate::rpc::{Request, Response};
use crate::state::{Command, CommandResult};
use crate::status::ClusterStatus;
use crate::typecfg::TypeConfig;
use crate::types::NodeId;

/// The internal address of `leader`: from the Raft membership, else from the registry.
pub(crate) fn leader_addr(inner: &Inner, leader: NodeId) -> Option<SocketAddr> {
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
/// being elected (bounded by a deadline). A retry is driven by the Raft metrics: a forward to a
/// leader that has since been replaced is abandoned the moment the new leader is known, and
/// between attempts the write waits for the next leader change (at most [`RETRY_EVERY`])
/// rather than for a fixed timer.
pub(crate) async fn write(inner: &Inner, cmd: Command) -> Result<CommandResult, ClusterError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = inner.raft.metrics();
    loop {
        let hint = match inner.raft.client_write(cmd.clone()).await {
            Ok(r) => return Ok(r.data),
            Err(e) => match e.forward_to_leader() {
                Some(f) => f.leader_id,
                None => return Err(ClusterError::raft(e)),
            },
        };
        if let Some(leader) = hint.filter(|l| *l != inner.id)
            && let Some(addr) = leader_addr(inner, leader)
        {
            let request = Request::Write(cmd.clone());
            let forwarded = network::send(
                &inner.transport,
                leader,
                addr,
                &request,
                // A leader that just died must not hold the write past the election that
                // replaces it (commands are idempotent, so a retry is harmless).
                Duration::from_millis(500),
            );
            tokio::select! {
                answer = forwarded => match answer {
                    Ok(Response::Written(r)) => return Ok(r),
                    Ok(other) => tracing::debug!("forwarded write: {other:?}"),
                    Err(e) => tracing::debug!("forwarded write: {e}"),
                },
                () = leader_change(&mut metrics, Some(leader)) => {
                    tracing::debug!(old = leader, "leader changed while a write was forwarded; retrying");
                    continue;
                }
            }
        }
        if inner.transport.is_removed() {
            return Err(TransportError::Removed.into());
        }
        if Instant::now() >= deadline {
            return Err(ClusterError::NoLeader);
        }
        let _ = tokio::time::timeout(RETRY_EVERY, leader_change(&mut metrics, hint)).await;
    }
}

/// The longest a write waits between two attempts when no leader change is seen.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Returns once the Raft metrics name a leader other than `from` (never, if the metrics
/// channel closes: the caller's timeout or deadline then decides).
async fn leader_change(
    metrics: &mut WatchReceiverOf<TypeConfig, RaftMetrics<TypeConfig>>,
    from: Option<NodeId>,
) {
    loop {
        let now = metrics.borrow_watched().current_leader;
        if now.is_some() && now != from {
            return;
        }
        if metrics.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// [`write`] for commands whose only interesting result is a rejection.
pub(crate) async fn write_ok(inner: &Inner, cmd: Command) -> Result<(), ClusterError> {
    match write(inner, cmd).await? {
        CommandResult::Rejected(why) => Err(ClusterError::Rejected(why)),
        _ => Ok(()),
    }
}

/// The leader's status (with loads and heartbeats), if there is another node leading and it
/// answers.
pub(crate) async fn leader_status(inner: &Inner) -> Option<ClusterStatus> {
    let leader = inner
        .raft
        .metrics()
        .borrow_watched()
        .current_leader
        .filter(|l| *l != inner.id)?;
    let addr = leader_addr(inner, leader)?;
    match network::send(
        &inner.transport,
        leader,
        addr,
        &Request::Status,
        Duration::from_secs(2),
    )
    .await
    {
        Ok(Response::Status(s)) => Some(*s),
        _ => None,
    }
}
