//! Leader policies in a live cluster: origin re-election and forced recovery.

mod common;

use common::{TTL, config, init_tracing, join, start, wait_state};
use skein_raft::{Cluster, NodeHealth};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_is_replaced_when_it_stops_heartbeating() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, _) = start(dir.path(), &["eu", "us", "ap"]).await;
    let mut rx = nodes[0].state();
    let s = wait_state(&mut rx, "3 voters and one live origin", |s| {
        s.voters.len() == 3 && !s.voters_changing && s.live_origins().len() == 1
    })
    .await;
    let origin = s.live_origins()[0];

    // The origin dies (whether or not it was the leader).
    let idx = nodes
        .iter()
        .position(|n| n.node_id() == origin)
        .expect("origin is a node");
    nodes.remove(idx).shutdown().await;

    let mut rx = nodes[0].state();
    let s = wait_state(&mut rx, "another origin promoted", |s| {
        let live = s.live_origins();
        live.len() == 1 && live[0] != origin
    })
    .await;
    assert_eq!(s.nodes[&origin].health, NodeHealth::Down);
    // Losing the origin did not cost quorum: writes still work.
    nodes[0]
        .set_origin_target(1)
        .await
        .expect("write after origin loss");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_recovers_a_lost_majority() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg1 = config(dir.path(), 1, "eu");
    let (first, info) = Cluster::init(cfg1.clone(), TTL).await.expect("init");
    let mut others = Vec::new();
    for (host, region) in [(2, "us"), (3, "ap")] {
        others.push(join(config(dir.path(), host, region), &info).await);
    }
    let mut rx = first.state();
    wait_state(&mut rx, "3 voters", |s| {
        s.voters.len() == 3 && !s.voters_changing
    })
    .await;
    for n in others {
        n.shutdown().await;
    }
    first.shutdown().await;

    // Only node 1 comes back: without recovery it can never win an election.
    assert!(
        Cluster::recover_force_new_cluster(&cfg1, Some("not a key")).is_err(),
        "a key that is not the CA's is refused"
    );
    let holds = Cluster::recover_force_new_cluster(&cfg1, None).expect("recover");
    assert!(holds, "node 1 made the CA and still holds its key");
    let node = Cluster::open(cfg1).await.expect("open");
    let token = node.create_token(TTL).await.expect("writes work again");
    let mut rx = node.state();
    let s = wait_state(&mut rx, "token and registry kept", |s| {
        s.tokens.contains_key(&token.id)
    })
    .await;
    assert_eq!(s.nodes.len(), 3, "registry survives recovery");
    assert_eq!(node.leader(), Some(1));
    node.shutdown().await;
}
