//! Bad and hostile input against a running node: every case closes only the offending
//! connection (or refuses it) with a reason, and the node keeps serving.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use skein_node::RunningNode;
use skein_node::auth::Policy;
use skein_node::client::{RtmpClient, RtmpUrl};
use skein_node::config::Config;
use skein_node::rtmp::amf0::{self, Value};
use skein_node::rtmp::chunk;
use skein_node::rtmp::client::ClientEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use common::handshaken;

const WAIT: Duration = Duration::from_secs(10);

async fn start(tweak: impl FnOnce(&mut Config)) -> RunningNode {
    let mut config = Config::default();
    config.rtmp.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.rtmp.handshake_timeout_secs = 1;
    // These tests are about bad input, not authorisation: anyone may publish.
    config.auth.publish = Policy::Open;
    tweak(&mut config);
    RunningNode::start(config).await.unwrap()
}

fn url(node: &RunningNode, key: &str) -> RtmpUrl {
    RtmpUrl::parse(&format!("rtmp://{}/live/{key}", node.rtmp_addr)).unwrap()
}

/// A publisher sending a keyframe-led synthetic stream in the background.
async fn publisher(node: &RunningNode, key: &str) -> RtmpClient {
    let mut client = RtmpClient::connect(&url(node, key)).await.unwrap();
    client.publish(key, WAIT).await.unwrap();
    client
        .session()
        .send_video(0, &[0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f]);
    client
        .session()
        .send_video(0, &[0x17, 0x01, 0, 0, 0, 1, 2, 3]);
    client.flush().await.unwrap();
    client
}

/// True when the server closed the socket within `within`.
async fn closed_by_server(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn command(name: &str, tx: f64, args: &[Value]) -> Bytes {
    let mut payload = BytesMut::new();
    amf0::encode(&Value::String(name.into()), &mut payload);
    amf0::encode(&Value::Number(tx), &mut payload);
    amf0::encode(&Value::Null, &mut payload);
    amf0::encode_all(args, &mut payload);
    let mut out = BytesMut::new();
    chunk::encode_message(&mut out, 3, 0, 20, 0, &payload, 128);
    out.freeze()
}

async fn still_serves(node: &RunningNode, key: &str) {
    let mut p = publisher(node, key).await;
    let mut player = RtmpClient::connect(&url(node, key)).await.unwrap();
    player.play(key, WAIT).await.unwrap();
    let got_video = tokio::time::timeout(WAIT, async {
        loop {
            if let ClientEvent::Video { .. } = player.next_event().await.unwrap() {
                return;
            }
        }
    })
    .await;
    assert!(got_video.is_ok(), "the node no longer serves");
    p.session().close();
    let _ = p.flush().await;
}

#[tokio::test]
async fn truncated_handshake_is_closed_after_the_timeout() {
    let node = start(|_| {}).await;
    let mut socket = TcpStream::connect(node.rtmp_addr).await.unwrap();
    socket.write_all(&[3u8; 700]).await.unwrap(); // C0 + part of C1
    assert!(closed_by_server(&mut socket, WAIT).await);
    still_serves(&node, "after-truncated").await;
}

#[tokio::test]
async fn wrong_handshake_version_is_refused() {
    let node = start(|_| {}).await;
    let mut socket = TcpStream::connect(node.rtmp_addr).await.unwrap();
    socket.write_all(&[0x47; 1537]).await.unwrap(); // "GET ..." is not RTMP
    assert!(closed_by_server(&mut socket, WAIT).await);
    still_serves(&node, "after-version").await;
}

#[tokio::test]
async fn garbage_chunks_close_only_that_connection() {
    let node = start(|_| {}).await;
    let mut bystander = publisher(&node, "bystander").await;
    let mut socket = handshaken(node.rtmp_addr).await;
    // fmt 3 on a chunk stream never seen, then noise.
    socket
        .write_all(&[0xc5, 0xff, 0x00, 0x13, 0x37])
        .await
        .unwrap();
    socket.write_all(&[0xde; 4096]).await.unwrap();
    assert!(closed_by_server(&mut socket, WAIT).await);
    bystander
        .session()
        .send_video(40, &[0x27, 0x01, 0, 0, 0, 9]);
    bystander.flush().await.unwrap();
    still_serves(&node, "after-garbage").await;
}

#[tokio::test]
async fn absurd_message_length_is_refused_before_buffering() {
    let node = start(|c| c.rtmp.max_message_size = 1 << 20).await;
    let mut socket = handshaken(node.rtmp_addr).await;
    // fmt 0 on csid 3: timestamp 0, length 0xFFFFFF (16 MiB), type 20, stream 0.
    let header = [0x03, 0, 0, 0, 0xff, 0xff, 0xff, 20, 0, 0, 0, 0];
    socket.write_all(&header).await.unwrap();
    assert!(closed_by_server(&mut socket, WAIT).await);
    still_serves(&node, "after-absurd").await;
}

#[tokio::test]
async fn unknown_command_gets_an_error_reply_and_the_connection_stays() {
    let node = start(|_| {}).await;
    let mut socket = handshaken(node.rtmp_addr).await;
    let app = vec![("app".to_owned(), Value::String("live".into()))];
    let mut connect = BytesMut::new();
    amf0::encode_all(
        &[
            Value::String("connect".into()),
            Value::Number(1.0),
            Value::Object(app),
        ],
        &mut connect,
    );
    let mut out = BytesMut::new();
    chunk::encode_message(&mut out, 3, 0, 20, 0, &connect, 128);
    socket.write_all(&out).await.unwrap();
    socket
        .write_all(&command("noSuchCommand", 7.0, &[]))
        .await
        .unwrap();
    // Read the replies until the _error for transaction 7 shows up.
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed the connection on an unknown command");
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(6).any(|w| w == b"_error") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no _error reply to an unknown command");
    assert!(!closed_by_server(&mut socket, Duration::from_millis(300)).await);
}

#[tokio::test]
async fn publish_to_a_taken_key_and_play_of_a_missing_key_are_refused() {
    let node = start(|_| {}).await;
    let _first = publisher(&node, "taken").await;
    let mut second = RtmpClient::connect(&url(&node, "taken")).await.unwrap();
    let err = second.publish("taken", WAIT).await.unwrap_err().to_string();
    assert!(err.contains("NetStream.Publish.BadName"), "{err}");
    assert!(err.contains("already being published"), "{err}");

    let mut player = RtmpClient::connect(&url(&node, "missing")).await.unwrap();
    let err = player.play("missing", WAIT).await.unwrap_err().to_string();
    assert!(err.contains("NetStream.Play.StreamNotFound"), "{err}");
}

#[tokio::test]
async fn a_player_that_never_reads_is_dropped_while_the_publisher_floods() {
    let node = start(|c| {
        c.hub.write_timeout_secs = 2;
        c.hub.player_queue = 64;
    })
    .await;
    let mut p = publisher(&node, "flood").await;
    // A player that plays, then never reads again.
    let mut stuck = RtmpClient::connect(&url(&node, "flood")).await.unwrap();
    stuck.play("flood", WAIT).await.unwrap();
    let frame = vec![0x27u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0usize;
    loop {
        for i in 0..16 {
            p.session().send_video((sent / 1000 + i) as u32, &frame);
        }
        p.flush().await.unwrap();
        sent += 16 * frame.len();
        let players = node
            .node
            .clients
            .list()
            .iter()
            .filter(|c| matches!(c.role, skein_node::server::clients::Role::Player(_)))
            .count();
        if players == 0 && sent > 8 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "stuck player never dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Memory per player is measured by the media benchmark (docs/benchmarks.md), not here.
    let stream = node.node.hub.get("live/flood").unwrap().snapshot();
    assert_eq!(stream.viewers, 0);
    let metrics = node.node.metrics.encode();
    assert!(
        metrics.contains("skein_connection_errors_total{reason=\"write_timeout\"} 1")
            || metrics.contains("skein_players_dropped_total{reason=\"too_slow\"} 1"),
        "{metrics}"
    );
    drop(stuck);
}

#[tokio::test]
async fn a_thousand_idle_connections_hit_the_limits_and_the_node_still_serves() {
    let node = start(|c| {
        c.limits.max_connections = 600;
        c.limits.max_connections_per_ip = 10_000;
        c.rtmp.handshake_timeout_secs = 3;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.9:0".parse().unwrap()).unwrap();
        idle.push(socket.connect(node.rtmp_addr).await.unwrap());
    }
    // The 400 beyond the limit are refused at once.
    let mut refused = 0;
    for socket in idle.iter_mut().skip(600) {
        refused += usize::from(closed_by_server(socket, Duration::from_secs(2)).await);
    }
    assert_eq!(refused, 400);
    // The admitted ones never handshake, so the handshake timeout frees their slots.
    for socket in idle.iter_mut().take(600) {
        assert!(closed_by_server(socket, WAIT).await);
    }
    still_serves(&node, "after-idle").await;
    let metrics = node.node.metrics.encode();
    assert!(
        metrics.contains("skein_connections_refused_total{reason=\"max_connections\"} 400"),
        "{metrics}"
    );
}

#[tokio::test]
async fn per_address_limit_leaves_other_addresses_served() {
    let node = start(|c| c.limits.max_connections_per_ip = 50).await;
    let mut held = Vec::new();
    for _ in 0..60 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.7:0".parse().unwrap()).unwrap();
        held.push(socket.connect(node.rtmp_addr).await.unwrap());
    }
    let mut refused = 0;
    for socket in held.iter_mut().skip(50) {
        refused += usize::from(closed_by_server(socket, Duration::from_secs(2)).await);
    }
    assert_eq!(refused, 10);
    still_serves(&node, "other-address").await; // from 127.0.0.1
}
