//! Trust of the cluster transport: nothing without a cluster certificate opens a relay or Raft
//! stream; a removed node is refused on every ALPN and its open connections close; a join
//! cannot take over a member's uuid; single-use tokens; the CA key only on voters and never in
//! the replicated state; short-lived certificates renewed in place; the join endpoint bounded
//! before authentication.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TTL, config, init_tracing, join, start, wait_state};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use skein_raft::transport::{ALPN_JOIN, ALPN_RAFT, ALPN_RELAY};
use skein_raft::{Cluster, ClusterError, JoinLimits, PeerFailure, Settings};

/// Trusts any server: the attacker side does not care who it talks to.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn plain_client(alpn: &[u8]) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(cfg).expect("quic config"),
    ))
}

/// Tries to use a stream without a certificate; returns whether the server answered anything.
async fn try_stream(endpoint: &quinn::Endpoint, target: std::net::SocketAddr, alpn: &[u8]) -> bool {
    let Ok(connecting) = endpoint.connect_with(plain_client(alpn), target, "skein-node") else {
        return false;
    };
    let Ok(conn) = connecting.await else {
        return false;
    };
    let attempt = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(b"{\"Status\":null}").await.ok()?;
        send.finish().ok()?;
        let answer = recv.read_to_end(1 << 20).await.ok()?;
        Some(answer)
    };
    let answered = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten();
    // The server closed the connection with the "certificate required" code.
    if let quinn::ConnectionError::ApplicationClosed(close) = conn.closed().await {
        assert_eq!(close.reason.as_ref(), b"cluster certificate required");
    }
    answered.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_cluster_certificate_cannot_open_relay_or_raft_streams() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, info) = start(dir.path(), &["eu"]).await;
    let first = nodes.remove(0);
    let mut listener = first.relay_listener().expect("listener");
    assert!(first.relay_listener().is_none(), "only one listener");
    let target = info.seeds[0];

    let endpoint =
        quinn::Endpoint::client("127.0.3.9:0".parse().expect("addr")).expect("client endpoint");
    assert!(
        !try_stream(&endpoint, target, ALPN_RELAY).await,
        "relay without certificate"
    );
    assert!(
        !try_stream(&endpoint, target, ALPN_RAFT).await,
        "raft without certificate"
    );
    let nothing = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(nothing.is_err(), "no relay stream may reach the media node");

    // A member can: node 2 opens a relay stream to node 1, which sees node 2's id.
    let second = join(config(dir.path(), 2, "us"), &info).await;
    let mut rx = second.state();
    wait_state(&mut rx, "node 1 known to node 2", |s| {
        s.nodes.contains_key(&1)
    })
    .await;
    let mut out = second.open_relay(1).await.expect("open relay");
    assert_eq!(out.peer, 1);
    out.send.write_all(b"flv-bytes").await.expect("write");
    out.send.finish().expect("finish");
    let mut incoming = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("relay stream in time")
        .expect("relay stream");
    assert_eq!(incoming.peer, 2);
    let got = incoming.recv.read_to_end(1024).await.expect("read");
    assert_eq!(got, b"flv-bytes");

    endpoint.close(0u32.into(), b"");

    // Failures say what they mean for the peer: unknown is not dead.
    let unknown = second
        .open_relay(99)
        .await
        .err()
        .expect("node 99 is unknown");
    assert_eq!(unknown.peer_failure(), Some(PeerFailure::Unknown));
    first.shutdown().await;
    let dead = tokio::time::timeout(Duration::from_secs(30), async {
        // Until node 2 has seen the close, its cached connection still opens streams.
        loop {
            match second.open_relay(1).await {
                Err(e) => break e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("open_relay to a stopped node fails");
    assert!(dead.is_unreachable(), "stopped node: {dead}");
    second.shutdown().await;
}

/// A client presenting the certificate `cert_pem` with the key and CA of the node in `dir`.
fn member_client(dir: &Path, cert_pem: &str, alpn: &[u8]) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
    let chain = vec![
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert"),
        CertificateDer::from_pem_slice(read("ca.crt").as_bytes()).expect("ca"),
    ];
    let key = PrivateKeyDer::from_pem_slice(read("node.key").as_bytes()).expect("key");
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .expect("client cert");
    cfg.alpn_protocols = vec![alpn.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(cfg).expect("quic config"),
    ))
}

/// Whether a connection with `cfg` gets an answer to a status request on `skein-raft/1`
/// (for other ALPNs: whether the connection is still up after a handshake and a short wait).
async fn accepted(
    endpoint: &quinn::Endpoint,
    target: SocketAddr,
    cfg: quinn::ClientConfig,
    raft: bool,
) -> bool {
    let attempt = async {
        let conn = endpoint
            .connect_with(cfg, target, "skein-node")
            .ok()?
            .await
            .ok()?;
        if raft {
            let (mut send, mut recv) = conn.open_bi().await.ok()?;
            send.write_all(b"\"Status\"").await.ok()?;
            send.finish().ok()?;
            let answer = recv.read_to_end(1 << 20).await.ok()?;
            conn.close(0u32.into(), b"");
            return Some(!answer.is_empty());
        }
        // The server rejects a client certificate after the client's side of the handshake.
        let closed = tokio::time::timeout(Duration::from_millis(1500), conn.closed()).await;
        conn.close(0u32.into(), b"");
        Some(closed.is_err())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes an identity claiming `uuid` into a fresh data directory, as an attacker would.
fn claim_uuid(dir: &Path, uuid: uuid::Uuid) {
    std::fs::create_dir_all(dir).expect("dir");
    let identity = format!(r#"{{"uuid":"{uuid}","node_id":null,"cluster_id":null}}"#);
    std::fs::write(dir.join("identity.json"), identity).expect("identity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_refused_everywhere_and_its_connections_close() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, info) = start(dir.path(), &["eu", "us", "ap"]).await;
    let target = info.seeds[0];
    let third_dir = dir.path().join("n3");
    let mut rx = nodes[2].state();
    wait_state(&mut rx, "node 1 known to node 3", |s| {
        s.nodes.contains_key(&1)
    })
    .await;
    let mut listener = nodes[0].relay_listener().expect("listener");

    // Before the removal node 3's certificate works and it holds a relay stream to node 1.
    let cert = std::fs::read_to_string(third_dir.join("node.crt")).expect("node 3 cert");
    let endpoint = quinn::Endpoint::client("127.0.3.9:0".parse().expect("addr")).expect("endpoint");
    assert!(
        accepted(
            &endpoint,
            target,
            member_client(&third_dir, &cert, ALPN_RAFT),
            true
        )
        .await,
        "a member's certificate is accepted on skein-raft/1"
    );
    let mut out = nodes[2].open_relay(1).await.expect("relay from node 3");
    out.send.write_all(b"flv").await.expect("write");
    let mut incoming = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("relay stream in time")
        .expect("relay stream");
    assert_eq!(incoming.peer, 3);

    nodes[0].remove(3).await.expect("remove node 3");

    // Its open relay connection is closed from node 1's side, both ends see it.
    let read =
        tokio::time::timeout(Duration::from_secs(10), incoming.recv.read_to_end(1 << 20)).await;
    assert!(
        matches!(read, Ok(Err(_))),
        "node 1's end of the relay stream ends in an error"
    );
    let read = tokio::time::timeout(Duration::from_secs(10), out.recv.read_to_end(1 << 20)).await;
    assert!(
        matches!(read, Ok(Err(_))),
        "node 3's end of the relay stream ends in an error"
    );

    // New connections with its certificate are refused on every ALPN.
    for (alpn, raft) in [(ALPN_RAFT, true), (ALPN_RELAY, false), (ALPN_JOIN, false)] {
        assert!(
            !accepted(
                &endpoint,
                target,
                member_client(&third_dir, &cert, alpn),
                raft
            )
            .await,
            "removed node's certificate refused on {}",
            String::from_utf8_lossy(alpn)
        );
    }
    // Through its own transport, it learns that it was refused.
    let err = nodes[2].open_relay(1).await.err().expect("relay refused");
    assert_eq!(err.peer_failure(), Some(PeerFailure::Refused), "{err}");
    assert!(
        err.to_string().contains("removed from the cluster"),
        "{err}"
    );

    // Its uuid cannot join again, even with a valid token.
    let uuid = nodes[0].state().borrow().removed[&3];
    let again = config(dir.path(), 4, "ap");
    claim_uuid(&again.data_dir, uuid);
    let err = Cluster::join(again, &info.seeds, &info.token.to_string(), &info.ca_hash)
        .await
        .err()
        .expect("removed uuid refused");
    assert!(
        matches!(err, ClusterError::JoinRefused(ref why) if why.contains("was removed")),
        "{err}"
    );

    // It no longer keeps the CA key it had as a voter.
    eventually("removed node deleted its CA key", || {
        !third_dir.join("ca.key").exists()
    })
    .await;

    // The others are unaffected.
    nodes[1]
        .open_relay(1)
        .await
        .expect("node 2 still relays to node 1");
    endpoint.close(0u32.into(), b"");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_cannot_take_over_a_member_s_uuid_and_single_use_tokens_work_once() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, info) = start(dir.path(), &["eu", "us"]).await;
    let uuid = nodes[0].state().borrow().nodes[&2].uuid;
    let thief = config(dir.path(), 3, "us");
    claim_uuid(&thief.data_dir, uuid);
    let err = Cluster::join(thief, &info.seeds, &info.token.to_string(), &info.ca_hash)
        .await
        .err()
        .expect("a member's uuid with another key is refused");
    assert!(
        matches!(err, ClusterError::JoinRefused(ref why) if why.contains("another key")),
        "{err}"
    );
    assert_eq!(
        nodes[0].state().borrow().nodes.len(),
        2,
        "nothing registered"
    );

    let once = nodes[1].create_single_use_token(TTL).await.expect("token");
    let third = Cluster::join(
        config(dir.path(), 4, "ap"),
        &info.seeds,
        &once.to_string(),
        &info.ca_hash,
    )
    .await
    .expect("first join with a single-use token");
    let err = Cluster::join(
        config(dir.path(), 5, "ap"),
        &info.seeds,
        &once.to_string(),
        &info.ca_hash,
    )
    .await
    .err()
    .expect("second join with the same single-use token");
    assert_eq!(err.to_string(), "join refused: token unknown or expired");
    assert!(!nodes[0].state().borrow().tokens.contains_key(&once.id));
    third.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// Mode bits of a path.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_voters_hold_the_ca_key_and_the_state_has_none() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, info) = start(dir.path(), &["eu", "us"]).await;
    let has_key = |host: u8| dir.path().join(format!("n{host}/ca.key")).exists();
    // Two nodes: one voter.
    let mut rx = nodes[0].state();
    wait_state(&mut rx, "node 2 a learner", |s| s.learners.contains(&2)).await;
    assert!(has_key(1) && !has_key(2), "only the voter holds the key");

    // A third node makes three voters: the new voters get the key over the cluster transport.
    nodes.push(join(config(dir.path(), 3, "ap"), &info).await);
    let s = wait_state(&mut rx, "three voters holding the key", |s| {
        s.voters.len() == 3 && !s.voters_changing && s.ca_key_holders == s.voters
    })
    .await;
    assert_eq!(s.ca_key_holders.len(), 3);
    eventually("key files on the voters", || (1..=3).all(has_key)).await;
    let ca_key = std::fs::read_to_string(dir.path().join("n1/ca.key")).expect("ca.key");
    assert!(ca_key.contains("PRIVATE KEY"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("n2/ca.key")).expect("ca.key"),
        ca_key
    );

    // A later node joins (signed by the leader, a holder) and works; as a learner, no key.
    let fourth = join(config(dir.path(), 4, "eu"), &info).await;
    let mut rx4 = fourth.state();
    wait_state(&mut rx4, "node 4 caught up", |s| s.nodes.contains_key(&1)).await;
    fourth.open_relay(1).await.expect("new node relays");
    eventually("the learner has no key", || !has_key(4)).await;

    for n in nodes {
        n.shutdown().await;
    }
    fourth.shutdown().await;
    // Nothing replicated or stored by Raft holds a private key; everything is the owner's only.
    for host in 1..=4u8 {
        let data = dir.path().join(format!("n{host}"));
        let db = std::fs::read(data.join("raft.redb")).expect("raft.redb");
        assert!(
            !db.windows(b"PRIVATE KEY".len())
                .any(|w| w == b"PRIVATE KEY"),
            "raft.redb of node {host} holds no private key"
        );
        assert_eq!(mode(&data), 0o700, "data dir of node {host}");
        for entry in std::fs::read_dir(&data).expect("read dir") {
            let path = entry.expect("entry").path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_and_used_without_restart() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let lifetime = Duration::from_secs(6);
    let mut first_cfg = config(dir.path(), 1, "eu");
    first_cfg.settings = Settings {
        cert_lifetime_ms: lifetime.as_millis() as u64,
        ..first_cfg.settings
    };
    let (first, info) = Cluster::init(first_cfg, TTL).await.expect("init");
    let second = join(config(dir.path(), 2, "us"), &info).await;
    let second_dir = dir.path().join("n2");
    let original = std::fs::read_to_string(second_dir.join("node.crt")).expect("cert");
    let original_expiry = second.cert_expires_at_ms().expect("expiry");
    let started = Instant::now();

    // Renewed (by node 1, the holder of the CA key) after two thirds of the lifetime.
    eventually("node 2 renews its certificate", || {
        std::fs::read_to_string(second_dir.join("node.crt")).is_ok_and(|c| c != original)
    })
    .await;
    eventually("node 2 uses the renewed certificate", || {
        second
            .cert_expires_at_ms()
            .is_some_and(|e| e > original_expiry)
    })
    .await;
    // Wait until the original has expired (webpki counts whole seconds).
    let past_expiry = lifetime + Duration::from_secs(2);
    tokio::time::sleep(past_expiry.saturating_sub(started.elapsed())).await;

    let endpoint = quinn::Endpoint::client("127.0.3.9:0".parse().expect("addr")).expect("endpoint");
    let renewed = std::fs::read_to_string(second_dir.join("node.crt")).expect("cert");
    assert!(
        accepted(
            &endpoint,
            info.seeds[0],
            member_client(&second_dir, &renewed, ALPN_RAFT),
            true
        )
        .await,
        "the renewed certificate is accepted"
    );
    assert!(
        !accepted(
            &endpoint,
            info.seeds[0],
            member_client(&second_dir, &original, ALPN_RAFT),
            true
        )
        .await,
        "the expired original is refused"
    );
    // The cluster keeps working on fresh connections: node 1 dials node 2 anew.
    first
        .open_relay(2)
        .await
        .expect("relay to node 2 with renewed certificates");
    let mut rx = first.state();
    let token = second
        .create_token(TTL)
        .await
        .expect("write through node 2");
    wait_state(&mut rx, "write through node 2 committed", |s| {
        s.tokens.contains_key(&token.id)
    })
    .await;
    endpoint.close(0u32.into(), b"");
    second.shutdown().await;
    first.shutdown().await;
}

/// Opens a join stream, sends `body` (finished or not) and says whether any answer came back.
async fn join_stream_answered(conn: &quinn::Connection, body: &[u8], finish: bool) -> bool {
    let attempt = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(body).await.ok()?;
        if finish {
            send.finish().ok()?;
        }
        let answer = recv.read_to_end(1 << 20).await.ok()?;
        Some(!answer.is_empty())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_endpoint_is_bounded_before_authentication() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), 1, "eu");
    cfg.join_limits = JoinLimits {
        connections_per_source: 2,
        streams_per_connection: 1,
        request_bytes: 4096,
        request_timeout: Duration::from_secs(1),
        connection_lifetime: Duration::from_secs(20),
    };
    let (first, info) = Cluster::init(cfg, TTL).await.expect("init");
    let target = info.seeds[0];
    let endpoint = quinn::Endpoint::client("127.0.3.9:0".parse().expect("addr")).expect("endpoint");
    let connect = || async {
        endpoint
            .connect_with(plain_client(ALPN_JOIN), target, "skein-node")
            .expect("connect")
            .await
            .expect("handshake")
    };
    let conn = connect().await;
    // A small malformed request is answered (with an error): the endpoint works.
    assert!(
        join_stream_answered(&conn, b"{}", true).await,
        "small request answered"
    );
    // Too large: closed without an answer.
    assert!(
        !join_stream_answered(&conn, &vec![b' '; 8192], true).await,
        "oversized request"
    );
    // Too slow: never finished, closed after the time limit without an answer.
    assert!(
        !join_stream_answered(&conn, b"{\"Join\":", false).await,
        "unfinished request"
    );
    // One stream at a time per connection: a second one while the first is open is refused.
    let (mut held, _held_recv) = conn.open_bi().await.expect("first stream");
    held.write_all(b"{").await.expect("write");
    assert!(
        !join_stream_answered(&conn, b"{}", true).await,
        "second concurrent stream"
    );

    // Two connections per source: of two more, one is closed at once (the server handles new
    // connections concurrently, so either may be the one over the limit) and the other stays.
    let second = connect().await;
    let third = connect().await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            e = second.closed() => (e, &third),
            e = third.closed() => (e, &second),
        }
    })
    .await;
    let Ok((closed, other)) = closed else {
        panic!("a third connection from one source was not closed");
    };
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(ref c) if c.reason.as_ref() == b"too many join connections"),
        "a third connection from one source: {closed:?}"
    );
    assert!(
        other.close_reason().is_none(),
        "the connection within the limit stays open"
    );
    drop(second);

    // Another source still joins.
    let joined = join(config(dir.path(), 2, "us"), &info).await;
    assert_eq!(joined.node_id(), 2);
    endpoint.close(0u32.into(), b"");
    joined.shutdown().await;
    first.shutdown().await;
}
