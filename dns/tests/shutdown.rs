//! Graceful shutdown of the real binary: after SIGTERM or SIGINT it stops every task and exits
//! with status 0 within the grace period, even with idle connections open.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use skein_tests::dns::{DnsServer, TestEdge, config, with_engine};

/// The bound the server promises (its shutdown grace), plus slack for a loaded test machine.
const EXIT_WITHIN: Duration = Duration::from_secs(7);

fn stops_cleanly(engine: &str, signal: i32, name: &str, extra_args: &[&str]) {
    let edge = TestEdge::start("127.0.1.1");
    let regions = format!(
        "[[regions]]\nname = \"a\"\nlat = 50.11\nlon = 8.68\nedges = [{}]\n",
        edge.toml("a1")
    );
    let cfg = with_engine(&config(&regions, ""), engine);
    let mut s = DnsServer::start(&format!("shutdown-{engine}-{name}"), &cfg, extra_args);
    s.wait_until("edge up", |s| {
        s.dig(&["live.example.com", "A"]).addrs() == [IpAddr::from([127, 0, 1, 1])]
    });
    if extra_args.contains(&"--cluster") {
        s.wait_until("the cluster watcher polled", |s| {
            s.log().contains("cluster unreachable")
        });
    }
    // Idle connections must not hold the shutdown up until their idle timeouts.
    let _idle_dns = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], s.port))).expect("dns");
    let _idle_http =
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], s.metrics_port))).expect("http");
    std::thread::sleep(Duration::from_millis(100));

    let sent = Instant::now();
    let status = s.signal_and_wait(signal, EXIT_WITHIN);
    let log = s.log();
    let status = status.unwrap_or_else(|| {
        panic!("still running {EXIT_WITHIN:?} after {name}\n--- server log ---\n{log}")
    });
    assert!(status.success(), "exit {status}\n--- server log ---\n{log}");
    assert!(log.contains(name), "{log}");
    assert!(log.contains("all tasks stopped"), "{log}");
    eprintln!("{engine}: exited {:?} after {name}", sent.elapsed());
}

#[test]
fn sigterm_stops_the_hickory_engine() {
    stops_cleanly("hickory", libc::SIGTERM, "SIGTERM", &[]);
}

#[test]
fn sigterm_stops_the_batched_engine() {
    stops_cleanly("batched", libc::SIGTERM, "SIGTERM", &[]);
}

#[test]
fn sigint_stops_it_too_with_a_cluster_watcher_running() {
    // Nothing listens on the seed: the watcher keeps polling (and failing) until the signal,
    // while the static regions stay in force.
    let seed = format!("127.0.0.1:{}", skein_tests::free_port("127.0.0.1"));
    stops_cleanly("hickory", libc::SIGINT, "SIGINT", &["--cluster", &seed]);
}
