//! End-to-end: the real skein-dns binary queried with dig over loopback. The protocol tests
//! run against both UDP engines (hickory-server with our handler, and the batched engine);
//! TCP is hickory-server's in both.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream, UdpSocket};
use std::time::Duration;

use skein_tests::dns::{DnsServer, TestEdge, config, demo_mmdb, temp_dir, with_engine};

/// One `#[test]` per UDP engine for a test function taking the engine name.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn hickory() {
                super::$name("hickory");
            }
            #[test]
            fn batched() {
                super::$name("batched");
            }
        }
    )*};
}

both_engines!(
    authoritative_basics_soa_ns_a_aaaa_nxdomain_nodata_refused,
    large_answer_truncated_over_udp_and_whole_over_tcp,
    clients_get_their_regions_edges_via_ecs_and_source_address,
    overrides_by_subnet_and_country,
    failover_when_a_region_dies_and_back_after_recovery,
    malformed_packets_get_formerr_or_nothing_and_server_keeps_answering,
    rate_limit_drops_and_slips_per_client_network,
);

fn regions(a: &[&TestEdge], b: &[&TestEdge]) -> String {
    let list = |edges: &[&TestEdge], prefix: &str| {
        edges
            .iter()
            .enumerate()
            .map(|(i, e)| e.toml(&format!("{prefix}{}", i + 1)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[[regions]]
name = "a"
lat = 50.11
lon = 8.68
edges = [{}]

[[regions]]
name = "b"
lat = 38.95
lon = -77.45
edges = [{}]
"#,
        list(a, "a"),
        list(b, "b")
    )
}

fn in_region(addrs: &[IpAddr], third_octet: u8) -> bool {
    !addrs.is_empty()
        && addrs.iter().all(|a| match a {
            IpAddr::V4(v4) => v4.octets()[2] == third_octet,
            IpAddr::V6(_) => false,
        })
}

/// Starts a server with the demo MMDB and the given edges; waits until every edge is up.
fn geo_server(tag: &str, engine: &str, a: &[&TestEdge], b: &[&TestEdge], extra: &str) -> DnsServer {
    let dir = temp_dir(&format!("{tag}-{engine}"));
    demo_mmdb(&dir);
    let extra = format!("[geo]\ncity = \"geo.mmdb\"\n{extra}");
    let cfg = with_engine(&config(&regions(a, b), &extra), engine);
    let s = DnsServer::start_in(dir, &cfg, &[]);
    let n = a.len() + b.len();
    s.wait_until("all edges up", |s| {
        s.metrics().matches("state=\"up\"} 1").count() == n
    });
    s
}

fn authoritative_basics_soa_ns_a_aaaa_nxdomain_nodata_refused(engine: &str) {
    let a1 = TestEdge::start("127.0.1.1");
    let b1 = TestEdge::start("127.0.2.1");
    let s = geo_server("basics", engine, &[&a1], &[&b1], "");

    let soa = s.dig(&["example.com", "SOA"]);
    assert_eq!(soa.status, "NOERROR");
    assert!(soa.flags.contains(&"aa".to_string()), "{}", soa.raw);
    assert!(!soa.flags.contains(&"ra".to_string()));
    assert_eq!(soa.answers.len(), 1);
    assert!(
        soa.answers[0]
            .3
            .starts_with("ns1.example.com. hostmaster.example.com. 7 "),
        "{}",
        soa.raw
    );

    let ns = s.dig(&["example.com", "NS"]);
    assert_eq!(ns.answers.len(), 2, "{}", ns.raw);
    let glue: Vec<&str> = ns.additional.iter().map(|r| r.3.as_str()).collect();
    assert!(
        glue.contains(&"127.0.0.53") && glue.contains(&"::1"),
        "{}",
        ns.raw
    );
    assert_eq!(
        s.dig(&["ns1.example.com", "A"]).addrs(),
        vec!["127.0.0.53".parse::<IpAddr>().unwrap()]
    );

    // 127.0.0.1 is not in the database: default region a, which has one edge
    let a = s.dig(&["live.example.com", "A"]);
    assert_eq!(a.status, "NOERROR");
    assert_eq!(
        a.addrs(),
        vec!["127.0.1.1".parse::<IpAddr>().unwrap()],
        "{}",
        a.raw
    );
    let b = s.dig(&["live.example.com", "A", "+subnet=127.0.2.0/24"]);
    assert_eq!(
        b.addrs(),
        vec!["127.0.2.1".parse::<IpAddr>().unwrap()],
        "{}",
        b.raw
    );
    assert!(
        a.answers.iter().all(|r| r.1 == 20),
        "default TTL 20: {}",
        a.raw
    );

    // AAAA: no IPv6 edges → NODATA with the SOA
    let aaaa = s.dig(&["live.example.com", "AAAA"]);
    assert_eq!(aaaa.status, "NOERROR");
    assert!(aaaa.answers.is_empty());
    assert_eq!(aaaa.authority.len(), 1, "{}", aaaa.raw);
    assert_eq!(aaaa.authority[0].2, "SOA");
    assert_eq!(aaaa.authority[0].1, 30, "negative TTL = SOA minimum");

    let nx = s.dig(&["nope.example.com", "A"]);
    assert_eq!(nx.status, "NXDOMAIN");
    assert!(nx.flags.contains(&"aa".to_string()));
    assert_eq!(nx.authority[0].2, "SOA");

    let nodata = s.dig(&["live.example.com", "MX"]);
    assert_eq!(nodata.status, "NOERROR");
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authority[0].2, "SOA");

    let refused = s.dig(&["example.org", "A"]);
    assert_eq!(refused.status, "REFUSED");
    assert!(!refused.flags.contains(&"aa".to_string()));

    // ANY is answered minimally (one RRset)
    let any = s.dig(&["live.example.com", "ANY"]);
    assert_eq!(any.status, "NOERROR");
    assert!(any.answers.iter().all(|r| r.2 == "A"), "{}", any.raw);

    // mixed case is matched and echoed
    let mixed = s.dig(&["LiVe.ExAmPlE.cOm", "A"]);
    assert_eq!(mixed.answers.len(), 1);
    assert_eq!(mixed.answers[0].0, "LiVe.ExAmPlE.cOm.");

    let m = s.metrics();
    assert!(
        m.contains("skein_dns_queries_total{rcode=\"REFUSED\",qtype=\"A\"}"),
        "{m}"
    );
    assert!(m.contains("skein_dns_queries_total{rcode=\"NXDOMAIN\",qtype=\"A\"}"));
    assert!(m.contains("skein_dns_edge_health{region=\"a\",edge=\"a1\",state=\"up\"} 1"));
    assert!(m.contains("skein_dns_probe_duration_seconds_count"));
}

fn large_answer_truncated_over_udp_and_whole_over_tcp(engine: &str) {
    let records: String = (0..12)
        .map(|i| {
            format!(
                "{{ name = \"big\", type = \"TXT\", data = \"\\\"{}\\\"\" }},",
                "x".repeat(200) + &i.to_string()
            )
        })
        .collect();
    let cfg = config("", "").replace(
        "ns = [",
        &format!("records = [{records} {{ name = \"small\", type = \"TXT\", data = \"\\\"hi\\\"\" }}]\nns = ["),
    );
    let s = DnsServer::start("trunc", &with_engine(&cfg, engine), &[]);
    let udp = s.dig(&["big.example.com", "TXT", "+ignore", "+bufsize=1232"]);
    assert!(udp.flags.contains(&"tc".to_string()), "{}", udp.raw);
    assert!(udp.answers.is_empty());
    let noedns = s.dig(&["big.example.com", "TXT", "+ignore", "+noedns"]);
    assert!(noedns.flags.contains(&"tc".to_string()), "{}", noedns.raw);
    let tcp = s.dig(&["big.example.com", "TXT", "+tcp"]);
    assert_eq!(tcp.answers.len(), 12, "{}", tcp.raw);
    assert!(!tcp.flags.contains(&"tc".to_string()));
    // dig retries over TCP by itself after TC
    let retried = s.dig(&["big.example.com", "TXT"]);
    assert_eq!(retried.answers.len(), 12, "{}", retried.raw);
    assert_eq!(s.dig(&["small.example.com", "TXT"]).answers.len(), 1);
}

fn clients_get_their_regions_edges_via_ecs_and_source_address(engine: &str) {
    let a1 = TestEdge::start("127.0.1.1");
    let a2 = TestEdge::start("127.0.1.2");
    let b1 = TestEdge::start("127.0.2.1");
    let b2 = TestEdge::start("127.0.2.2");
    let s = geo_server("regions", engine, &[&a1, &a2], &[&b1, &b2], "");

    let ecs_a = s.dig(&["live.example.com", "A", "+subnet=127.0.1.0/24"]);
    assert!(in_region(&ecs_a.addrs(), 1), "{}", ecs_a.raw);
    // The scope is the widest network of one region: 127.0.1.0/24 is a, 127.0.2.0/24 b, so
    // 127.0.0.0/23 (127.0.0.0/24 is not in the database: the default region, a).
    assert_eq!(
        ecs_a.client_subnet.as_deref(),
        Some("127.0.1.0/24/23"),
        "scope echoed"
    );
    let ecs_b = s.dig(&["live.example.com", "A", "+subnet=127.0.2.0/24"]);
    assert!(in_region(&ecs_b.addrs(), 2), "{}", ecs_b.raw);
    // the documentation range placed in Virginia, with a longer source prefix
    let doc = s.dig(&["live.example.com", "A", "+subnet=198.51.100.77/32"]);
    assert!(in_region(&doc.addrs(), 2), "{}", doc.raw);
    assert_eq!(doc.client_subnet.as_deref(), Some("198.51.100.77/32/24"));
    // Source prefix 0: not tailored, scope 0, the resolver address decides (127.0.0.1 → default
    // region a, it is not in the database).
    let zero = s.dig(&["live.example.com", "A", "+subnet=0.0.0.0/0"]);
    assert_eq!(
        zero.client_subnet.as_deref(),
        Some("0.0.0.0/0/0"),
        "{}",
        zero.raw
    );

    // no ECS: the source address decides
    let src_a = s.dig(&["-b", "127.0.1.5", "live.example.com", "A"]);
    assert!(in_region(&src_a.addrs(), 1), "{}", src_a.raw);
    let src_b = s.dig(&["-b", "127.0.2.5", "live.example.com", "A"]);
    assert!(in_region(&src_b.addrs(), 2), "{}", src_b.raw);
    // ECS wins over the source address
    let both = s.dig(&[
        "-b",
        "127.0.1.5",
        "live.example.com",
        "A",
        "+subnet=127.0.2.0/24",
    ]);
    assert!(in_region(&both.addrs(), 2), "{}", both.raw);
    // unknown location → default region (first: a), valid for all of 0.0.0.0/2, where
    // nothing maps elsewhere
    let unknown = s.dig(&["live.example.com", "A", "+subnet=10.9.8.0/24"]);
    assert!(in_region(&unknown.addrs(), 1), "{}", unknown.raw);
    assert_eq!(unknown.client_subnet.as_deref(), Some("10.9.8.0/24/2"));
    // an IPv6 client network in Virginia's /48
    let v6 = s.dig(&["live.example.com", "A", "+subnet=2001:db8:2::/56"]);
    assert!(in_region(&v6.addrs(), 2), "{}", v6.raw);
    assert_eq!(v6.client_subnet.as_deref(), Some("2001:db8:2::/56/48"));
}

fn overrides_by_subnet_and_country(engine: &str) {
    let a1 = TestEdge::start("127.0.1.1");
    let b1 = TestEdge::start("127.0.2.1");
    let extra =
        "[geo.overrides]\ncountry = { SG = \"b\" }\nsubnet = { \"127.0.1.128/25\" = \"b\" }\n";
    let s = geo_server("overrides", engine, &[&a1], &[&b1], extra);
    let sub = s.dig(&["live.example.com", "A", "+subnet=127.0.1.200/32"]);
    assert!(in_region(&sub.addrs(), 2), "{}", sub.raw);
    assert_eq!(sub.client_subnet.as_deref(), Some("127.0.1.200/32/25"));
    let not_sub = s.dig(&["live.example.com", "A", "+subnet=127.0.1.7/32"]);
    assert!(in_region(&not_sub.addrs(), 1), "{}", not_sub.raw);
    // Singapore is nearer to Frankfurt than to Virginia, but the country override says b.
    let sg = s.dig(&["live.example.com", "A", "+subnet=203.0.113.0/24"]);
    assert!(in_region(&sg.addrs(), 2), "{}", sg.raw);
}

fn failover_when_a_region_dies_and_back_after_recovery(engine: &str) {
    let mut a1 = TestEdge::start("127.0.1.1");
    let mut a2 = TestEdge::start("127.0.1.2");
    let b1 = TestEdge::start("127.0.2.1");
    let s = geo_server("failover", engine, &[&a1, &a2], &[&b1], "");
    let q = ["live.example.com", "A", "+subnet=127.0.1.0/24"];
    assert!(in_region(&s.dig(&q).addrs(), 1));

    a1.kill();
    a2.kill();
    s.wait_until("region a clients moved to b", |s| {
        in_region(&s.dig(&q).addrs(), 2)
    });
    assert!(s.log().contains("edge down"));
    assert!(s.metrics().contains("skein_dns_region_up{region=\"a\"} 0"));

    a1.restart();
    a2.restart();
    s.wait_until("region a clients back on a", |s| {
        in_region(&s.dig(&q).addrs(), 1)
    });
    assert!(s.metrics().contains("skein_dns_region_up{region=\"a\"} 1"));
}

#[test]
fn edge_over_high_water_is_not_handed_out() {
    let a1 = TestEdge::start("127.0.1.1");
    let a2 = TestEdge::start("127.0.1.2");
    let b1 = TestEdge::start("127.0.2.1");
    let s = geo_server("load", "hickory", &[&a1, &a2], &[&b1], "");
    let q = ["live.example.com", "A", "+subnet=127.0.1.0/24"];
    assert_eq!(s.dig(&q).addrs().len(), 2);

    a1.set_connections(95); // of 100, high-water 0.85
    let a1_ip: IpAddr = "127.0.1.1".parse().unwrap();
    s.wait_until("loaded edge shed", |s| {
        let addrs = s.dig(&q).addrs();
        addrs.len() == 1 && !addrs.contains(&a1_ip)
    });
    for _ in 0..10 {
        let addrs = s.dig(&q).addrs();
        assert_eq!(addrs, vec!["127.0.1.2".parse::<IpAddr>().unwrap()]);
    }
    // the whole region full → its clients spill to b
    a2.set_connections(99);
    s.wait_until("full region spills", |s| in_region(&s.dig(&q).addrs(), 2));
}

#[test]
fn config_change_applies_live_and_bad_config_is_rejected() {
    let a1 = TestEdge::start("127.0.1.1");
    let b1 = TestEdge::start("127.0.2.1");
    let s = geo_server("reload", "hickory", &[&a1], &[&b1], "");
    assert_eq!(s.dig(&["live.example.com", "A"]).answers[0].1, 20);

    let geo = "[geo]\ncity = \"geo.mmdb\"\n";
    let new = config(
        &regions(&[&a1], &[&b1]),
        &format!("{geo}[answer]\nttl = 7\nk = 1\n"),
    )
    .replace("services = [\"live\"]", "services = [\"live\", \"play\"]");
    s.rewrite_config(&new);
    s.wait_until("new TTL and service", |s| {
        let d = s.dig(&["play.example.com", "A"]);
        d.answers.len() == 1 && d.answers[0].1 == 7
    });

    s.rewrite_config("this is [not valid toml");
    s.wait_until("reload rejected", |s| {
        s.log().contains("new configuration rejected")
    });
    let d = s.dig(&["play.example.com", "A"]);
    assert_eq!(d.answers.len(), 1, "old config kept: {}", d.raw);
    assert!(
        s.metrics()
            .contains("skein_dns_config_reloads_total{result=\"error\"} 1")
    );
}

fn raw_query(name: &str, qtype: u16) -> Vec<u8> {
    let mut p = vec![0xab, 0xcd, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        p.push(l.len() as u8);
        p.extend(l.as_bytes());
    }
    p.push(0);
    p.extend(qtype.to_be_bytes());
    p.extend(1u16.to_be_bytes());
    p
}

fn exchange(port: u16, packet: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    sock.send_to(packet, ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 2048];
    sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

fn rcode(resp: &[u8]) -> u8 {
    resp[3] & 0x0f
}

fn malformed_packets_get_formerr_or_nothing_and_server_keeps_answering(engine: &str) {
    let s = DnsServer::start("malformed", &with_engine(&config("", ""), engine), &[]);
    // runt: dropped
    assert_eq!(exchange(s.port, &[1, 2, 3, 4, 5]), None);
    // a response: dropped (no reflection)
    let mut resp = raw_query("example.com", 6);
    resp[2] |= 0x80;
    assert_eq!(exchange(s.port, &resp), None);
    // a malformed response: dropped too
    assert_eq!(exchange(s.port, &resp[..resp.len() - 3]), None);
    // truncated question: FORMERR, no question section, RD copied
    let mut q = raw_query("example.com", 6);
    q[2] |= 0x01;
    let r = exchange(s.port, &q[..q.len() - 3]).expect("answer");
    assert_eq!(rcode(&r), 1);
    assert_eq!(&r[..2], &[0xab, 0xcd]);
    assert_eq!(r[2], 0x81, "QR and RD");
    assert_eq!(&r[4..12], &[0; 8], "no records");
    // an answer record in a query: FORMERR
    let mut an = raw_query("example.com", 6);
    an[7] = 1;
    an.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    assert_eq!(rcode(&exchange(s.port, &an).expect("answer")), 1);
    // AXFR: REFUSED
    assert_eq!(
        rcode(&exchange(s.port, &raw_query("example.com", 252)).expect("answer")),
        5
    );
    // qdcount 2: FORMERR
    let mut two = raw_query("example.com", 6);
    two[5] = 2;
    assert_eq!(rcode(&exchange(s.port, &two).expect("answer")), 1);
    // invalid ECS (scope prefix set in a query; host bits beyond the source prefix; two
    // options): FORMERR
    let ecs_query = |options: &[u8]| {
        let mut q = raw_query("live.example.com", 1);
        q[11] = 1;
        q.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        q.extend((options.len() as u16).to_be_bytes());
        q.extend(options);
        q
    };
    let scope = [0, 8, 0, 7, 0, 1, 24, 8, 127, 0, 1];
    assert_eq!(
        rcode(&exchange(s.port, &ecs_query(&scope)).expect("answer")),
        1
    );
    let host_bits = [0, 8, 0, 7, 0, 1, 20, 0, 127, 0, 1];
    assert_eq!(
        rcode(&exchange(s.port, &ecs_query(&host_bits)).expect("answer")),
        1
    );
    let valid = [0, 8, 0, 7, 0, 1, 24, 0, 127, 0, 1];
    assert_eq!(
        rcode(&exchange(s.port, &ecs_query(&valid)).expect("answer")),
        0
    );
    let two = [valid, valid].concat();
    assert_eq!(
        rcode(&exchange(s.port, &ecs_query(&two)).expect("answer")),
        1
    );
    // a /24 sent with all four octets (RFC 7871 §6: cut to the prefix, else FORMERR)
    let four_octets = [0, 8, 0, 8, 0, 1, 24, 0, 127, 0, 1, 0];
    assert_eq!(
        rcode(&exchange(s.port, &ecs_query(&four_octets)).expect("answer")),
        1
    );
    // bytes after the last record, with and without EDNS
    for mut trailing in [ecs_query(&valid), raw_query("example.com", 6)] {
        trailing.push(0);
        assert_eq!(rcode(&exchange(s.port, &trailing).expect("answer")), 1);
    }
    // a refused query spoils nothing for the next one
    assert_eq!(
        rcode(&exchange(s.port, &ecs_query(&valid)).expect("answer")),
        0
    );
    // NOTIFY opcode: NOTIMP
    let mut notify = raw_query("example.com", 6);
    notify[2] = 4 << 3;
    assert_eq!(rcode(&exchange(s.port, &notify).expect("answer")), 4);
    // EDNS version 1: BADVERS (extended rcode 1 in the OPT TTL)
    let mut v1 = raw_query("example.com", 6);
    v1[11] = 1;
    v1.extend([0, 0, 41, 0x04, 0xd0, 0, 1, 0, 0, 0, 0]);
    let r = exchange(s.port, &v1).expect("answer");
    assert_eq!(rcode(&r), 0);
    let opt_ttl_hi = r[r.len() - 6];
    assert_eq!(opt_ttl_hi, 1, "extended rcode BADVERS");
    // random garbage of many sizes never kills the server
    let mut x: u64 = 0x1234_5678;
    for len in 0..200usize {
        let pkt: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.send_to(&pkt, ("127.0.0.1", s.port)).expect("send");
    }
    assert_eq!(s.dig(&["example.com", "SOA"]).status, "NOERROR");
}

fn rate_limit_drops_and_slips_per_client_network(engine: &str) {
    let extra = "[rate_limit]\nresponses_per_second = 5\nslip = 2\n";
    let s = DnsServer::start("rrl", &with_engine(&config("", extra), engine), &[]);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let q = raw_query("example.com", 6);
    for _ in 0..40 {
        sock.send_to(&q, ("127.0.0.1", s.port)).expect("send");
    }
    let (mut full, mut tc) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        if buf[2] & 0x02 != 0 {
            tc += 1;
            assert_eq!(
                u16::from_be_bytes([buf[6], buf[7]]),
                0,
                "slipped answers are empty"
            );
        } else if n > 12 {
            full += 1;
        }
    }
    assert!((1..40).contains(&full), "full answers {full}");
    assert!(tc >= 1, "some responses slipped");
    assert!(full + tc < 40, "some dropped");
    assert!(
        s.metrics()
            .contains("skein_dns_rate_limited_total{action=\"drop\"}")
    );
}

/// A TCP connection to the server from source address `from` (any 127.0.0.0/8 address).
fn connect_from(s: &DnsServer, from: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&source.into()).expect("bind source");
    let server: std::net::SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    socket.connect(&server.into()).expect("connect");
    let c: TcpStream = socket.into();
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c
}

/// One SOA query over `c`, framed for TCP; the response bytes.
fn tcp_query(c: &mut TcpStream) -> Vec<u8> {
    let q = raw_query("example.com", 6);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend(&q);
    c.write_all(&framed).expect("write");
    let mut len = [0u8; 2];
    c.read_exact(&mut len).expect("length");
    let mut resp = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut resp).expect("response");
    resp
}

fn closed_at_once(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(c.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn tcp_connections_are_limited_and_idle_ones_closed() {
    let cfg = config("", "").replace(
        "udp_workers = 2\n",
        "udp_workers = 2\ntcp_max_connections = 2\ntcp_idle_timeout_ms = 3000\n",
    );
    let s = DnsServer::start("tcp-limits", &cfg, &[]);
    // two connections (from two clients) are served, several queries each
    let (mut c1, mut c2) = (connect_from(&s, "127.0.0.1"), connect_from(&s, "127.0.0.2"));
    for c in [&mut c1, &mut c2] {
        for _ in 0..3 {
            let r = tcp_query(c);
            assert_eq!(&r[..2], &[0xab, 0xcd]);
            assert_eq!(rcode(&r), 0);
        }
    }
    // the third is closed at once
    let mut c3 = connect_from(&s, "127.0.0.3");
    assert!(closed_at_once(&mut c3), "third connection served");
    assert!(
        s.metrics().contains("skein_dns_tcp_rejected_total 1"),
        "{}",
        s.metrics()
    );
    // idle connections are closed by the server, which frees their slots
    assert!(closed_at_once(&mut c1));
    assert!(closed_at_once(&mut c2));
    s.wait_until("a slot is free again", |s| {
        let mut c = connect_from(s, "127.0.0.1");
        let q = raw_query("example.com", 6);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend(&q);
        let mut buf = [0u8; 16];
        c.write_all(&framed).is_ok() && c.read(&mut buf).is_ok_and(|n| n > 0)
    });
}

#[test]
fn one_client_cannot_hold_every_tcp_slot() {
    let cfg = config("", "").replace(
        "udp_workers = 2\n",
        "udp_workers = 2\ntcp_max_connections = 8\ntcp_idle_timeout_ms = 10000\n",
    );
    let s = DnsServer::start("tcp-per-client", &cfg, &[]);
    // A quarter of the slots per client: the hog's third connection is closed at once ...
    let mut hog: Vec<TcpStream> = (0..2).map(|_| connect_from(&s, "127.0.0.9")).collect();
    for c in &mut hog {
        assert_eq!(rcode(&tcp_query(c)), 0);
    }
    let mut third = connect_from(&s, "127.0.0.9");
    assert!(
        closed_at_once(&mut third),
        "a client took more than its share"
    );
    // ... while everyone else is still served.
    let mut other = connect_from(&s, "127.0.0.10");
    assert_eq!(rcode(&tcp_query(&mut other)), 0);
}
