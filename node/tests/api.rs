//! The HTTP API of a running `skein` process: health (read by GeoDNS), streams, clients,
//! summary, the admin kick with its token, addresses only for the token, and Prometheus
//! metrics.

use std::time::Duration;

use skein_tests::media::publish;
use skein_tests::node::{NodeProcess, http_get};
use skein_tests::{http_request, require};

#[test]
fn api_reports_and_admin_kick_needs_the_token() {
    require("ffmpeg", "ffmpeg");
    let node = NodeProcess::start("127.0.0.1", "api", "[limits]\nmax_egress_mbps = 1000\n");

    let health = node.json("/api/v1/health");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["node"], "api");
    assert_eq!(health["max_egress_bps"], 1_000_000_000u64);
    for field in [
        "connections",
        "max_connections",
        "cpu",
        "egress_bps",
        "draining",
    ] {
        assert!(!health[field].is_null(), "health lacks {field}: {health}");
    }

    let _publisher = publish(&node.rtmp_url("api"), 60);
    const ADMIN: &str = "Authorization: Bearer secret\r\n";
    let clients = node.wait_json_with("/api/v1/clients", ADMIN, Duration::from_secs(20), |v| {
        v["clients"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["role"] == "publisher"))
    });
    // Addresses are for the token holder: the client list is refused, the stream list
    // leaves the publisher's address out.
    let (status, body) = http_get(node.http, "/api/v1/clients").unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("public_details"), "{body}");
    let (status, body) = http_request(
        node.http,
        "GET",
        "/api/v1/clients",
        "Authorization: Bearer wrong\r\n",
    )
    .unwrap();
    assert_eq!(status, 401, "{body}");
    let open = node.json("/api/v1/streams");
    assert_eq!(open["streams"][0]["key"], "live/api");
    assert!(
        open["streams"][0]["publisher"]["client_id"].is_u64(),
        "{open}"
    );
    assert!(open["streams"][0]["publisher"]["peer"].is_null(), "{open}");
    let detailed = node.json_with("/api/v1/streams", ADMIN);
    assert!(
        detailed["streams"][0]["publisher"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{detailed}"
    );
    let publisher = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "publisher")
        .unwrap()
        .clone();
    assert_eq!(publisher["stream"], "live/api");
    assert_eq!(publisher["protocol"], "rtmp");
    let id = publisher["id"].as_u64().unwrap();

    let summary = node.wait_json("/api/v1/summary", Duration::from_secs(10), |v| {
        v["ingress_bps"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(summary["publishers"], 1);
    assert_eq!(summary["streams"], 1);
    assert!(summary["memory_rss_bytes"].as_u64().unwrap() > 0);

    let path = format!("/api/v1/clients/{id}");
    let (status, body) = http_request(node.http, "DELETE", &path, "").unwrap();
    assert_eq!(status, 401, "{body}");
    let (status, _) = http_request(
        node.http,
        "DELETE",
        &path,
        "Authorization: Bearer wrong\r\n",
    )
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = http_request(
        node.http,
        "DELETE",
        &path,
        "Authorization: Bearer secret\r\n",
    )
    .unwrap();
    assert_eq!(status, 204);
    node.wait_json("/api/v1/streams", Duration::from_secs(10), |v| {
        v["streams"].as_array().is_some_and(|s| s.is_empty())
    });
    let (status, _) = http_request(
        node.http,
        "DELETE",
        &path,
        "Authorization: Bearer secret\r\n",
    )
    .unwrap();
    assert_eq!(status, 404, "the client is gone");

    let (status, metrics) = http_get(node.http, "/metrics").unwrap();
    assert_eq!(status, 200);
    for line in [
        "skein_publishes_total 1",
        "skein_connections_total{protocol=\"rtmp\"} 1",
        "# TYPE skein_received_bytes counter",
        "# TYPE skein_open_connections gauge",
    ] {
        assert!(metrics.contains(line), "metrics lack {line:?}:\n{metrics}");
    }
}

#[test]
fn http_flv_errors_are_clear() {
    let node = NodeProcess::start("127.0.0.1", "api-flv", "");
    let (status, body) = http_get(node.http, "/live/nothing.flv").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("no stream live/nothing"), "{body}");
    let (status, _) = http_get(node.http, "/live/nothing.mp4").unwrap();
    assert_eq!(status, 404);
    let (status, body) = http_get(node.http, "/live/bad%20key.flv").unwrap();
    assert_eq!(status, 400, "{body}");
}

#[test]
fn check_config_prints_the_effective_configuration_without_the_admin_token() {
    let dir = skein_tests::node::temp_dir("check-config");
    let file = dir.join("skein.toml");
    std::fs::write(&file, "[http]\nadmin_token = \"s3cret-admin\"\n").unwrap();
    let stdout = skein_tests::node::check_config(&file);
    assert!(stdout.contains("admin_token = \"<redacted>\""), "{stdout}");
    assert!(!stdout.contains("s3cret-admin"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
