//! Stream keys in a cluster, in one process: two members on loopback run as `RunningNode`s.
//! A token minted through one member's admin API publishes on the other (the keys are in the
//! replicated state); a rotation through either member keeps old tokens valid until the old
//! key is retired, after which they are refused everywhere; the last key cannot be retired.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use skein_node::RunningNode;
use skein_node::client::{RtmpClient, RtmpUrl};
use skein_node::config::Config;
use skein_node::server::membership::Membership;
use skein_raft::Roles;
use tokio::time::{Instant, sleep};

const ADMIN: &str = "Authorization: Bearer secret\r\n";

fn config(ip: &str, name: &str, dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.node.name = name.into();
    config.node.region = "a".into();
    config.rtmp.listen = format!("{ip}:0").parse().unwrap();
    config.http.listen = format!("{ip}:0").parse().unwrap();
    config.http.admin_token = "secret".into();
    config.cluster.data_dir = dir.join(name);
    config.cluster.internal = format!("{ip}:{}", skein_tests::free_port(ip))
        .parse()
        .unwrap();
    config.cluster.roles = Roles::default();
    config.cluster.origin_target = 1;
    // [auth] stays at its defaults: publishing needs a token.
    config
}

/// One admin call: (status, JSON body).
async fn call(node: &RunningNode, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (addr, method, path, body): (SocketAddr, String, String, String) =
        (node.http_addr, method.into(), path.into(), body.into());
    let headers = if body.is_empty() {
        ADMIN.to_owned()
    } else {
        format!("{ADMIN}Content-Type: application/json\r\n")
    };
    let (status, text) = tokio::task::spawn_blocking(move || {
        skein_tests::http_exchange(addr, &method, &path, &headers, &body)
    })
    .await
    .unwrap()
    .expect("the node answers");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn mint(node: &RunningNode, stream: &str) -> (String, String) {
    let body = format!(r#"{{"action":"publish","stream":"{stream}","ttl_secs":600}}"#);
    let (status, v) = call(node, "POST", "/api/v1/stream-tokens", &body).await;
    assert_eq!(status, 200, "{v}");
    (
        v["token"].as_str().unwrap().to_owned(),
        v["key_id"].as_str().unwrap().to_owned(),
    )
}

/// Publishes `live/KEY?token=TOKEN` on `node`: `Ok` once the node accepts it.
async fn publish(node: &RunningNode, key: &str, token: &str) -> anyhow::Result<RtmpClient> {
    let url = RtmpUrl::parse(&format!(
        "rtmp://{}/live/{key}?token={token}",
        node.rtmp_addr
    ))?;
    let mut client = RtmpClient::connect(&url).await?;
    client.publish(&url.key, Duration::from_secs(10)).await?;
    Ok(client)
}

/// Polls until both members hold exactly the stream keys `ids`.
async fn wait_keys(nodes: [&RunningNode; 2], ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = |n: &RunningNode| {
            let mut held: Vec<String> = n
                .node
                .stream_keys()
                .keys()
                .iter()
                .map(|k| k.id.clone())
                .collect();
            held.sort();
            held
        };
        let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        want.sort();
        if nodes.iter().all(|n| held(n) == want) {
            return;
        }
        assert!(Instant::now() < deadline, "keys never became {want:?}");
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_minted_on_one_member_work_on_another_and_keys_rotate_cluster_wide() {
    let dir = skein_tests::node::temp_dir("cluster-auth");
    let (first, join) = RunningNode::start_member(
        config("127.0.1.81", "auth-1", &dir),
        Membership::Init {
            token_ttl: Duration::from_secs(600),
        },
    )
    .await
    .unwrap();
    let join = join.unwrap();
    let second = RunningNode::start_member(
        config("127.0.1.82", "auth-2", &dir),
        Membership::Join {
            seeds: join.seeds.clone(),
            token: join.token.to_string(),
            ca_hash: join.ca_hash.clone(),
        },
    )
    .await
    .unwrap()
    .0;

    // Without a key nothing publishes; the first mint creates the cluster's first key.
    let refused = publish(&second, "a", "").await.err().unwrap();
    assert!(
        refused
            .to_string()
            .contains("NetStream.Publish.Unauthorized")
            && refused.to_string().contains("a token is required"),
        "{refused}"
    );
    let (token_a, first_key) = mint(&first, "live/a").await;
    wait_keys([&first, &second], &[&first_key]).await;
    let _a = publish(&second, "a", &token_a).await.unwrap();

    // Rotation through the other member: the new key signs, the old one still verifies.
    let (token_b, _) = mint(&first, "live/b").await;
    let (token_b2, _) = mint(&first, "live/b2").await;
    let (status, added) = call(&second, "POST", "/api/v1/stream-keys", "").await;
    assert_eq!(status, 200, "{added}");
    let second_key = added["id"].as_str().unwrap().to_owned();
    wait_keys([&first, &second], &[&first_key, &second_key]).await;
    let (token_c, signer) = mint(&first, "live/c").await;
    assert_eq!(signer, second_key, "the newest key signs");
    let _b = publish(&second, "b", &token_b).await.unwrap();
    let (status, listed) = call(&first, "GET", "/api/v1/stream-keys", "").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["keys"][0]["id"], second_key.as_str());
    assert_eq!(listed["keys"][0]["signing"], true);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("secret").is_none()),
        "no secrets listed: {listed}"
    );

    // Retired: its tokens are refused on every member; the new key's still work.
    let (status, v) = call(
        &first,
        "DELETE",
        &format!("/api/v1/stream-keys/{first_key}"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    wait_keys([&first, &second], &[&second_key]).await;
    for node in [&first, &second] {
        let refused = publish(node, "b2", &token_b2).await.err().unwrap();
        assert!(
            refused.to_string().contains("unknown or retired key"),
            "{refused}"
        );
    }
    let _c = publish(&first, "c", &token_c).await.unwrap();
    let (status, v) = call(
        &second,
        "DELETE",
        &format!("/api/v1/stream-keys/{second_key}"),
        "",
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert!(v.to_string().contains("last stream key"), "{v}");

    // The key API is for admins only.
    let (addr, path) = (first.http_addr, "/api/v1/stream-keys");
    let (status, _) = tokio::task::spawn_blocking(move || {
        skein_tests::http_request(addr, "GET", path, "").unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status, 401);

    second.stop().await;
    first.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
