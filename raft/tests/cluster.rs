//! In-process multi-node clusters on loopback.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{TTL, config, init_tracing, join, start, wait_state};
use skein_raft::{Cluster, ClusterError, RaftRole};

/// Polls `f` every 100 ms until it returns `Some`, for at most 60 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_and_five_joins_spread_voters_over_regions() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, info) = start(dir.path(), &["eu", "us", "ap", "eu", "sa", "af"]).await;
    assert_eq!(nodes[0].node_id(), 1);
    assert!(info.command("us").starts_with("skein join 127.0.3.1:"));
    let ids: BTreeSet<u64> = nodes.iter().map(Cluster::node_id).collect();
    assert_eq!(ids, (1..=6).collect());

    // Five voters, each in its own region (the second eu node stays a learner).
    let mut rx = nodes[0].state();
    let s = wait_state(&mut rx, "5 voters in distinct regions", |s| {
        let regions: BTreeSet<&str> = s
            .voters
            .iter()
            .filter_map(|v| s.nodes.get(v))
            .map(|n| n.region.as_str())
            .collect();
        s.voters.len() == 5 && !s.voters_changing && regions.len() == 5 && s.learners.len() == 1
    })
    .await;
    assert!(
        s.learners.contains(&4),
        "the second eu node is the learner: {s:?}"
    );

    // Every node converges on the same committed state; status is the same through any node.
    for n in &nodes {
        let mut rx = n.state();
        wait_state(&mut rx, "replicated membership", |t| {
            t.voters == s.voters && t.nodes.len() == 6
        })
        .await;
    }
    let status = nodes[5].status().await;
    assert_eq!(status.nodes.len(), 6);
    assert_eq!(
        status
            .nodes
            .iter()
            .filter(|n| n.raft == RaftRole::Voter)
            .count(),
        5
    );
    assert!(status.leader.is_some());
    let json = serde_json::to_value(&status).expect("json");
    assert!(json["nodes"][0]["public_addr"]["rtmp"].is_string());
    assert!(json["regions"][0]["name"].is_string());
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_then_new_leader_and_join_succeeds() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, info) = start(dir.path(), &["eu", "us", "ap"]).await;
    let mut rx = nodes[0].state();
    wait_state(&mut rx, "3 voters", |s| {
        s.voters.len() == 3 && !s.voters_changing
    })
    .await;
    // Seeds for later joins: every node's internal address.
    let seeds: Vec<_> = rx
        .borrow()
        .nodes
        .values()
        .map(|n| n.internal_addr)
        .collect();
    let token = nodes[0].create_token(TTL).await.expect("token");

    let leader = nodes[0].leader().expect("leader");
    let idx = nodes
        .iter()
        .position(|n| n.node_id() == leader)
        .expect("leader is a node");
    nodes.remove(idx).shutdown().await;

    let survivor = &nodes[0];
    let new_leader = eventually("new leader", || async {
        survivor
            .leader()
            .filter(|l| *l != leader && nodes.iter().all(|n| n.leader() == Some(*l)))
    })
    .await;
    assert_ne!(new_leader, leader);

    let joined = Cluster::join(
        config(dir.path(), 4, "sa"),
        &seeds,
        &token.to_string(),
        &info.ca_hash,
    )
    .await
    .expect("join after leader loss");
    assert_eq!(joined.node_id(), 4);
    let mut rx = joined.state();
    wait_state(&mut rx, "new node registered", |s| s.nodes.contains_key(&4)).await;
    joined.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rejoins_with_its_identity() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, info) = Cluster::init(config(dir.path(), 1, "eu"), TTL)
        .await
        .expect("init");
    let cfg2 = config(dir.path(), 2, "us");
    let second = join(cfg2.clone(), &info).await;
    assert_eq!(second.node_id(), 2);
    let mut rx = second.state();
    wait_state(&mut rx, "node 2 replicated", |s| s.nodes.contains_key(&2)).await;
    second.shutdown().await;

    // Restart from disk: same id; the replicated state is there before any network traffic.
    let again = Cluster::open(cfg2.clone()).await.expect("open");
    assert_eq!(again.node_id(), 2);
    assert!(again.state().borrow().nodes.contains_key(&2));
    again.shutdown().await;

    // Repeating the join command is idempotent.
    let again = join(cfg2, &info).await;
    assert_eq!(again.node_id(), 2);
    let mut rx = first.state();
    let s = wait_state(&mut rx, "node 2 up again", |s| s.nodes.len() == 2).await;
    assert_eq!(s.next_node_id, 3, "no id was allocated twice");
    again.shutdown().await;

    // init on a used directory is refused.
    let used = config(dir.path(), 1, "eu");
    first.shutdown().await;
    assert!(matches!(
        Cluster::init(used, TTL).await,
        Err(ClusterError::AlreadyInitialized(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refusals_are_clear() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, info) = Cluster::init(config(dir.path(), 1, "eu"), TTL)
        .await
        .expect("init");

    let wrong = format!("{}.{}", info.token.id, "0".repeat(16));
    let err = Cluster::join(
        config(dir.path(), 2, "us"),
        &info.seeds,
        &wrong,
        &info.ca_hash,
    )
    .await
    .err()
    .expect("wrong token must fail");
    assert_eq!(err.to_string(), "join refused: token unknown or expired");

    let short = first
        .create_token(Duration::from_millis(1))
        .await
        .expect("token");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = Cluster::join(
        config(dir.path(), 3, "us"),
        &info.seeds,
        &short.to_string(),
        &info.ca_hash,
    )
    .await
    .err()
    .expect("expired token must fail");
    assert_eq!(err.to_string(), "join refused: token unknown or expired");

    let other_ca = format!("sha256:{}", "ab".repeat(32));
    let err = Cluster::join(
        config(dir.path(), 4, "us"),
        &info.seeds,
        &info.token.to_string(),
        &other_ca,
    )
    .await
    .err()
    .expect("wrong CA must fail");
    assert_eq!(
        err.to_string(),
        format!(
            "seed's CA hash {} does not match the pinned {other_ca}",
            info.ca_hash
        )
    );

    // None of the refused nodes got registered.
    assert_eq!(first.state().borrow().nodes.len(), 1);
    first.shutdown().await;
}
