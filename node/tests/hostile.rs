//! Hostile input against a spawned `skein` process: after each attack the node still serves a
//! real client (ffmpeg publishing, ffprobe playing over HTTP-FLV) and its resident memory
//! (VmRSS of the process) stays under a generous bound.
//!
//! - an AMF0 bomb: command messages of millions of nulls, a strict array announcing four
//!   billion elements, nesting far past the limit;
//! - slowloris on HTTP: connections sending their header a byte at a time, idle keep-alive
//!   connections, and one address opening more connections than its share — while an
//!   HTTP-FLV viewer plays on for longer than the header timeout.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use skein_node::rtmp::amf0::{self, Value};
use skein_node::rtmp::chunk;
use skein_tests::media::{continuity, packets, publish, record, streams};
use skein_tests::node::{NodeProcess, http_get};
use skein_tests::require;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use common::handshaken;
use tokio::time::{Instant, timeout};

/// Far above what a node with a few connections uses, far below what the attacks would
/// need without their limits.
const RSS_BOUND_KIB: u64 = 300 * 1024;

fn rss_kib(node: &NodeProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.process.0.id()))
        .expect("the node process is alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// ffmpeg publishes `key` and ffprobe plays it back over HTTP-FLV.
fn serves_a_real_client(node: &NodeProcess, key: &str) {
    let _publisher = publish(&node.rtmp_url(key), 20);
    let probed = streams(&node.flv_url(key));
    assert!(
        probed.iter().any(|(kind, _)| kind == "video"),
        "the node no longer serves a real client: {probed:?}"
    );
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// True when the server closed the socket within `within` (whatever it sent before).
async fn closed_by_server(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// One AMF0 command message `connect` whose arguments are `body` (raw AMF0 bytes), sent after
/// raising the chunk size so the message goes out in few chunks.
fn bomb(body: &[u8]) -> BytesMut {
    let mut payload = BytesMut::new();
    amf0::encode(&Value::String("connect".into()), &mut payload);
    amf0::encode(&Value::Number(1.0), &mut payload);
    payload.extend_from_slice(body);
    let mut out = BytesMut::new();
    chunk::encode_message(&mut out, 2, 0, 1, 0, &65_536u32.to_be_bytes(), 128);
    chunk::encode_message(&mut out, 3, 0, 20, 0, &payload, 65_536);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn amf0_bombs_close_their_connection_and_cost_no_memory() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let node = NodeProcess::start("127.0.0.1", "amf0-bomb", "[hub]\nplay_wait_secs = 20\n");
    let nulls = vec![0x05u8; 8 * 1024 * 1024 - 64]; // ~8 million nulls, under max_message_size
    let mut huge_array = vec![0x0a, 0xff, 0xff, 0xff, 0xff]; // strict array of 2^32-1 values
    huge_array.extend_from_slice(&[0x05; 16]);
    let deep: Vec<u8> = [0x0a, 0, 0, 0, 1].repeat(100_000); // arrays nested 100 000 deep
    let mut attacks = Vec::new();
    for body in [nulls, huge_array, deep] {
        // Several at once, so a decoder that allocated per announced element would show.
        for _ in 0..4 {
            let message = bomb(&body);
            let addr = node.rtmp;
            attacks.push(tokio::spawn(async move {
                let mut socket = handshaken(addr).await;
                let _ = socket.write_all(&message).await; // the node may close mid-way
                closed_by_server(&mut socket, Duration::from_secs(10)).await
            }));
        }
    }
    for attack in attacks {
        assert!(attack.await.unwrap(), "a bomb's connection was not closed");
    }
    let rss = rss_kib(&node);
    assert!(
        rss < RSS_BOUND_KIB,
        "node RSS {rss} KiB after the AMF0 bombs"
    );
    tokio::task::spawn_blocking(move || serves_a_real_client(&node, "after-bomb"))
        .await
        .unwrap();
}

/// Writes `request` a byte every `pace` until the server closes the connection; how long
/// that took, or `None` if it was still open after `limit`.
async fn drip(mut socket: TcpStream, pace: Duration, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let request = b"GET /api/v1/health HTTP/1.1\r\nHost: node\r\nX-Slow: ".iter();
    let mut bytes = request.chain(std::iter::repeat(&b'a'));
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // an error answer (408) may come before the close
            },
            _ = tokio::time::sleep(pace) => {
                let byte = [*bytes.next().unwrap()];
                if socket.write_all(&byte).await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_connections_are_closed_and_do_not_keep_others_out() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let node = NodeProcess::start(
        "127.0.0.1",
        "slowloris",
        "header_read_timeout_ms = 2000\n[limits]\nmax_connections_per_ip = 50\n[hub]\nplay_wait_secs = 20\n",
    );
    let http = node.http;

    // 40 slow clients from 127.0.0.2, each reconnecting when it is closed, for 8 seconds.
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(tokio::spawn(async move {
            let phase = Instant::now();
            let mut lifetimes = Vec::new();
            while phase.elapsed() < Duration::from_secs(8) {
                let socket = connect_from("127.0.0.2", http).await;
                let lived = drip(socket, Duration::from_millis(100), Duration::from_secs(10)).await;
                lifetimes.push(lived);
            }
            lifetimes
        }));
    }
    // Meanwhile a real client is served, and health answers.
    let probe_node_http = node.http;
    let real = tokio::task::spawn_blocking(move || {
        assert_eq!(
            http_get(probe_node_http, "/api/v1/health").map(|r| r.0),
            Some(200)
        );
        serves_a_real_client(&node, "during-slowloris");
        node
    });
    let node = real.await.unwrap();
    for client in slow {
        for lived in client.await.unwrap() {
            let lived = lived.expect("a slow header kept its connection open for 10 s");
            assert!(
                lived < Duration::from_secs(6),
                "a slow header held its connection {lived:?} (header timeout 2 s)"
            );
        }
    }

    // An idle keep-alive connection is closed too.
    let mut idle = connect_from("127.0.0.4", http).await;
    idle.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: node\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(6)).await,
        "an idle keep-alive connection stays open"
    );

    // One address gets its share of connections, not more; another address still gets in.
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(connect_from("127.0.0.3", http).await);
    }
    let mut over = connect_from("127.0.0.3", http).await;
    assert!(
        closed_by_server(&mut over, Duration::from_millis(1500)).await,
        "the 51st connection of one address is closed at once"
    );
    let mut still_open = 0;
    for socket in &mut held {
        let mut buf = [0u8; 1];
        if timeout(Duration::from_millis(5), socket.read(&mut buf))
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    assert!(
        still_open > 0,
        "the admitted connections were open meanwhile"
    );
    assert_eq!(http_get(http, "/api/v1/health").map(|r| r.0), Some(200));
    // The header timeout is for request headers only: a viewer's body streams on.
    let file = skein_tests::node::temp_dir("slowloris-flv").join("play.flv");
    let node = tokio::task::spawn_blocking(move || {
        let _publisher = publish(&node.rtmp_url("long"), 30);
        let out = record(&node.flv_url("long"), 6, &file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let played = continuity(&packets(&file));
        assert!(
            played.span_ms > 4_500.0,
            "HTTP-FLV cut after {} ms of media (header timeout 2 s)",
            played.span_ms
        );
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
        node
    })
    .await
    .unwrap();
    let rss = rss_kib(&node);
    assert!(rss < RSS_BOUND_KIB, "node RSS {rss} KiB after slowloris");
}
