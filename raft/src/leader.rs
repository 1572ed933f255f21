//! The loops every node runs next to Raft: heartbeats with its load to the leader and, on
//! the leader, the policy loop that turns [`policy::decide`]'s decisions into commands and
//! membership changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, ServerState};

use crate::error::ClusterError;
use crate::forward;
use crate::inner::{Heard, Inner, now_ms};
use crate::network;
use crate::policy::{self, Action, HealthView};
use crate::rpc::Request;
use crate::typecfg::TypeConfig;
use crate::types::NodeId;

/// Every node: sends its load to the leader (the leader records its own).
pub(crate) async fn heartbeat_loop(inner: Arc<Inner>) {
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
        if let Some(addr) = forward::leader_addr(&inner, leader) {
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

/// The leader: runs the policies ([`policy::decide`]) and applies what they decide.
pub(crate) async fn policy_loop(inner: Arc<Inner>) {
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
        for _ in 0..policy::STEPS_PER_TICK {
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

/// What the policies need to know about liveness and replication, as the leader sees it.
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

/// Carries out one policy decision.
async fn apply(inner: &Inner, action: Action) -> Result<(), ClusterError> {
    let raft = &inner.raft;
    match action {
        Action::Commit(cmd) => {
            tracing::info!(%cmd, "policy");
            forward::write_ok(inner, cmd).await
        }
        Action::AddLearner(id, addr) => {
            tracing::info!(node = id, "policy: add learner");
            raft.add_learner(id, BasicNode::new(addr), false)
                .await
                .map_err(ClusterError::raft)?;
            Ok(())
        }
        Action::SetVoters(voters, why) => {
            tracing::info!(?voters, "policy: voter change: {why}");
            raft.change_membership(voters, true)
                .await
                .map_err(ClusterError::raft)?;
            Ok(())
        }
        Action::RemoveFromMembership(id) => {
            tracing::info!(node = id, "policy: remove from membership");
            raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(ClusterError::raft)?;
            Ok(())
        }
    }
}
