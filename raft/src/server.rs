//! The serving side of the cluster transport: the accept loop, one task per connection, and
//! the answers to Raft RPC and control requests.

use std::sync::Arc;
use std::time::Instant;

use quinn::Connection;

use crate::error::CLOSE_REFUSED;
use crate::inner::{Heard, Inner};
use crate::join;
use crate::relay::RelayStream;
use crate::rpc::{Request, Response};
use crate::transport::{self, ALPN_JOIN, ALPN_RAFT, ALPN_RELAY};
use crate::typecfg::TypeConfig;

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
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let inner = inner.clone();
            tokio::spawn(async move {
                let resp = match transport::read_msg::<Request>(&mut recv).await {
                    Ok(Request::Join(req)) => join::handle_join(&inner, req).await,
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
        conn.close(CLOSE_REFUSED.into(), b"cluster certificate required");
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

/// Answers one request on `skein-raft/1`.
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
        Request::Status => Response::Status(Box::new(inner.local_status())),
        Request::Join(req) => join::handle_join(inner, req).await,
    }
}
