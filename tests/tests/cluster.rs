//! Chaos tests of a real `skein` cluster: every node is its own process on its own loopback
//! address, media comes from ffmpeg and goes to ffmpeg, and nodes die by SIGKILL.
//!
//! Timing is never asserted: every wait is for an eventual condition with a generous bound.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use skein_tests::cluster::{Cluster, ids, parse_join, wait_for};
use skein_tests::media::{self, Recording, continuity};
use skein_tests::require;

const STREAM: &str = "live/cam";

fn node_status(status: &Value, id: u64) -> Option<&Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_u64() == Some(id))
}

/// Pool settled at its target: `target` active origins, none draining, all live.
fn pool_settled(status: &Value, target: usize) -> bool {
    let pool = &status["origin_pool"];
    ids(&pool["active"]).len() == target
        && ids(&pool["draining"]).is_empty()
        && ids(&pool["live"]) == ids(&pool["active"])
}

/// A Prometheus counter or histogram sample of a node (`None` when absent).
fn metric(node: &skein_tests::cluster::Member, name: &str) -> Option<f64> {
    let (status, body) = skein_tests::http_request(node.http, "GET", "/metrics", "")?;
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.split_whitespace().next() == Some(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Six nodes: o1, o2 in region c that may only be origins, ea (publish, region a) and eb (play,
/// region b) that may only be edges, and a2, b2 that may be either. The stream survives its origin's death, the death of
/// every origin, a leader's death and an origin leaving; killed nodes come back with their ids.
#[test]
fn cluster_survives_origin_leader_and_membership_changes() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let mut c = Cluster::init(
        "chaos",
        "o1",
        "c",
        Some("origin"),
        &["--origin-target", "2"],
    );
    c.join("o2", "c", Some("origin"));
    c.join("ea", "a", Some("edge"));
    c.join("eb", "b", Some("edge"));
    c.join("a2", "a", None);
    c.join("b2", "b", None);
    let dir = c.root().to_owned();

    // Membership: five voters (the target for six nodes) covering every region, two origins.
    let status = c.wait_status(
        "six nodes, five voters in every region, two live origins",
        Duration::from_secs(90),
        |s| {
            let voters = ids(&s["voters"]);
            let regions: BTreeSet<&str> = voters
                .iter()
                .filter_map(|v| node_status(s, *v)?["region"].as_str())
                .collect();
            s["nodes"].as_array().map_or(0, Vec::len) == 6
                && voters.len() == 5
                && s["voters_changing"] == false
                && regions.len() == 3
                && pool_settled(s, 2)
        },
    );
    // The pool spreads over regions: o1 and one of a2, b2 (ea and eb may only be edges).
    let may_be_origin: BTreeSet<u64> = ["o1", "o2", "a2", "b2"]
        .iter()
        .map(|n| c.node(n).id)
        .collect();
    let origins = ids(&status["origin_pool"]["active"]);
    assert!(origins.contains(&c.node("o1").id), "{status}");
    assert!(origins.is_subset(&may_be_origin), "{status}");
    // `skein status`: the table names every node with its region and roles.
    let table = c.node("eb").admin(&["status"]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("leader: "), "{table}");
    for (name, region, roles) in [
        ("o1", "c", "origin"),
        ("o2", "c", "origin"),
        ("ea", "a", "edge"),
        ("eb", "b", "edge"),
        ("a2", "a", "edge,origin"),
        ("b2", "b", "edge,origin"),
    ] {
        let id = c.node(name).id;
        let row = table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], id.to_string(), "{row}");
        assert_eq!(cells[2], region, "{row}");
        assert_eq!(cells[3], roles, "{row}");
        assert!(
            cells[4].starts_with("voter") || cells[4] == "learner",
            "{row}"
        );
        let origin = if origins.contains(&id) { "active" } else { "-" };
        assert_eq!(cells[6], origin, "{row}");
    }
    assert_eq!(table.matches("voter").count() - 1, 5, "{table}");
    // `skein status --json` is the cluster document.
    let json = c.node("a2").admin(&["status", "--json"]);
    assert!(json.status.success(), "{json:?}");
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["nodes"].as_array().unwrap().len(), 6);
    assert_eq!(ids(&json["voters"]).len(), 5);
    assert!(json["leader"].is_u64());

    // Publish in region a, play in region b over RTMP and HTTP-FLV.
    let mut publisher = media::publish(&c.node("ea").rtmp_url(STREAM), 900);
    let owner = c.wait_stream_origin(STREAM, Duration::from_secs(30));
    assert!(origins.contains(&owner), "pushed to origin {owner}");
    let eb_id = c.node("eb").id;
    let viewer = Recording::start(&c.node("eb").rtmp_url(STREAM), 20, &dir.join("v1.flv"));
    viewer.wait_playing(Duration::from_secs(30));
    let flv_viewer = Recording::start(&c.node("eb").flv_url(STREAM), 5, &dir.join("v2.flv"));
    flv_viewer.wait_playing(Duration::from_secs(30));
    // Two viewers on eb, one pull: the origin serves eb once, eb pulls the stream once.
    let served = c.by_id(owner).relay();
    assert_eq!(
        served["served_pulls"][STREAM],
        serde_json::json!([eb_id]),
        "{served}"
    );
    let eb_view = c.node("eb").relay();
    assert_eq!(eb_view["pulls"], serde_json::json!([STREAM]), "{eb_view}");
    let flv = continuity(&flv_viewer.finish(Duration::from_secs(60)));
    assert!(flv.video_packets > 0 && flv.audio_packets > 0, "{flv:?}");
    assert_eq!(
        media::streams(&dir.join("v2.flv").display().to_string()),
        [
            ("audio".into(), "aac".into()),
            ("video".into(), "h264".into())
        ]
    );

    // kill -9 of the stream's origin: the same viewer connection keeps receiving.
    c.by_id_mut(owner).kill();
    let got = continuity(&viewer.finish(Duration::from_secs(90)));
    assert!(got.span_ms >= 18_000.0, "viewer stopped early: {got:?}");
    let new_owner = c.wait_stream_origin(STREAM, Duration::from_secs(30));
    assert_ne!(new_owner, owner);
    wait_for("eb logs the resumed pull", Duration::from_secs(10), || {
        c.node("eb")
            .log_contains("pull resumed from another origin")
            .then_some(())
    });
    assert!(metric(c.node("eb"), "skein_relay_failovers_total").unwrap_or(0.0) >= 1.0);
    assert!(metric(c.node("eb"), "skein_relay_gap_seconds_count").unwrap_or(0.0) >= 1.0);

    // The killed origin comes back with its id, and the pool settles at two origins again.
    c.by_id_mut(owner).restart();
    c.wait_status("killed origin back up", Duration::from_secs(60), |s| {
        node_status(s, owner).is_some_and(|n| n["health"] == "up") && pool_settled(s, 2)
    });

    // kill -9 of every origin: edges get promoted and the viewer keeps receiving.
    let status = c.any_running().status();
    let doomed = ids(&status["origin_pool"]["active"]);
    let voters = ids(&status["voters"]);
    assert!(
        voters.difference(&doomed).count() * 2 > voters.len(),
        "the test needs a quorum without the origins: {status}"
    );
    let viewer = Recording::start(&c.node("eb").rtmp_url(STREAM), 30, &dir.join("v3.flv"));
    viewer.wait_playing(Duration::from_secs(30));
    for id in &doomed {
        c.by_id_mut(*id).kill();
    }
    let promoted = c.wait_status("new origins promoted", Duration::from_secs(90), |s| {
        let live = ids(&s["origin_pool"]["live"]);
        live.len() == 2 && live.is_disjoint(&doomed)
    });
    let promoted = ids(&promoted["origin_pool"]["live"]);
    assert!(promoted.is_subset(&may_be_origin), "{promoted:?}");
    let got = continuity(&viewer.finish(Duration::from_secs(120)));
    assert!(got.span_ms >= 28_000.0, "viewer stopped early: {got:?}");
    for id in &doomed {
        c.by_id_mut(*id).restart();
    }

    // kill -9 of the Raft leader: another leader appears and a join still succeeds.
    let before = c.wait_status("every node up", Duration::from_secs(60), |s| {
        s["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().all(|n| n["health"] == "up"))
            && s["leader"].is_u64()
    });
    let leader = before["leader"].as_u64().unwrap();
    let leader_name = c.by_id(leader).name.clone();
    c.by_id_mut(leader).kill();
    c.wait_status("a new leader", Duration::from_secs(60), |s| {
        s["leader"].as_u64().is_some_and(|l| l != leader)
    });
    let late = c.join("late", "a", None);
    let late_id = c.nodes[late].id;
    c.wait_status("the late node registered", Duration::from_secs(30), |s| {
        node_status(s, late_id).is_some()
    });

    // The old leader comes back (if it was the publishing edge, the publisher reconnects).
    c.by_id_mut(leader).restart();
    if leader_name == "ea" {
        publisher = media::publish(&c.node("ea").rtmp_url(STREAM), 900);
    }

    // `skein remove` of a node that died for good, through a node that has been up since the
    // join (a node that just restarted may not have caught up with the log yet).
    c.nodes[late].kill();
    let remover = c
        .nodes
        .iter()
        .find(|n| n.is_running() && n.id != leader)
        .expect("a node up since the join");
    let removed = remover.admin(&["remove", "late"]);
    assert!(removed.status.success(), "{removed:?}");
    c.wait_status("removed node gone", Duration::from_secs(30), |s| {
        node_status(s, late_id).is_none() && !ids(&s["voters"]).contains(&late_id)
    });

    // `skein leave` of the stream's origin: the stream moves, the viewer keeps receiving,
    // the node stops and leaves the status.
    c.wait_status("origin pool settled", Duration::from_secs(90), |s| {
        pool_settled(s, 2)
    });
    let owner = c.wait_stream_origin(STREAM, Duration::from_secs(30));
    let viewer = Recording::start(&c.node("eb").rtmp_url(STREAM), 15, &dir.join("v4.flv"));
    viewer.wait_playing(Duration::from_secs(30));
    let leaving = c.by_id(owner).name.clone();
    let left = c.by_id(owner).admin(&["leave"]);
    assert!(left.status.success(), "{left:?}");
    let exit = c.by_id_mut(owner).wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "{leaving} exited with {exit}");
    let got = continuity(&viewer.finish(Duration::from_secs(90)));
    assert!(got.span_ms >= 13_000.0, "viewer stopped early: {got:?}");
    c.wait_status("the node that left is gone", Duration::from_secs(30), |s| {
        node_status(s, owner).is_none()
    });
    let moved = c.wait_stream_origin(STREAM, Duration::from_secs(30));
    assert_ne!(moved, owner);
    drop(publisher);
}

/// `skein join` refusals at the process level: a wrong token, a wrong CA hash and an expired
/// token end the process with a clear message; a token from `skein token create` works; a QUIC
/// client without a cluster certificate gets no relay stream from a running node.
#[test]
fn joins_are_refused_clearly_and_relay_needs_a_cluster_certificate() {
    let mut c = Cluster::init("trust", "seed", "c", None, &["--token-ttl", "3s"]);
    let initialised = Instant::now();
    let join = c.join.clone();

    let (id, _secret) = join.token.split_once('.').expect("token is ID.SECRET");
    let wrong_token = format!("{id}.{}", "0".repeat(16));
    let out = c.failed_join("x1", "a", &wrong_token, &join.ca_hash);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "wrong token joined: {stderr}");
    assert!(
        stderr.contains("join refused: token unknown or expired"),
        "{stderr}"
    );

    let wrong_hash = format!("sha256:{}", "ab".repeat(32));
    let out = c.failed_join("x2", "a", &join.token, &wrong_hash);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "wrong CA hash joined: {stderr}");
    assert!(
        stderr.contains("does not match the pinned") && stderr.contains(&wrong_hash),
        "{stderr}"
    );

    // The init token lived 3 s.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(initialised.elapsed()));
    let out = c.failed_join("x3", "a", &join.token, &join.ca_hash);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expired token joined: {stderr}");
    assert!(
        stderr.contains("join refused: token unknown or expired"),
        "{stderr}"
    );

    // A fresh token from `skein token create` (admin token read from the data directory).
    let created = c.nodes[0].admin(&["token", "create", "--ttl", "10m"]);
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8(created.stdout).unwrap();
    c.join = stdout
        .lines()
        .find_map(parse_join)
        .unwrap_or_else(|| panic!("no join command in: {stdout}"));
    assert_eq!(c.join.ca_hash, join.ca_hash);
    c.join("member", "a", None);
    c.wait_status("two members", Duration::from_secs(30), |s| {
        s["nodes"].as_array().map_or(0, Vec::len) == 2
    });

    // `skein token create --single-use`: the first join consumes it, the second is refused.
    let created = c.nodes[0].admin(&["token", "create", "--ttl", "10m", "--single-use"]);
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8(created.stdout).unwrap();
    assert!(stdout.contains("single use"), "{stdout}");
    let once = stdout
        .lines()
        .find_map(parse_join)
        .unwrap_or_else(|| panic!("no join command in: {stdout}"));
    c.join = once.clone();
    c.join("once", "b", None);
    let out = c.failed_join("twice", "b", &once.token, &once.ca_hash);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a single-use token joined twice: {stderr}"
    );
    assert!(
        stderr.contains("join refused: token unknown or expired"),
        "{stderr}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = c.nodes[0].internal;
    runtime.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.3.250:0".parse().unwrap()).unwrap();
        let outcome = quic::try_relay_stream(&endpoint, target).await;
        endpoint.close(0u32.into(), b"");
        assert_eq!(
            outcome,
            quic::Outcome::Closed("cluster certificate required".into()),
            "a client without a cluster certificate must not get a relay stream"
        );
    });
}

/// Mode bits of a path.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Writes an identity claiming `uuid` into the data directory `dir`, as an attacker would.
fn claim_uuid(dir: &Path, uuid: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let identity = format!(r#"{{"uuid":"{uuid}","node_id":null,"cluster_id":null}}"#);
    std::fs::write(dir.join("identity.json"), identity).unwrap();
}

#[test]
fn a_removed_node_is_cut_off_and_only_voters_hold_the_ca_key() {
    require("ffmpeg", "ffmpeg");
    let mut c = Cluster::init(
        "revoke",
        "o1",
        "c",
        Some("origin"),
        &["--origin-target", "1"],
    );
    c.join("ea", "a", Some("edge"));
    c.join("eb", "b", Some("edge"));
    c.join("ec", "a", Some("edge"));
    let holders_are_voters = |s: &Value| {
        ids(&s["voters"]).len() == 3
            && s["voters_changing"] == false
            && ids(&s["ca_key_holders"]) == ids(&s["voters"])
    };
    let status = c.wait_status(
        "four nodes, three voters holding the CA key",
        Duration::from_secs(60),
        |s| s["nodes"].as_array().map_or(0, Vec::len) == 4 && holders_are_voters(s),
    );
    let voters = ids(&status["voters"]);
    for n in &c.nodes {
        assert_eq!(
            n.data_dir.join("ca.key").exists(),
            voters.contains(&n.id),
            "{} (id {}) holds ca.key if and only if it is a voter: {status}",
            n.name,
            n.id
        );
    }

    // A viewer on eb and one on ec play the stream published on ea (its origin is o1).
    let dir = c.root().to_owned();
    let mut publisher = media::publish(&c.node("ea").rtmp_url(STREAM), 120);
    c.wait_stream_origin(STREAM, Duration::from_secs(30));
    let on_b = Recording::start(&c.node("eb").flv_url(STREAM), 14, &dir.join("eb.flv"));
    let on_c = Recording::start(&c.node("ec").flv_url(STREAM), 14, &dir.join("ec.flv"));
    on_b.wait_playing(Duration::from_secs(30));
    on_c.wait_playing(Duration::from_secs(30));
    let victim = c.node("eb").id;
    let uuid_of = |id: u64| {
        node_status(&status, id).unwrap()["uuid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let victim_uuid = uuid_of(victim);
    let removed = c.node("o1").admin(&["remove", &victim.to_string()]);
    assert!(removed.status.success(), "{removed:?}");

    // The removed node is told (its transport dials nobody from then on).
    wait_for("eb knows it was removed", Duration::from_secs(15), || {
        c.node("eb")
            .log_contains("this node was removed from the cluster")
            .then_some(())
    });
    // ec's viewer keeps the stream for its whole 14 s; eb's lost it at the removal (the relay
    // connection to the origin closed), a few seconds in.
    let on_c = continuity(&on_c.finish(Duration::from_secs(60)));
    let eb_file = on_b.file.clone();
    drop(on_b);
    let on_b = continuity(&media::packets(&eb_file));
    assert!(
        on_c.span_ms >= 12_000.0,
        "ec's viewer kept the stream: {on_c:?}"
    );
    assert!(
        on_b.span_ms + 5_000.0 < on_c.span_ms,
        "eb's viewer lost the stream at the removal: {on_b:?} vs {on_c:?}"
    );

    // New connections with its certificate are refused on every ALPN.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = c.node("o1").internal;
    let eb_dir = c.node("eb").data_dir.clone();
    runtime.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.3.251:0".parse().unwrap()).unwrap();
        for alpn in [
            skein_raft::transport::ALPN_RAFT,
            skein_raft::transport::ALPN_RELAY,
            skein_raft::transport::ALPN_JOIN,
        ] {
            let outcome = quic::try_with_certificate(&endpoint, target, &eb_dir, alpn).await;
            assert!(
                matches!(outcome, quic::Outcome::NoConnection(_)),
                "removed node's certificate on {}: {outcome:?}",
                String::from_utf8_lossy(alpn)
            );
        }
        endpoint.close(0u32.into(), b"");
    });
    assert!(
        c.node("o1")
            .log_contains("handshake refused: node was removed from the cluster")
    );

    // Joins with its uuid, or with the uuid of a live member, are refused.
    claim_uuid(&dir.join("x-eb"), &victim_uuid);
    let out = c.failed_join("x-eb", "b", &c.join.token, &c.join.ca_hash);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a removed uuid joined: {stderr}");
    assert!(stderr.contains("was removed from the cluster"), "{stderr}");
    claim_uuid(&dir.join("x-ea"), &uuid_of(c.node("ea").id));
    let out = c.failed_join("x-ea", "a", &c.join.token, &c.join.ca_hash);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a member's uuid was taken over: {stderr}"
    );
    assert!(
        stderr.contains("already a member with another key"),
        "{stderr}"
    );

    // The voter set heals without eb, the new voter gets the key, the removed node drops it.
    let status = c.wait_status(
        "three voters without eb, all holding the CA key",
        Duration::from_secs(60),
        |s| holders_are_voters(s) && !ids(&s["voters"]).contains(&victim),
    );
    let voters = ids(&status["voters"]);
    wait_for(
        "key files only on the voters",
        Duration::from_secs(15),
        || {
            c.nodes
                .iter()
                .all(|n| n.data_dir.join("ca.key").exists() == voters.contains(&n.id))
                .then_some(())
        },
    );
    publisher.kill();

    // No private key in any node's Raft database; secrets at rest are the owner's only.
    for n in &c.nodes {
        let db = std::fs::read(n.data_dir.join("raft.redb")).unwrap();
        assert!(
            !db.windows(b"PRIVATE KEY".len())
                .any(|w| w == b"PRIVATE KEY"),
            "raft.redb of {} holds a private key",
            n.name
        );
        assert_eq!(mode(&n.data_dir), 0o700, "{}", n.data_dir.display());
        for entry in std::fs::read_dir(&n.data_dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

/// A QUIC client that trusts any server and has no certificate of its own.
mod quic {
    use super::*;
    use quinn::crypto::rustls::QuicClientConfig;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug, PartialEq)]
    pub enum Outcome {
        /// The node answered on the stream (it must not).
        Answered(Vec<u8>),
        /// The node closed the connection with this reason.
        Closed(String),
        /// No TLS connection at all.
        NoConnection(String),
    }

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
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// Connects with `alpn` presenting the certificate in the data directory `dir` and sends
    /// a status request; `NoConnection` when the node refused the certificate.
    pub async fn try_with_certificate(
        endpoint: &quinn::Endpoint,
        target: std::net::SocketAddr,
        dir: &Path,
        alpn: &[u8],
    ) -> Outcome {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let chain = vec![
            CertificateDer::from_pem_slice(&read("node.crt")).unwrap(),
            CertificateDer::from_pem_slice(&read("ca.crt")).unwrap(),
        ];
        let key = PrivateKeyDer::from_pem_slice(&read("node.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_client_auth_cert(chain, key)
            .unwrap();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
        let connection = match endpoint.connect_with(config, target, "skein-node") {
            Ok(connecting) => match connecting.await {
                Ok(c) => c,
                Err(e) => return Outcome::NoConnection(e.to_string()),
            },
            Err(e) => return Outcome::NoConnection(e.to_string()),
        };
        let attempt = async {
            let (mut send, mut recv) = connection.open_bi().await.ok()?;
            send.write_all(b"\"Status\"").await.ok()?;
            send.finish().ok()?;
            recv.read_to_end(1 << 20).await.ok()
        };
        let answered = tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .ok()
            .flatten();
        match (answered, connection.close_reason()) {
            // The TLS alert of a refused certificate.
            (_, Some(quinn::ConnectionError::ConnectionClosed(close))) => {
                Outcome::NoConnection(close.to_string())
            }
            (Some(bytes), _) => Outcome::Answered(bytes),
            (None, Some(other)) => Outcome::Closed(other.to_string()),
            (None, None) => Outcome::Closed("no answer".into()),
        }
    }

    /// Connects with the relay ALPN and asks for a pull of `live/cam` in the relay's wire format.
    pub async fn try_relay_stream(
        endpoint: &quinn::Endpoint,
        target: std::net::SocketAddr,
    ) -> Outcome {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![skein_raft::transport::ALPN_RELAY.to_vec()];
        let config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
        let connection = match endpoint.connect_with(config, target, "skein-node") {
            Ok(connecting) => match connecting.await {
                Ok(c) => c,
                Err(e) => return Outcome::NoConnection(e.to_string()),
            },
            Err(e) => return Outcome::NoConnection(e.to_string()),
        };
        // Hello{Pull, hold 0, "live/cam"}: kind 1, timestamp 0, body length, op 2, hold 0, key.
        let key = STREAM.as_bytes();
        let mut hello = vec![1, 0, 0, 0, 0];
        hello.extend_from_slice(&(5 + key.len() as u32).to_be_bytes());
        hello.extend_from_slice(&[2, 0, 0, 0, 0]);
        hello.extend_from_slice(key);
        let attempt = async {
            let (mut send, mut recv) = connection.open_bi().await.ok()?;
            send.write_all(&hello).await.ok()?;
            let mut first = vec![0u8; 9];
            recv.read_exact(&mut first).await.ok()?;
            Some(first)
        };
        let answered = tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .ok()
            .flatten();
        if let Some(bytes) = answered {
            return Outcome::Answered(bytes);
        }
        match tokio::time::timeout(Duration::from_secs(10), connection.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
                Outcome::Closed(String::from_utf8_lossy(&close.reason).into_owned())
            }
            Ok(other) => Outcome::NoConnection(other.to_string()),
            Err(_) => Outcome::NoConnection("connection neither answered nor closed".into()),
        }
    }
}
