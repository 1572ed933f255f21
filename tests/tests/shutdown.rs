//! Graceful stop of a real `skein` edge with viewers: on SIGTERM its health endpoint says
//! `draining`, so `skein-dns` stops answering with it within one probe interval (far sooner
//! than the failure count would); its RTMP and HTTP-FLV viewers get a clean end of stream; and
//! the process exits 0 within 10 s.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use skein_node::client::{RtmpClient, RtmpUrl};
use skein_node::rtmp::ClientEvent;
use skein_tests::cluster::wait_for;
use skein_tests::dns::DnsServer;
use skein_tests::media::publish;
use skein_tests::node::NodeProcess;
use skein_tests::require;

/// Probes every 500 ms, and only after 8 failures (4 s) would a dead edge be marked down: an
/// edge gone from the answers within ~1 s was taken out by its `draining` flag.
const DNS_CONFIG: &str = r#"
[listen]
udp = ["127.0.0.1:@PORT@"]
tcp = ["127.0.0.1:@PORT@"]
metrics = "127.0.0.1:@METRICS@"
udp_workers = 1

[[zones]]
origin = "example.com"
services = ["live"]
soa = { rname = "hostmaster.example.com", serial = 1, minimum = 30 }
ns = [{ name = "ns1.example.com", addrs = ["127.0.0.1"] }]

[health]
interval_ms = 500
timeout_ms = 400
fall = 8
rise = 1

[answer]
k = 2

[[regions]]
name = "a"
lat = 50.0
lon = 8.0
edges = [
  { name = "stopping", addrs = ["@STOPPING_IP@"], rtmp_port = @STOPPING_RTMP@, http_port = @STOPPING_HTTP@ },
  { name = "staying", addrs = ["@STAYING_IP@"], rtmp_port = @STAYING_RTMP@, http_port = @STAYING_HTTP@ },
]
"#;

/// What an RTMP viewer saw: the status codes it was sent, in order, and whether media came.
fn rtmp_viewer(url: String, playing: mpsc::Sender<()>) -> (Vec<String>, bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let url = RtmpUrl::parse(&url).unwrap();
        let mut client = RtmpClient::connect(&url).await.expect("connect viewer");
        client
            .play(&url.key, Duration::from_secs(10))
            .await
            .expect("play");
        let mut codes = Vec::new();
        let mut got_media = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, client.next_event()).await {
            match event {
                ClientEvent::Video { .. } if !got_media => {
                    got_media = true;
                    let _ = playing.send(());
                }
                ClientEvent::Status { code, .. } => codes.push(code),
                ClientEvent::Disconnected => break,
                _ => {}
            }
        }
        (codes, got_media)
    })
}

/// Reads a whole HTTP-FLV response; returns (status line, whether the chunked body ended with
/// its terminating chunk, body bytes).
fn flv_viewer(node: &NodeProcess, playing: mpsc::Sender<()>) -> (String, bool, usize) {
    let mut socket = TcpStream::connect(node.http).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        socket,
        "GET /live/cam.flv HTTP/1.1\r\nHost: {}\r\n\r\n",
        node.http
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let mut told = false;
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("HTTP-FLV viewer: the connection failed instead of ending: {e}"),
        }
        if !told && raw.len() > 16 * 1024 {
            told = true;
            let _ = playing.send(());
        }
    }
    let status = String::from_utf8_lossy(&raw[..raw.len().min(64)])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (status, raw.ends_with(b"0\r\n\r\n"), raw.len())
}

#[test]
fn sigterm_drains_an_edge_then_ends_its_viewers_cleanly() {
    require("ffmpeg", "ffmpeg");
    require("dig", "bind9-dnsutils");
    let stopping = NodeProcess::start("127.0.1.61", "drain-stopping", "");
    let staying = NodeProcess::start("127.0.1.62", "drain-staying", "");
    let config = DNS_CONFIG
        .replace("@STOPPING_IP@", &stopping.http.ip().to_string())
        .replace("@STOPPING_RTMP@", &stopping.rtmp.port().to_string())
        .replace("@STOPPING_HTTP@", &stopping.http.port().to_string())
        .replace("@STAYING_IP@", &staying.http.ip().to_string())
        .replace("@STAYING_RTMP@", &staying.rtmp.port().to_string())
        .replace("@STAYING_HTTP@", &staying.http.port().to_string());
    let dns = DnsServer::start("drain", &config, &[]);
    let answers = || dns.dig(&["live.example.com", "A"]).addrs();
    let stopping_ip: IpAddr = stopping.http.ip();
    wait_for("both edges in the answers", Duration::from_secs(15), || {
        let a = answers();
        (a.len() == 2).then_some(())
    });

    let _publisher = publish(&stopping.rtmp_url("cam"), 60);
    stopping.wait_json("/api/v1/streams", Duration::from_secs(20), |v| {
        v["streams"].as_array().is_some_and(|s| !s.is_empty())
    });
    let (playing_tx, playing) = mpsc::channel();
    let rtmp_url = stopping.rtmp_url("cam");
    let tx = playing_tx.clone();
    let rtmp = std::thread::spawn(move || rtmp_viewer(rtmp_url, tx));
    let flv = std::thread::scope(|scope| {
        let flv = scope.spawn(|| flv_viewer(&stopping, playing_tx));
        for viewer in ["rtmp", "http-flv"] {
            playing
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("a viewer ({viewer} or the other) never played"));
        }

        stopping.process.signal(libc::SIGTERM);
        let signalled = Instant::now();
        let gone = wait_for(
            "the stopping edge out of the answers",
            Duration::from_secs(10),
            || (!answers().contains(&stopping_ip)).then(|| signalled.elapsed()),
        );
        assert!(
            gone < Duration::from_millis(3_000),
            "GeoDNS kept answering with a draining edge for {gone:?} (a probe interval is 500 ms)"
        );
        assert_eq!(
            answers(),
            vec![staying.http.ip()],
            "the other edge still answers"
        );
        flv.join().unwrap()
    });
    let mut stopping = stopping;
    let status = stopping
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("edge still running 10 s after SIGTERM");
    assert!(status.success(), "edge exited with {status}");

    let (codes, got_media) = rtmp.join().unwrap();
    assert!(got_media, "the RTMP viewer played");
    assert!(
        codes.iter().any(|c| c == "NetStream.Play.Stop"),
        "the RTMP viewer was told the stream stopped; got {codes:?}"
    );
    let (status_line, terminated, bytes) = flv;
    assert!(status_line.contains("200"), "{status_line}");
    assert!(
        terminated,
        "the HTTP-FLV body ended with its last chunk after {bytes} bytes (a clean end, not a cut)"
    );
}
