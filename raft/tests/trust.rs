//! Nothing without a cluster certificate opens a relay or Raft stream; members can.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, init_tracing, join, start, wait_state};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use skein_raft::PeerFailure;
use skein_raft::transport::{ALPN_RAFT, ALPN_RELAY};

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
