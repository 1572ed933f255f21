//! The query path as a single function over arbitrary bytes, for the fuzz target
//! (`dns/fuzz`) and the unit test that replays its seed corpus: both engines (the batched
//! engine's codec and hickory-server with our handler) over UDP and TCP, checked against each
//! other.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use hickory_proto::op::Message;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use crate::answer::{Limit, Scratch, Snapshot, Transport, respond};
use crate::automap::{EdgeState, EdgeView, Load, RegionView};
use crate::config::Config;
use crate::handler::{Handler, serve_message};
use crate::metrics::Metrics;
use crate::server::Shared;
use crate::wire::Rcode;
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

[rate_limit]
responses_per_second = 0
"#;

/// A snapshot with two regions (one up, one down) and no geo database.
pub fn snapshot() -> Snapshot {
    let config = Config::parse(CONFIG).unwrap_or_else(|e| unreachable!("built-in config: {e}"));
    let zones = Zones::build(&config.zones).unwrap_or_else(|e| unreachable!("built-in zones: {e}"));
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

/// Both engines over one snapshot.
pub struct Harness {
    snap: Arc<Snapshot>,
    handler: Handler,
}

impl Default for Harness {
    fn default() -> Self {
        let shared = Arc::new(Shared::new(snapshot(), Arc::new(Metrics::default())));
        Harness {
            snap: shared.load(),
            handler: Handler::new(shared),
        }
    }
}

/// A response handler that keeps the encoded message, with hickory's size limits.
#[derive(Clone)]
struct Capture {
    udp: bool,
    sent: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = match (self.udp, response.edns()) {
            (false, _) => u16::MAX,
            (true, Some(e)) => e.max_payload(),
            (true, None) => 512,
        };
        let mut buf = Vec::new();
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        let info = response.destructive_emit(&mut encoder)?;
        *self.sent.lock().unwrap_or_else(|e| e.into_inner()) = Some(buf);
        Ok(info)
    }
}

/// Checks what must hold for any response: a well-formed DNS response with the query's ID,
/// within the UDP limit.
fn check_response(out: &[u8], query: &[u8], transport: Transport) -> Message {
    assert!(out.len() >= 12, "response shorter than a header");
    assert_eq!(&out[..2], &query[..2], "response ID differs");
    assert!(out[2] & 0x80 != 0, "QR not set");
    if transport == Transport::Udp {
        assert!(out.len() <= 1232, "UDP response of {} bytes", out.len());
    }
    match Message::from_vec(out) {
        Ok(m) => m,
        Err(e) => panic!("unparseable response ({e}): {out:02x?}"),
    }
}

impl Harness {
    /// The hickory-server engine's response to one message, if any.
    fn hickory(&self, data: &[u8], client: SocketAddr, transport: Transport) -> Option<Vec<u8>> {
        let (udp, protocol) = match transport {
            Transport::Udp => (true, Protocol::Udp),
            Transport::Tcp => (false, Protocol::Tcp),
        };
        let capture = Capture {
            udp,
            sent: Arc::default(),
        };
        let fut = serve_message(
            &self.handler,
            data.to_vec(),
            client,
            protocol,
            capture.clone(),
        );
        // Nothing in the handler waits: one poll completes it.
        let done = pin!(fut).poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(done, Poll::Ready(())), "handler did not complete");
        capture
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Runs one packet through both engines over UDP and TCP. Every response must be well
    /// formed; where the batched engine's strict parser accepts the query, hickory's engine
    /// must give the same response (header, sections, OPT); where it refuses it with FORMERR,
    /// so must hickory's engine. Returns the batched engine's response code over UDP (`None`:
    /// no response).
    pub fn query_path(&self, scratch: &mut Scratch, data: &[u8]) -> Option<Rcode> {
        let mut udp_rcode = None;
        let client: SocketAddr = ([127, 0, 1, 7], 5300).into();
        for transport in [Transport::Udp, Transport::Tcp] {
            let o = respond(&self.snap, scratch, data, client, transport, Limit::Pass);
            let ours = o
                .send
                .then(|| check_response(&scratch.out, data, transport));
            let theirs = self
                .hickory(data, client, transport)
                .map(|out| check_response(&out, data, transport));
            if transport == Transport::Udp && o.send {
                udp_rcode = Some(o.rcode);
            }
            match (o.send, o.rcode, ours, theirs) {
                (false, _, _, theirs) => {
                    assert!(theirs.is_none(), "hickory engine answered a dropped packet")
                }
                (true, Rcode::FormErr, _, theirs) => {
                    let rcode = theirs.map(|m| u16::from(m.metadata.response_code));
                    assert_eq!(
                        rcode,
                        Some(1),
                        "{transport:?}: FORMERR vs {rcode:?} from the hickory engine"
                    );
                }
                (true, Rcode::NotImp, _, theirs) => {
                    let rcode = theirs.map(|m| u16::from(m.metadata.response_code));
                    assert!(
                        matches!(rcode, Some(1 | 4)),
                        "NOTIMP vs {rcode:?} from the hickory engine"
                    );
                }
                (true, _, Some(ours), Some(theirs)) => {
                    assert_eq!(ours.metadata, theirs.metadata, "{transport:?} header");
                    assert_eq!(ours.queries, theirs.queries, "{transport:?} question");
                    assert_eq!(ours.answers, theirs.answers, "{transport:?} answers");
                    assert_eq!(
                        ours.authorities, theirs.authorities,
                        "{transport:?} authority"
                    );
                    assert_eq!(
                        ours.additionals, theirs.additionals,
                        "{transport:?} additional"
                    );
                    assert_eq!(ours.edns, theirs.edns, "{transport:?} OPT");
                }
                (true, rcode, _, theirs) => {
                    panic!("{transport:?}: {rcode:?} from ours, {theirs:?} from hickory's engine")
                }
            }
        }
        let o = respond(
            &self.snap,
            scratch,
            data,
            client,
            Transport::Udp,
            Limit::Slip,
        );
        if o.send {
            let (tc, rcode) = (scratch.out[2] & 0x02 != 0, scratch.out[3] & 0x0f);
            assert!(
                tc || rcode != 0,
                "slip must be truncated (or an error answer)"
            );
        }
        udp_rcode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_the_fuzz_seed_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/query");
        let harness = Harness::default();
        let mut scratch = Scratch::new(1);
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("seed corpus") {
            let data = std::fs::read(entry.expect("entry").path()).expect("read seed");
            harness.query_path(&mut scratch, &data);
            n += 1;
        }
        assert!(n >= 8, "only {n} seeds");
    }

    /// `live.example.com A` with RD, and an OPT record holding `options` when given.
    fn live_query(options: Option<&[u8]>) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["live", "example", "com"] {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.extend([0, 0, 1, 0, 1]);
        if let Some(options) = options {
            q[11] = 1;
            q.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
            q.extend((options.len() as u16).to_be_bytes());
            q.extend(options);
        }
        q
    }

    #[test]
    fn both_engines_refuse_long_ecs_addresses_and_trailing_bytes() {
        let harness = Harness::default();
        let mut scratch = Scratch::new(1);
        let mut run = |q: &[u8]| harness.query_path(&mut scratch, q);
        let valid = [0, 8, 0, 7, 0, 1, 24, 0, 127, 0, 1];
        assert_eq!(run(&live_query(Some(&valid))), Some(Rcode::NoError));
        assert_eq!(run(&live_query(None)), Some(Rcode::NoError));
        // /24 with all four octets: RFC 7871 §6 wants the address cut to three.
        let four_octets = [0, 8, 0, 8, 0, 1, 24, 0, 127, 0, 1, 0];
        assert_eq!(run(&live_query(Some(&four_octets))), Some(Rcode::FormErr));
        // IPv6 /56 sent as a whole address.
        let mut v6 = vec![0, 8, 0, 20, 0, 2, 56, 0];
        v6.extend(
            "2001:db8:1::"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        assert_eq!(run(&live_query(Some(&v6))), Some(Rcode::FormErr));
        // /20 with a bit set past the prefix.
        let host_bits = [0, 8, 0, 7, 0, 1, 20, 0, 127, 0, 0x11];
        assert_eq!(run(&live_query(Some(&host_bits))), Some(Rcode::FormErr));
        // A byte after the last record, with and without EDNS.
        for mut q in [live_query(Some(&valid)), live_query(None)] {
            q.push(0);
            assert_eq!(run(&q), Some(Rcode::FormErr));
        }
    }

    /// Deterministic mutations of the seeds (byte changes, cuts, appended bytes) through
    /// both engines: a small in-process fuzz run for every `cargo test`.
    #[test]
    fn mutated_seeds_agree_between_engines() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/query");
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .expect("seed corpus")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("read seed"))
            .collect();
        let harness = Harness::default();
        let mut scratch = Scratch::new(1);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000usize {
            let mut data = seeds[round % seeds.len()].clone();
            for _ in 0..1 + next() % 3 {
                let r = next();
                match r % 4 {
                    0 | 1 if !data.is_empty() => {
                        let at = (r >> 8) as usize % data.len();
                        data[at] = (r >> 32) as u8;
                    }
                    2 if !data.is_empty() => data.truncate((r >> 8) as usize % data.len()),
                    _ => data.push((r >> 8) as u8),
                }
            }
            harness.query_path(&mut scratch, &data);
        }
    }
}
