//! The query path as a single function over arbitrary bytes, for the fuzz target
//! (`dns/fuzz`) and the unit test that replays its seed corpus.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::Message;

use crate::answer::{Limit, Scratch, Snapshot, Transport, respond};
use crate::automap::{EdgeState, EdgeView, Load, RegionView};
use crate::config::Config;
use crate::zone::Zones;

const CONFIG: &str = r#"
[[zones]]
origin = "example.com"
services = ["live", "deep.live"]
soa = { rname = "hostmaster.example.com" }
ns = [{ name = "ns1.example.com", addrs = ["127.0.0.53", "::1"] }, { name = "ns.example.net" }]
records = [
  { name = "www", type = "CNAME", data = "live.example.com." },
  { name = "big", type = "TXT", data = "\"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"" },
  { name = "big", type = "TXT", data = "\"x\"" },
]

[geo.overrides]
subnet = { "127.0.2.0/24" = "b" }
"#;

/// A snapshot with two regions (one up, one down) and no geo database.
pub fn snapshot() -> Snapshot {
    let config = Config::parse(CONFIG).unwrap_or_else(|e| unreachable!("built-in config: {e}"));
    let zones = Zones::build(&config).unwrap_or_else(|e| unreachable!("built-in zones: {e}"));
    let edge = |name: &str, addr: &str, state| EdgeView {
        name: name.into(),
        addrs: vec![addr.parse().unwrap_or_else(|_| unreachable!())],
        state,
        load: Some(Load {
            connections: 10,
            max_connections: 100,
            ..Load::default()
        }),
        max_connections: None,
        max_egress_bps: None,
    };
    let regions = vec![
        RegionView {
            name: "a".into(),
            lat: 50.0,
            lon: 8.0,
            vips: vec![],
            edges: vec![
                edge("a1", "127.0.1.1", EdgeState::Up),
                edge("a2", "::1", EdgeState::Up),
            ],
        },
        RegionView {
            name: "b".into(),
            lat: 40.0,
            lon: -74.0,
            vips: vec![],
            edges: vec![edge("b1", "127.0.2.1", EdgeState::Down)],
        },
    ];
    Snapshot::new(Arc::new(zones), None, &regions, &config)
}

/// Runs one packet through the query path over UDP and TCP and checks what must hold for any
/// input: a response is a well-formed DNS response with the query's ID, within the UDP limit.
pub fn query_path(snap: &Snapshot, scratch: &mut Scratch, data: &[u8]) {
    let client: SocketAddr = ([127, 0, 1, 7], 5300).into();
    for transport in [Transport::Udp, Transport::Tcp] {
        let o = respond(snap, scratch, data, client, transport, Limit::Pass);
        if !o.send {
            continue;
        }
        let out = &scratch.out;
        assert!(out.len() >= 12, "response shorter than a header");
        assert_eq!(&out[..2], &data[..2], "response ID differs");
        assert!(out[2] & 0x80 != 0, "QR not set");
        if transport == Transport::Udp {
            assert!(out.len() <= 1232, "UDP response of {} bytes", out.len());
        }
        if let Err(e) = Message::from_vec(out) {
            panic!("unparseable response ({e}): {out:02x?}");
        }
    }
    let o = respond(snap, scratch, data, client, Transport::Udp, Limit::Slip);
    if o.send {
        let (tc, rcode) = (scratch.out[2] & 0x02 != 0, scratch.out[3] & 0x0f);
        assert!(
            tc || rcode != 0,
            "slip must be truncated (or an error answer)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_the_fuzz_seed_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/query");
        let snap = snapshot();
        let mut scratch = Scratch::new(1);
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("seed corpus") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read seed");
            query_path(&snap, &mut scratch, &data);
            n += 1;
        }
        assert!(n >= 8, "only {n} seeds");
    }
}
