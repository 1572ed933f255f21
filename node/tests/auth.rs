//! Stream authorisation against a running `skein` with real clients: ffmpeg publishing and
//! ffprobe playing over RTMP and HTTP-FLV with and without tokens minted by `skein token`, key
//! rotation and retirement with `skein stream-key`, and `on_publish` / `on_play` hooks served by
//! a small HTTP server in the test that refuses, never answers, or allows.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use skein_tests::cluster::{run_bounded, wait_for};
use skein_tests::media::{probe, publish, publish_to_end, streams};
use skein_tests::node::{NodeProcess, http_get};
use skein_tests::{binary, require};

const WAIT: Duration = Duration::from_secs(20);

/// `skein ARGS`, bounded; panics unless it succeeds.
fn skein(args: &[&str]) -> Output {
    let out = run_bounded(
        Command::new(binary("skein")).args(args),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "skein {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Mints a token with the key file `keys`: `skein token ACTION STREAM --keys-file KEYS ...`.
fn mint(keys: &Path, action: &str, stream: &str, extra: &[&str]) -> String {
    let keys = keys.display().to_string();
    let mut args = vec!["token", action, stream, "--keys-file", &keys];
    args.extend(extra);
    let out = skein(&args);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A publish that must be refused with `why` in ffmpeg's `Server error:` line.
fn assert_publish_refused(url: &str, why: &str) {
    let out = publish_to_end(url, 3);
    let text = stderr(&out);
    assert!(!out.status.success(), "{url} must be refused: {text}");
    assert!(
        text.contains("Server error: not authorised") && text.contains(why),
        "{url}: expected a refusal saying {why:?}, ffmpeg said: {text}"
    );
}

/// The publisher of `stream` as `/api/v1/streams` lists it, if any.
fn published(node: &NodeProcess, stream: &str) -> bool {
    node.json("/api/v1/streams")["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["key"] == stream && s["publisher"].is_object())
}

/// The value of `skein_auth_refused_total{action,reason}`, 0 when absent.
fn refusals(node: &NodeProcess, action: &str, reason: &str) -> u64 {
    let (_, text) = http_get(node.http, "/metrics").expect("metrics");
    let series = format!("skein_auth_refused_total{{action=\"{action}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// An ffmpeg publisher of `url` that the node lists as publishing `stream`; killed on drop.
fn publishing(node: &NodeProcess, url: &str, stream: &str) -> skein_tests::Process {
    let publisher = publish(url, 60);
    wait_for(&format!("{stream} published"), WAIT, || {
        published(node, stream).then_some(())
    });
    publisher
}

#[test]
fn publishing_needs_a_valid_token_and_keys_rotate_with_overlap() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    // The defaults: publishing needs a token, playing is open.
    let node = NodeProcess::start_with_auth("127.0.0.1", "auth-publish", "", "");
    let keys = node.dir.join("data").join("stream-keys.json");
    let url = |key: &str, query: &str| format!("rtmp://{}/live/{key}{query}", node.rtmp);

    // No key exists yet: minting creates the first one, in the node's key file, 0600.
    let good = mint(&keys, "publish", "live/cam", &["--ttl", "1h"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&keys.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key file is the owner's only");

    assert_publish_refused(&url("cam", ""), "a token is required");
    assert_publish_refused(&url("cam", "?token=v1.garbage.sig"), "malformed token");
    let short = mint(&keys, "publish", "live/cam", &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2_100));
    assert_publish_refused(&url("cam", &format!("?token={short}")), "token expired");
    let foreign_keys = node.dir.join("other-keys.json");
    let foreign = mint(&foreign_keys, "publish", "live/cam", &[]);
    assert_publish_refused(
        &url("cam", &format!("?token={foreign}")),
        "unknown or retired key",
    );
    let (head, _) = good.rsplit_once('.').unwrap();
    let (_, foreign_signature) = foreign.rsplit_once('.').unwrap();
    assert_publish_refused(
        &url("cam", &format!("?token={head}.{foreign_signature}")),
        "bad token signature",
    );
    let other_stream = mint(&keys, "publish", "live/other", &[]);
    assert_publish_refused(
        &url("cam", &format!("?token={other_stream}")),
        "token is for stream live/other",
    );
    let play_token = mint(&keys, "play", "live/cam", &[]);
    assert_publish_refused(
        &url("cam", &format!("?token={play_token}")),
        "token is for play, not publish",
    );
    let bound = mint(&keys, "publish", "live/cam", &["--client-ip", "127.0.0.9"]);
    assert_publish_refused(
        &url("cam", &format!("?token={bound}")),
        "token is for client address 127.0.0.9",
    );
    assert!(!published(&node, "live/cam"), "no refused stream appears");
    for reason in [
        "token_missing",
        "token_malformed",
        "token_expired",
        "token_unknown_key",
        "token_bad_signature",
        "token_wrong_stream",
        "token_wrong_action",
        "token_wrong_client",
    ] {
        assert_eq!(
            refusals(&node, "publish", reason),
            1,
            "{reason} counted once"
        );
    }

    // The right token publishes, and anyone may play (play is open by default).
    let publisher = publishing(&node, &url("cam", &format!("?token={good}")), "live/cam");
    assert_eq!(
        streams(&url("cam", "")),
        [
            ("audio".to_owned(), "aac".to_owned()),
            ("video".to_owned(), "h264".to_owned())
        ]
    );
    drop(publisher);

    // The token may also come on the app (rtmp://host/live?token=.../key).
    let on_app = mint(&keys, "publish", "live/app-query", &[]);
    let app_url = format!("rtmp://{}/live?token={on_app}/app-query", node.rtmp);
    drop(publishing(&node, &app_url, "live/app-query"));

    // Rotation: a new key signs; tokens of the old key keep working until it is retired.
    let before = mint(&keys, "publish", "live/rotated", &[]);
    let before_too = mint(&keys, "publish", "live/retired", &[]);
    let old_id = signing_key(&keys);
    skein(&[
        "stream-key",
        "rotate",
        "--keys-file",
        &keys.display().to_string(),
    ]);
    let new_id = signing_key(&keys);
    assert_ne!(old_id, new_id);
    let after = mint(&keys, "publish", "live/new", &[]);
    drop(publishing(
        &node,
        &url("rotated", &format!("?token={before}")),
        "live/rotated",
    ));
    skein(&[
        "stream-key",
        "retire",
        &old_id,
        "--keys-file",
        &keys.display().to_string(),
    ]);
    assert_publish_refused(
        &url("retired", &format!("?token={before_too}")),
        "unknown or retired key",
    );
    drop(publishing(
        &node,
        &url("new", &format!("?token={after}")),
        "live/new",
    ));
    // The last key cannot be retired.
    let out = run_bounded(
        Command::new(binary("skein")).args([
            "stream-key",
            "retire",
            &new_id,
            "--keys-file",
            &keys.display().to_string(),
        ]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("last stream key"), "{}", stderr(&out));
}

/// The id of the key that signs, from `skein stream-key list`.
fn signing_key(keys: &Path) -> String {
    let out = skein(&[
        "stream-key",
        "list",
        "--keys-file",
        &keys.display().to_string(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find(|l| l.contains("signing"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no signing key listed: {text}"))
        .to_owned()
}

#[test]
fn playing_an_app_with_play_tokens_over_rtmp_and_http_flv() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let node = NodeProcess::start_with_auth(
        "127.0.0.1",
        "auth-play",
        "[auth]\npublish = \"open\"\n[auth.apps.live]\nplay = \"token\"\n",
        "",
    );
    let keys = node.dir.join("data").join("stream-keys.json");
    let _publisher = publishing(&node, &format!("rtmp://{}/live/cam", node.rtmp), "live/cam");
    let _other_app = publishing(&node, &format!("rtmp://{}/free/cam", node.rtmp), "free/cam");
    let token = mint(&keys, "play", "live/cam", &[]);
    let rtmp = |query: &str| format!("rtmp://{}/live/cam{query}", node.rtmp);
    let flv_path = |query: &str| format!("/live/cam.flv{query}");

    // RTMP: refused without a token, with the status description saying why.
    let out = probe(&rtmp(""));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a token is required"),
        "{}",
        stderr(&out)
    );
    // HTTP-FLV: 401 without credentials, 403 with ones that do not do.
    let (status, body) = http_get(node.http, &flv_path("")).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("a token is required"), "{body}");
    let publish_token = mint(&keys, "publish", "live/cam", &[]);
    let (status, body) =
        http_get(node.http, &flv_path(&format!("?token={publish_token}"))).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("token is for publish, not play"), "{body}");
    let elsewhere = mint(&keys, "play", "live/cam", &["--client-ip", "127.0.0.9"]);
    let (status, body) = http_get(node.http, &flv_path(&format!("?token={elsewhere}"))).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("client address 127.0.0.9"), "{body}");
    assert_eq!(refusals(&node, "play", "token_missing"), 2);
    assert_eq!(refusals(&node, "play", "token_wrong_action"), 1);
    assert_eq!(refusals(&node, "play", "token_wrong_client"), 1);

    // With the play token, both protocols play; another app stays open.
    let expected = [
        ("audio".to_owned(), "aac".to_owned()),
        ("video".to_owned(), "h264".to_owned()),
    ];
    assert_eq!(streams(&rtmp(&format!("?token={token}"))), expected);
    let flv_url = format!(
        "http://{}{}",
        node.http,
        flv_path(&format!("?token={token}"))
    );
    assert_eq!(streams(&flv_url), expected);
    assert_eq!(streams(&format!("rtmp://{}/free/cam", node.rtmp)), expected);
}

/// What the hook server received, and how it answers: by app, `deny` → 403, `silent` → never,
/// anything else → 200.
#[derive(Default)]
struct HookLog {
    calls: Mutex<Vec<Value>>,
}

/// Runs the hook server on 127.0.0.1 in its own runtime thread; returns its address.
fn hook_server(log: Arc<HookLog>) -> SocketAddr {
    use axum::Json;
    use axum::extract::State;
    use axum::http::StatusCode;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    async fn hook(State(log): State<Arc<HookLog>>, Json(body): Json<Value>) -> StatusCode {
        log.calls.lock().push(body.clone());
        match body["app"].as_str() {
            Some("deny") => StatusCode::FORBIDDEN,
            Some("silent") => std::future::pending().await,
            _ => StatusCode::OK,
        }
    }
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new()
                .route("/hook", axum::routing::post(hook))
                .with_state(log);
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}

#[test]
fn hooks_refuse_time_out_and_allow() {
    require("ffmpeg", "ffmpeg");
    require("ffprobe", "ffmpeg");
    let log = Arc::new(HookLog::default());
    let hooks = hook_server(log.clone());
    let node = NodeProcess::start_with_auth(
        "127.0.0.1",
        "auth-hooks",
        &format!(
            "[auth]\npublish = \"hook\"\nplay = \"hook\"\n[auth.hooks]\n\
             on_publish = \"http://{hooks}/hook\"\non_play = \"http://{hooks}/hook\"\n\
             on_unpublish = \"http://{hooks}/hook\"\non_stop = \"http://{hooks}/hook\"\n\
             timeout_ms = 500\n"
        ),
        "",
    );
    let url = |app: &str| format!("rtmp://{}/{app}/cam?token=abc&room=7", node.rtmp);

    assert_publish_refused(&url("deny"), "refused by the on_publish hook (HTTP 403)");
    assert_publish_refused(&url("silent"), "the on_publish hook did not answer in time");
    assert!(!published(&node, "deny/cam") && !published(&node, "silent/cam"));
    assert_eq!(refusals(&node, "publish", "hook_denied"), 1);
    assert_eq!(refusals(&node, "publish", "hook_timeout"), 1);

    let publisher = publishing(&node, &url("allow"), "allow/cam");
    let asked = log
        .calls
        .lock()
        .iter()
        .find(|c| c["action"] == "on_publish" && c["app"] == "allow")
        .cloned()
        .expect("the hook was asked");
    assert_eq!(asked["stream"], "cam");
    assert_eq!(asked["protocol"], "rtmp");
    assert_eq!(asked["client_ip"], "127.0.0.1");
    assert_eq!(asked["node"], "auth-hooks");
    assert_eq!(asked["params"]["token"], "abc");
    assert_eq!(asked["params"]["room"], "7");
    assert!(asked["client_id"].as_u64().is_some());

    // Play asks on_play too; the end of the play and of the publish are told.
    let played = probe(&format!("rtmp://{}/allow/cam", node.rtmp));
    assert!(played.status.success(), "{}", stderr(&played));
    let denied_play = probe(&format!("rtmp://{}/deny/cam", node.rtmp));
    assert!(stderr(&denied_play).contains("refused by the on_play hook"));
    drop(publisher);
    wait_for("on_stop and on_unpublish told", WAIT, || {
        let calls = log.calls.lock();
        let told = |action: &str| {
            calls
                .iter()
                .any(|c| c["action"] == action && c["app"] == "allow")
        };
        (told("on_play") && told("on_stop") && told("on_unpublish")).then_some(())
    });
}
