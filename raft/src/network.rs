//! openraft's network over the cluster transport: one cached connection per peer, one bi-stream per RPC.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};

use crate::error::TransportError;
use crate::rpc::{Request, Response};
use crate::transport::{self, ALPN_RAFT, ClusterTransport};
use crate::typecfg::{TypeConfig, Vote};
use crate::types::NodeId;

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;

/// Creates [`Peer`] clients for openraft.
pub(crate) struct Network {
    pub(crate) transport: Arc<ClusterTransport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            transport: self.transport.clone(),
            target,
            addr: node
                .addr
                .parse()
                .map_err(|e| format!("bad address {:?}: {e}", node.addr)),
        }
    }
}

/// Client side of the Raft RPC to one peer.
pub(crate) struct Peer {
    transport: Arc<ClusterTransport>,
    target: NodeId,
    addr: Result<SocketAddr, String>,
}

/// Sends `req` to the node `target` at `addr`, checking that the certificate it answers with
/// carries `target`'s id.
pub(crate) async fn send(
    transport: &ClusterTransport,
    target: NodeId,
    addr: SocketAddr,
    req: &Request,
    timeout: Duration,
) -> Result<Response, TransportError> {
    let conn = transport.connect_node(target, addr, ALPN_RAFT).await?;
    let r = transport::call(&conn, req, timeout).await;
    if r.is_err() {
        transport.forget(addr, ALPN_RAFT);
    }
    r
}

impl Peer {
    async fn rpc(&self, req: Request, timeout: Duration) -> Result<Response, RPCError<TypeConfig>> {
        let addr = self
            .addr
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&io::Error::other(e))))?;
        match send(&self.transport, self.target, addr, &req, timeout).await {
            Ok(Response::Failed(e)) => {
                Err(RPCError::Network(NetworkError::new(&io::Error::other(e))))
            }
            Ok(r) => Ok(r),
            Err(e) => Err(RPCError::Unreachable(Unreachable::new(&e))),
        }
    }
}

fn unexpected(r: Response) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&io::Error::other(format!(
        "unexpected answer {r:?}"
    ))))
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.rpc(Request::Append(rpc), option.hard_ttl()).await? {
            Response::Append(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.rpc(Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.rpc(Request::PreVote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let call = self.rpc(req, option.hard_ttl().max(Duration::from_secs(10)));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = call => match r {
                Ok(Response::Snapshot(r)) => Ok(r),
                Ok(other) => Err(StreamingError::Network(NetworkError::new(&io::Error::other(format!("unexpected answer {other:?}"))))),
                Err(RPCError::Unreachable(u)) => Err(StreamingError::Unreachable(u)),
                Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
            },
        }
    }
}
