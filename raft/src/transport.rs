//! The cluster transport: the one QUIC endpoint of a node, shared by Raft RPC and control
//! messages ([`ALPN_RAFT`]), the join handshake ([`ALPN_JOIN`]) and the media relay
//! ([`ALPN_RELAY`]). Mutual TLS from the cluster CA; one ALPN per purpose.
//!
//! Client certificates are *optional* at the TLS layer only because a joining node has none
//! yet; after the handshake every connection that is not `skein-join/1` must carry a verified
//! cluster certificate or it is closed before any stream is accepted.
//!
//! Both sides of every handshake also check membership ([`Members`]): a certificate is
//! accepted only if its node id is registered and not removed in the committed state, so a
//! removed node is refused at once (TLS alert `certificate_revoked`) although its certificate
//! is still within its validity. [`ClusterTransport::close_non_members`] closes the
//! connections that were open when a node was removed, and [`ClusterTransport::reload`] puts
//! a renewed certificate to use for new connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    ClientConfig, Connection, Endpoint, RecvStream, SendStream, ServerConfig, TransportConfig,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use tokio::sync::watch;

use crate::error::{CLOSE_REFUSED, ClusterError, TransportError};
use crate::pki::{self, SERVER_NAME};
use crate::state::ClusterState;
use crate::types::NodeId;

/// ALPN of Raft RPC and control messages (heartbeats, forwarded writes, status).
pub const ALPN_RAFT: &[u8] = b"skein-raft/1";
/// ALPN of the join handshake: the only one reachable without a cluster certificate.
pub const ALPN_JOIN: &[u8] = b"skein-join/1";
/// ALPN of media relay streams between nodes.
pub const ALPN_RELAY: &[u8] = b"skein-relay/1";

/// Largest message accepted on a control stream (snapshots included): a state whose snapshot
/// request is larger cannot be sent to a follower.
pub const MAX_MESSAGE: usize = 64 << 20;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_millis(500)));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(5)).ok());
    Arc::new(t)
}

/// A node's TLS material, PEM.
#[derive(Clone)]
pub(crate) struct NodeTls {
    pub(crate) ca_cert_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl NodeTls {
    fn roots(&self) -> Result<RootCertStore, ClusterError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(pki::cert_der(&self.ca_cert_pem)?)
            .map_err(ClusterError::tls)?;
        Ok(roots)
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, ClusterError> {
        Ok(vec![
            pki::cert_der(&self.cert_pem)?,
            pki::cert_der(&self.ca_cert_pem)?,
        ])
    }

    fn server_config(&self, members: &Members) -> Result<ServerConfig, ClusterError> {
        let p = provider();
        let ca = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), p.clone())
            .allow_unauthenticated()
            .build()
            .map_err(ClusterError::tls)?;
        let verifier = Arc::new(MemberClientVerifier {
            ca,
            members: members.clone(),
        });
        let mut cfg = rustls::ServerConfig::builder_with_provider(p)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(ClusterError::tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, pki::key_der(&self.key_pem)?)
            .map_err(ClusterError::tls)?;
        cfg.alpn_protocols = vec![ALPN_RAFT.to_vec(), ALPN_JOIN.to_vec(), ALPN_RELAY.to_vec()];
        let mut sc = ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(cfg).map_err(ClusterError::tls)?,
        ));
        sc.transport_config(transport_config());
        Ok(sc)
    }

    fn client_config(&self, alpn: &[u8], members: &Members) -> Result<ClientConfig, ClusterError> {
        let p = provider();
        let ca = WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), p.clone())
            .build()
            .map_err(ClusterError::tls)?;
        let verifier = Arc::new(MemberServerVerifier {
            ca,
            members: members.clone(),
        });
        let mut cfg = rustls::ClientConfig::builder_with_provider(p)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(ClusterError::tls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain()?, pki::key_der(&self.key_pem)?)
            .map_err(ClusterError::tls)?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let mut cc = ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(cfg).map_err(ClusterError::tls)?,
        ));
        cc.transport_config(transport_config());
        Ok(cc)
    }
}

/// Whose certificates the transport accepts: the members of the committed state (registered
/// and not removed). Before this node has any committed state (it has just joined and the log
/// has not reached it yet) the cluster CA alone decides.
#[derive(Clone, Debug)]
pub(crate) struct Members {
    pub(crate) state: watch::Receiver<Arc<ClusterState>>,
    /// When a refusal of each removed node was last logged: a removed node that keeps trying
    /// is logged once per [`REFUSAL_LOG_EVERY`], not on every attempt.
    refusals_logged: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

/// How often a removed node's refused handshakes are logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Members {
    pub(crate) fn new(state: watch::Receiver<Arc<ClusterState>>) -> Members {
        Members {
            state,
            refusals_logged: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let state = self.state.borrow();
        if state.cluster_id.is_none() {
            return Ok(());
        }
        match pki::node_id_from_cert(end_entity.as_ref()) {
            Some(id) if state.is_member(id) => Ok(()),
            Some(id) if state.removed.contains_key(&id) => {
                let now = Instant::now();
                let mut logged = self.refusals_logged.lock();
                if logged
                    .get(&id)
                    .is_none_or(|at| now.duration_since(*at) >= REFUSAL_LOG_EVERY)
                {
                    logged.insert(id, now);
                    tracing::warn!(
                        node = id,
                        "handshake refused: node was removed from the cluster"
                    );
                }
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            id => {
                tracing::debug!(node = ?id, "handshake refused: not a registered node");
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }
}

/// Server side: the cluster CA, then [`Members`].
#[derive(Debug)]
struct MemberClientVerifier {
    ca: Arc<dyn ClientCertVerifier>,
    members: Members,
}

impl ClientCertVerifier for MemberClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.ca.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.ca.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.ca.verify_client_cert(end_entity, intermediates, now)?;
        self.members.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.supported_verify_schemes()
    }
}

/// Client side: the cluster CA, then [`Members`].
#[derive(Debug)]
struct MemberServerVerifier {
    ca: Arc<WebPkiServerVerifier>,
    members: Members,
}

impl ServerCertVerifier for MemberServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.ca.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.members.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.supported_verify_schemes()
    }
}

/// Verifies a seed by the pinned CA hash: some certificate of the presented chain must hash to
/// the pin, and that certificate must have signed the leaf.
#[derive(Debug)]
pub(crate) struct PinnedCaVerifier {
    pinned: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// Hash of what the seed presented when it did not match, for the error message.
    pub(crate) mismatch: Mutex<Option<String>>,
}

impl PinnedCaVerifier {
    pub(crate) fn new(pinned: [u8; 32]) -> Arc<Self> {
        Arc::new(PinnedCaVerifier {
            pinned,
            provider: provider(),
            mismatch: Mutex::new(None),
        })
    }

    /// Client config for the join ALPN, without client certificate.
    pub(crate) fn client_config(self: &Arc<Self>) -> Result<ClientConfig, ClusterError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(ClusterError::tls)?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = vec![ALPN_JOIN.to_vec()];
        let mut cc = ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(cfg).map_err(ClusterError::tls)?,
        ));
        cc.transport_config(transport_config());
        Ok(cc)
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.pinned)
        else {
            let presented = intermediates
                .last()
                .map(|c| pki::ca_hash(c.as_ref()))
                .unwrap_or_else(|| "(no CA in chain)".into());
            *self.mismatch.lock() = Some(presented.clone());
            return Err(rustls::Error::General(format!(
                "CA hash {presented} does not match the pin"
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Client configurations for outgoing connections, replaced when the certificate is renewed.
struct Clients {
    raft: ClientConfig,
    relay: ClientConfig,
}

/// The node's cluster transport: its QUIC endpoint, the outgoing connection cache (one per
/// peer and ALPN) and the authenticated incoming connections.
pub(crate) struct ClusterTransport {
    pub(crate) endpoint: Endpoint,
    /// This node's id: once the state says it was removed, it dials nobody.
    id: NodeId,
    /// A member closed a connection because this node was removed (this node may never apply
    /// its own removal: the members stop replicating to it at once).
    told_removed: Arc<AtomicBool>,
    /// This node is leaving on purpose: being cut off is expected, not an error.
    leaving: Arc<AtomicBool>,
    members: Members,
    clients: Mutex<Clients>,
    conns: Mutex<HashMap<(SocketAddr, &'static [u8]), Connection>>,
    incoming: Mutex<Vec<Connection>>,
}

impl ClusterTransport {
    /// Binds the internal address. A socket still draining from a previous run of this node
    /// (same process) is waited for, for up to 5 s.
    pub(crate) async fn bind(
        id: NodeId,
        addr: SocketAddr,
        tls: &NodeTls,
        members: Members,
    ) -> Result<ClusterTransport, ClusterError> {
        let mut attempts = 0;
        let endpoint = loop {
            match Endpoint::server(tls.server_config(&members)?, addr) {
                Ok(e) => break e,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(source) => return Err(TransportError::Bind { addr, source }.into()),
            }
        };
        Ok(ClusterTransport {
            endpoint,
            id,
            told_removed: Arc::new(AtomicBool::new(false)),
            leaving: Arc::new(AtomicBool::new(false)),
            clients: Mutex::new(Clients {
                raft: tls.client_config(ALPN_RAFT, &members)?,
                relay: tls.client_config(ALPN_RELAY, &members)?,
            }),
            members,
            conns: Mutex::new(HashMap::new()),
            incoming: Mutex::new(Vec::new()),
        })
    }

    /// Uses new TLS material (a renewed certificate) for every new connection, incoming and
    /// outgoing; open connections keep theirs.
    pub(crate) fn reload(&self, tls: &NodeTls) -> Result<(), ClusterError> {
        let clients = Clients {
            raft: tls.client_config(ALPN_RAFT, &self.members)?,
            relay: tls.client_config(ALPN_RELAY, &self.members)?,
        };
        self.endpoint
            .set_server_config(Some(tls.server_config(&self.members)?));
        *self.clients.lock() = clients;
        Ok(())
    }

    /// Remembers an authenticated incoming connection, so that it can be closed when its node
    /// is removed.
    pub(crate) fn track_incoming(&self, conn: Connection) {
        self.watch_for_removal(&conn);
        let mut incoming = self.incoming.lock();
        incoming.retain(|c| c.close_reason().is_none());
        incoming.push(conn);
    }

    /// Closes every open connection, either direction, whose peer is no longer a member of
    /// the committed state; returns the node ids whose connections were closed.
    pub(crate) fn close_non_members(&self) -> Vec<NodeId> {
        let state = self.members.state.borrow().clone();
        if state.cluster_id.is_none() {
            return Vec::new();
        }
        let mut closed = Vec::new();
        let mut keep = |c: &Connection| match peer_node_id(c) {
            Some(id) if !state.is_member(id) => {
                c.close(CLOSE_REFUSED.into(), REMOVED_REASON);
                closed.push(id);
                false
            }
            _ => c.close_reason().is_none(),
        };
        self.conns.lock().retain(|_, c| keep(c));
        self.incoming.lock().retain(|c| keep(c));
        closed.sort_unstable();
        closed.dedup();
        closed
    }

    /// A live connection to node `node` at `addr` for `alpn` (raft or relay), reused across
    /// calls; the certificate the peer answers with must carry `node`'s id.
    pub(crate) async fn connect_node(
        &self,
        node: NodeId,
        addr: SocketAddr,
        alpn: &'static [u8],
    ) -> Result<Connection, TransportError> {
        if self.is_removed() {
            return Err(TransportError::Removed);
        }
        let conn = self.connection(addr, alpn).await?;
        let presented = peer_node_id(&conn);
        if presented != Some(node) {
            self.forget(addr, alpn);
            return Err(TransportError::WrongPeer {
                addr,
                expected: node,
                presented,
            });
        }
        Ok(conn)
    }

    async fn connection(
        &self,
        addr: SocketAddr,
        alpn: &'static [u8],
    ) -> Result<Connection, TransportError> {
        if let Some(c) = self.conns.lock().get(&(addr, alpn))
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let cfg = {
            let clients = self.clients.lock();
            if alpn == ALPN_RELAY {
                clients.relay.clone()
            } else {
                clients.raft.clone()
            }
        };
        let conn = self
            .endpoint
            .connect_with(cfg, addr, SERVER_NAME)
            .map_err(|source| TransportError::Connect { addr, source })?
            .await
            .map_err(|source| TransportError::Connection { addr, source })?;
        self.watch_for_removal(&conn);
        self.conns.lock().insert((addr, alpn), conn.clone());
        Ok(conn)
    }

    /// Whether this node knows it was removed (told by a member, or from its own state).
    pub(crate) fn is_removed(&self) -> bool {
        self.told_removed.load(Ordering::Relaxed)
            || self.members.state.borrow().removed.contains_key(&self.id)
    }

    /// This node is about to remove itself (`leave`).
    pub(crate) fn expect_removal(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }

    /// Notes when a member closes `conn` because this node was removed from the cluster.
    fn watch_for_removal(&self, conn: &Connection) {
        let conn = conn.clone();
        let told = self.told_removed.clone();
        let leaving = self.leaving.clone();
        tokio::spawn(async move {
            if let quinn::ConnectionError::ApplicationClosed(close) = conn.closed().await
                && close.error_code == CLOSE_REFUSED.into()
                && close.reason.as_ref() == REMOVED_REASON
                && !told.swap(true, Ordering::Relaxed)
            {
                if leaving.load(Ordering::Relaxed) {
                    tracing::info!("left the cluster: the members no longer accept this node");
                    return;
                }
                tracing::error!(
                    peer = ?peer_node_id(&conn),
                    "this node was removed from the cluster: the members refuse it from now on; stop it, wipe its data directory and join again to come back as a new node"
                );
            }
        });
    }

    /// Forgets a cached connection after a failure so the next call redials.
    pub(crate) fn forget(&self, addr: SocketAddr, alpn: &'static [u8]) {
        self.conns.lock().remove(&(addr, alpn));
    }
}

/// Close reason of the connections of a node that was removed.
const REMOVED_REASON: &[u8] = b"node removed from the cluster";

/// Node id from the verified certificate of the other side of a connection.
pub(crate) fn peer_node_id(conn: &Connection) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    pki::node_id_from_cert(certs.first()?.as_ref())
}

/// Negotiated ALPN of a connection.
pub(crate) fn alpn_of(conn: &Connection) -> Option<Vec<u8>> {
    let data = conn.handshake_data()?;
    data.downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// One request/response exchange on a fresh bi-stream: JSON body, ended by FIN.
pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
    conn: &Connection,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, TransportError> {
    let work = async {
        let (mut send, mut recv) =
            conn.open_bi()
                .await
                .map_err(|source| TransportError::Connection {
                    addr: conn.remote_address(),
                    source,
                })?;
        write_msg(&mut send, req).await?;
        read_msg(&mut recv).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| TransportError::Timeout(timeout))?
}

/// Writes one message and ends the stream.
pub(crate) async fn write_msg<T: Serialize>(
    send: &mut SendStream,
    msg: &T,
) -> Result<(), TransportError> {
    send.write_all(&serde_json::to_vec(msg)?).await?;
    send.finish()?;
    Ok(())
}

/// Reads one message up to the end of the stream.
pub(crate) async fn read_msg<T: DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<T, TransportError> {
    let bytes = recv.read_to_end(MAX_MESSAGE).await?;
    Ok(serde_json::from_slice(&bytes)?)
}
