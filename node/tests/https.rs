//! The HTTP surface's own settings on a running node: HTTPS from PEM files (API and HTTP-FLV,
//! with ffmpeg and curl), the pair re-read when it changes or on SIGHUP and kept when a new one
//! is bad, and
//! the admin calls on a listener of their own, the admin token from a file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skein_node::RunningNode;
use skein_node::auth::Policy;
use skein_node::config::Config;
use skein_tests::media::{publish, streams};
use skein_tests::node::{NodeProcess, temp_dir};
use skein_tests::{http_request, require};

fn config() -> Config {
    let mut config = Config::default();
    config.rtmp.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.http.admin_token = "secret".into();
    // HTTPS is under test, not authorisation: anyone may publish.
    config.auth.publish = Policy::Open;
    config
}

/// A self-signed certificate for 127.0.0.1 with its key, as PEM files in `dir`.
fn write_pair(dir: &Path, cert: &str, key: &str) -> String {
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.join(cert), pair.cert.pem()).unwrap();
    std::fs::write(dir.join(key), pair.signing_key.serialize_pem()).unwrap();
    pair.cert.pem()
}

/// `curl --cacert ca https://addr/path`: the status code, or `None` when TLS or the
/// connection failed (e.g. the server shows another certificate).
fn curl(ca: &Path, url: &str) -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg(url)
        .output()
        .expect("run curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).parse().ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_the_api_and_http_flv_and_follows_a_renewed_certificate() {
    require("curl", "curl");
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let dir = temp_dir("https");
    let old_ca = dir.join("old-ca.pem");
    std::fs::write(&old_ca, write_pair(&dir, "cert.pem", "key.pem")).unwrap();
    let mut config = config();
    config.http.tls_cert = Some(dir.join("cert.pem"));
    config.http.tls_key = Some(dir.join("key.pem"));
    config.hub.play_wait_secs = 20; // the play may come before ffmpeg publishes
    let node = RunningNode::start(config).await.unwrap();
    let base = format!("https://{}", node.http_addr);
    let health = format!("{base}/api/v1/health");

    let answer = tokio::task::spawn_blocking({
        let (old_ca, health) = (old_ca.clone(), health.clone());
        move || curl(&old_ca, &health)
    });
    assert_eq!(answer.await.unwrap(), Some(200), "the API over HTTPS");
    // Plain HTTP gets the health probe (GeoDNS reads it so) and nothing else.
    let addr = node.http_addr;
    let (health_status, streams_status) = tokio::task::spawn_blocking(move || {
        let status = |path| http_request(addr, "GET", path, "").map(|(s, _)| s);
        (status("/api/v1/health"), status("/api/v1/streams"))
    })
    .await
    .unwrap();
    assert_eq!(health_status, Some(200), "plain health on the HTTPS port");
    assert_eq!(streams_status, Some(403), "plain HTTP gets nothing else");

    let _publisher = publish(&format!("rtmp://{}/live/tls", node.rtmp_addr), 30);
    let flv = format!("{base}/live/tls.flv");
    let probed = tokio::task::spawn_blocking(move || streams(&flv))
        .await
        .unwrap();
    assert!(
        probed
            .iter()
            .any(|(kind, codec)| kind == "video" && codec == "h264"),
        "HTTP-FLV over HTTPS: {probed:?}"
    );

    // A renewed pair is picked up without a restart...
    let new_ca = dir.join("new-ca.pem");
    std::fs::write(&new_ca, write_pair(&dir, "cert.pem", "key.pem")).unwrap();
    let renewed = tokio::task::spawn_blocking({
        let (new_ca, old_ca, health) = (new_ca.clone(), old_ca.clone(), health.clone());
        move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if curl(&new_ca, &health) == Some(200) {
                    return curl(&old_ca, &health).is_none();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            false
        }
    });
    assert!(
        renewed.await.unwrap(),
        "the new certificate replaces the old one"
    );

    // ...and a broken one is not: the node keeps the pair it has.
    std::fs::write(
        dir.join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .unwrap();
    std::fs::write(dir.join("key.pem"), "garbage").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kept = tokio::task::spawn_blocking(move || curl(&new_ca, &health));
    assert_eq!(
        kept.await.unwrap(),
        Some(200),
        "the last good pair stays in use"
    );

    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_tls_pair_stops_the_start_with_the_file_named() {
    let dir = temp_dir("https-bad");
    std::fs::write(dir.join("cert.pem"), "nothing").unwrap();
    std::fs::write(dir.join("key.pem"), "nothing").unwrap();
    let mut config = config();
    config.http.tls_cert = Some(dir.join("cert.pem"));
    config.http.tls_key = Some(dir.join("key.pem"));
    let err = RunningNode::start(config).await.err().expect("refused");
    assert!(format!("{err:#}").contains("http.tls_cert"), "{err:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn admin_calls_are_served_only_on_the_admin_listener() {
    let mut config = config();
    config.http.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let node = RunningNode::start(config).await.unwrap();
    let admin = node.admin_addr.expect("admin listener bound");
    let public = node.http_addr;
    let token = "Authorization: Bearer secret\r\n";
    let call = |addr, method: &'static str, path: &'static str, headers: &'static str| {
        tokio::task::spawn_blocking(move || http_request(addr, method, path, headers).unwrap())
    };

    let (status, _) = call(public, "DELETE", "/api/v1/clients/7", token)
        .await
        .unwrap();
    assert_eq!(status, 404, "no admin route on the public listener");
    let (status, _) = call(public, "POST", "/api/v1/cluster/leave", token)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, body) = call(admin, "DELETE", "/api/v1/clients/7", "")
        .await
        .unwrap();
    assert_eq!(
        status, 401,
        "the admin listener still wants the token: {body}"
    );
    let (status, body) = call(admin, "DELETE", "/api/v1/clients/7", token)
        .await
        .unwrap();
    assert_eq!(
        (status, body.contains("no such client")),
        (404, true),
        "{body}"
    );
    // Health stays on the public listener (GeoDNS), and the read-only API is on both.
    let (status, _) = call(public, "GET", "/api/v1/health", "").await.unwrap();
    assert_eq!(status, 200);
    let (status, _) = call(admin, "GET", "/api/v1/summary", "").await.unwrap();
    assert_eq!(status, 200);
    node.stop().await;
}

#[tokio::test]
async fn the_admin_token_can_come_from_a_file_and_check_config_hides_it() {
    let dir = temp_dir("token-file");
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, "from-the-file\n").unwrap();
    let mut config = config();
    config.http.admin_token.clear();
    config.http.admin_token_file = Some(token_file.clone());
    let node = RunningNode::start(config).await.unwrap();
    let addr = node.http_addr;
    let (status, body) = tokio::task::spawn_blocking(move || {
        let bearer = "Authorization: Bearer from-the-file\r\n";
        http_request(addr, "DELETE", "/api/v1/clients/7", bearer).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        (status, body.contains("no such client")),
        (404, true),
        "{body}"
    );
    node.stop().await;

    let file = dir.join("skein.toml");
    let toml = format!(
        "[http]\nadmin_token_file = {:?}\n",
        token_file.display().to_string()
    );
    std::fs::write(&file, toml).unwrap();
    let stdout = skein_tests::node::check_config(&file);
    assert!(stdout.contains("admin_token = \"<redacted>\""), "{stdout}");
    assert!(!stdout.contains("from-the-file"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_rereads_the_pair_even_when_its_files_look_unchanged() {
    require("curl", "curl");
    let dir = temp_dir("https-sighup-pem"); // not the node's own directory, which start() empties
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let first_ca = dir.join("first-ca.pem");
    std::fs::write(&first_ca, write_pair(&dir, "cert.pem", "key.pem")).unwrap();
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let stamps = (mtime(&cert), mtime(&key));
    let tls = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    // The node comes up through its plain health answer on the HTTPS port.
    let node = NodeProcess::start("127.0.0.1", "https-sighup", &tls);
    let health = format!("https://{}/api/v1/health", node.http);
    assert_eq!(curl(&first_ca, &health), Some(200));

    // A new pair whose files keep the old modification times: the poll cannot see it...
    let second_ca = dir.join("second-ca.pem");
    std::fs::write(&second_ca, write_pair(&dir, "cert.pem", "key.pem")).unwrap();
    for (path, stamp) in [(&cert, stamps.0), (&key, stamps.1)] {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(stamp).unwrap();
    }
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        curl(&first_ca, &health),
        Some(200),
        "no reload without a change"
    );

    // ...SIGHUP re-reads it.
    node.process.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl(&second_ca, &health) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not load the new pair"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
