//! The serving side of the cluster transport: the accept loop, one task per connection, and
//! the answers to Raft RPC and control requests. Join connections are bounded before
//! authentication ([`JoinLimits`](crate::JoinLimits)); Raft connections are accepted from
//! current members of the Raft membership only.

use std::sync::Arc;
use std::time::Instant;

use openraft::async_runtime::WatchReceiver;
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::Semaphore;

use crate::error::CLOSE_REFUSED;
use crate::inner::{Heard, Inner};
use crate::join;
use crate::relay::RelayStream;
use crate::rpc::{Request, Response};
use crate::transport::{self, ALPN_JOIN, ALPN_RAFT, ALPN_RELAY};
use crate::trust;
use crate::typecfg::TypeConfig;
use crate::types::NodeId;

/// Serves every incoming connection of the cluster transport until the endpoint closes.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
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

/// Dispatches a connection by its ALPN: joins, Raft RPC and control messages, relay streams.
async fn serve_connection(inner: Arc<Inner>, conn: Connection) {
    let alpn = transport::alpn_of(&conn).unwrap_or_default();
    if alpn == ALPN_JOIN {
        serve_join(inner, conn).await;
        return;
    }
    // Everything else needs a cluster certificate (of a member: the TLS verifier checked).
    let Some(peer) = transport::peer_node_id(&conn) else {
        tracing::warn!(remote = %conn.remote_address(), "connection without cluster certificate closed");
        conn.close(CLOSE_REFUSED.into(), b"cluster certificate required");
        return;
    };
    inner.transport.track_incoming(conn.clone());
    if alpn == ALPN_RAFT {
        if !raft_peer_allowed(&inner, peer) {
            tracing::warn!(peer, remote = %conn.remote_address(), "Raft connection from a node outside the membership closed");
            conn.close(CLOSE_REFUSED.into(), b"not a Raft member");
            return;
        }
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let inner = inner.clone();
            tokio::spawn(async move {
                let resp = match transport::read_msg::<Request>(&mut recv).await {
                    Ok(req) => handle_rpc(&inner, peer, req).await,
                    Err(e) => Response::Failed(e.to_string()),
                };
                let _ = transport::write_msg(&mut send, &resp).await;
            });
        }
    } else if alpn == ALPN_RELAY {
        if !inner.state.borrow().is_member(peer) {
            conn.close(CLOSE_REFUSED.into(), b"not a member");
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

/// Whether `peer` may use `skein-raft/1` here: a voter or learner of the latest membership
/// this node knows (a node being added is in it as soon as the leader appended the change).
/// A node that is not in its own membership yet (it has just joined) cannot tell, and accepts
/// what the TLS verifier accepted.
fn raft_peer_allowed(inner: &Inner, peer: NodeId) -> bool {
    let metrics = inner.raft.metrics().borrow_watched().clone();
    let membership = &metrics.membership_config;
    membership.get_node(&peer).is_some() || membership.get_node(&inner.id).is_none()
}

/// Serves a join connection within the [`JoinLimits`](crate::JoinLimits): per source, per
/// connection, per request; over a limit the connection or stream is closed with a log line.
async fn serve_join(inner: Arc<Inner>, conn: Connection) {
    let limits = inner.config.join_limits.clone();
    let remote = conn.remote_address();
    let Some(_slot) = inner.join_sources.take(remote.ip()) else {
        tracing::warn!(%remote, limit = limits.connections_per_source, "join connection closed: too many join connections from this address");
        conn.close(CLOSE_REFUSED.into(), b"too many join connections");
        return;
    };
    let streams = Arc::new(Semaphore::new(limits.streams_per_connection));
    let serve = async {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let Ok(permit) = streams.clone().try_acquire_owned() else {
                tracing::warn!(%remote, limit = limits.streams_per_connection, "join stream refused: too many open join streams on one connection");
                refuse_stream(&mut send, &mut recv);
                continue;
            };
            let inner = inner.clone();
            let limits = limits.clone();
            tokio::spawn(async move {
                let read = tokio::time::timeout(
                    limits.request_timeout,
                    recv.read_to_end(limits.request_bytes),
                )
                .await;
                let resp = match read {
                    Ok(Ok(bytes)) => match serde_json::from_slice::<Request>(&bytes) {
                        Ok(Request::Join(req)) => join::handle_join(&inner, req).await,
                        Ok(_) => Response::Failed("only join requests on this ALPN".into()),
                        Err(e) => Response::Failed(format!("bad join request: {e}")),
                    },
                    Ok(Err(quinn::ReadToEndError::TooLong)) => {
                        tracing::warn!(%remote, limit = limits.request_bytes, "join stream closed: request too large");
                        refuse_stream(&mut send, &mut recv);
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, "join stream: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%remote, timeout = ?limits.request_timeout, "join stream closed: request not complete in time");
                        refuse_stream(&mut send, &mut recv);
                        return;
                    }
                };
                let _ = transport::write_msg(&mut send, &resp).await;
                drop(permit);
            });
        }
    };
    if tokio::time::timeout(limits.connection_lifetime, serve)
        .await
        .is_err()
    {
        tracing::warn!(%remote, lifetime = ?limits.connection_lifetime, "join connection closed: open too long");
        conn.close(CLOSE_REFUSED.into(), b"join connection open too long");
    }
}

/// Ends a refused stream in both directions.
fn refuse_stream(send: &mut SendStream, recv: &mut RecvStream) {
    let _ = send.reset(CLOSE_REFUSED.into());
    let _ = recv.stop(CLOSE_REFUSED.into());
}

/// Answers one request on `skein-raft/1`.
async fn handle_rpc(inner: &Arc<Inner>, peer: NodeId, req: Request) -> Response {
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
        // Recorded for the certificate's node, whatever id the message claims.
        Request::Heartbeat { load, .. } => {
            inner.heard.lock().insert(
                peer,
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
        Request::Status => Response::Status(Box::new(inner.local_status())),
        Request::Join(req) => join::handle_join(inner, req).await,
        Request::Sign { node, csr_pem } => trust::handle_sign(inner, peer, node, &csr_pem).await,
        Request::FetchCaKey => trust::handle_fetch_ca_key(inner, peer),
    }
}
