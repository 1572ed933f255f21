//! The query path, sans IO: bytes in, bytes out. Parses the query, looks the name up in the
//! zones, locates the client (ECS or source address), asks the Automap plan for addresses and
//! writes the response (with TC when it does not fit the UDP payload).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ipnet::IpNet;

use crate::automap::{Family, Plan, RegionView, Rng};
use crate::config::{Config, RateLimitConfig};
use crate::ecs::ClientSubnet;
use crate::geo::GeoDb;
use crate::region_map::{HomeRules, RegionMap};
use crate::wire::{
    self, Edns, LowerName, Owner, ParseError, QNAME_OFFSET, Query, Rcode, ResponseHeader,
    ResponseWriter, rtype,
};
use crate::zone::{Glue, Lookup, RrSet, Zone, Zones};

/// How the query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Over UDP: rate limited, truncated to the payload size.
    Udp,
    /// Over TCP: whole answers.
    Tcp,
}

/// What the rate limiter decided for this client (UDP only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Answer normally.
    Pass,
    /// Answer with an empty truncated response so a real client retries over TCP.
    Slip,
}

/// Everything a query needs, swapped atomically on any change.
#[derive(Debug)]
pub struct Snapshot {
    /// Zone data.
    pub zones: Arc<Zones>,
    /// Which addresses each region answers with.
    pub plan: Plan,
    /// Every client address's home region and widest ECS scope.
    homes: Arc<RegionMap>,
    /// TTL of service answers.
    pub ttl: u32,
    /// Rate limiting in force (UDP workers rebuild their limiter when it changes).
    pub rate_limit: RateLimitConfig,
    /// Answer counters by plan region index (filled in by the control loop).
    pub region_answers: Vec<Arc<AtomicU64>>,
}

impl Snapshot {
    /// Combines zone data, the geo database, the current region state and the policy. Overrides
    /// naming regions that do not exist (e.g. not yet announced by the cluster) are skipped.
    pub fn new(
        zones: Arc<Zones>,
        geo: Option<Arc<GeoDb>>,
        regions: &[RegionView],
        config: &Config,
    ) -> Snapshot {
        let plan = Plan::build(regions, &config.answer);
        let o = &config.geo.overrides;
        let by_code = |map: &BTreeMap<[u8; 2], String>| {
            map.iter()
                .filter_map(|(k, v)| Some((*k, plan.region_index(v)?)))
                .collect()
        };
        let mut subnets: Vec<(IpNet, usize)> = o
            .subnet
            .iter()
            .filter_map(|(k, v)| Some((k.trunc(), plan.region_index(v)?)))
            .collect();
        subnets.sort_by_key(|s| std::cmp::Reverse(s.0.prefix_len()));
        let rules = HomeRules {
            coordinates: plan.coordinates(),
            country: by_code(&o.country),
            continent: by_code(&o.continent),
            subnets,
            default_region: match &config.geo.default_region {
                Some(name) => plan.region_index(name),
                None => (plan.region_count() > 0).then_some(0),
            },
        };
        let homes = match &geo {
            Some(geo) => geo.region_map(&rules),
            None => Arc::new(RegionMap::build(None, &rules)),
        };
        Snapshot {
            zones,
            plan,
            homes,
            ttl: config.answer.ttl,
            rate_limit: config.rate_limit.clone(),
            region_answers: Vec::new(),
        }
    }
}

/// Per-worker mutable state: the output buffer and the generator of weighted choices.
pub struct Scratch {
    /// The response being written (the batched engine sends it from here).
    pub out: Vec<u8>,
    rng: Rng,
}

impl Scratch {
    /// An empty buffer; `seed` starts the generator of weighted choices.
    pub fn new(seed: u64) -> Self {
        Scratch {
            out: Vec::with_capacity(4096),
            rng: Rng::new(seed),
        }
    }
}

/// What happened, for metrics and logs. `send` false means: send nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether a response is sent at all.
    pub send: bool,
    /// Response code sent.
    pub rcode: Rcode,
    /// Question type (0 when unparseable).
    pub qtype: u16,
    /// Region whose addresses were answered.
    pub region: Option<usize>,
    /// Sent truncated (too large for UDP, or a rate-limit slip).
    pub truncated: bool,
}

/// A question for the engine, whichever parser read it (our `wire` codec or hickory-proto).
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The question name, lowercased.
    pub qname: &'a LowerName,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// The OPT record, if the query had one.
    pub edns: Option<Edns>,
}

impl<'a> From<&'a Query<'_>> for Question<'a> {
    fn from(q: &'a Query<'_>) -> Self {
        Question {
            qname: &q.qname,
            qtype: q.qtype,
            qclass: q.qclass,
            edns: q.edns,
        }
    }
}

/// What the zone data and the geo/load logic say about a question.
#[derive(Debug)]
pub struct Resolved<'s> {
    /// Response code.
    pub rcode: Rcode,
    /// AA flag: set for names inside our zones.
    pub authoritative: bool,
    /// The records.
    pub body: Body<'s>,
    /// The client-subnet option to echo, with the scope the answer is valid for.
    pub client_subnet: Option<ClientSubnet>,
    /// Region whose addresses were answered.
    pub region: Option<usize>,
}

/// The records of an answer.
#[derive(Debug)]
pub enum Body<'z> {
    /// No records (REFUSED, BADVERS).
    Empty,
    /// NXDOMAIN or NODATA: the zone's SOA in the authority section.
    Negative(&'z Zone),
    /// Static data; NS at the apex also carries the glue.
    Set(&'z Zone, &'z RrSet),
    /// Service addresses.
    Addrs(Vec<IpAddr>),
}

impl Resolved<'_> {
    /// The glue to add: present only for the apex NS set.
    pub fn glue(&self, q: &Question<'_>) -> &[Glue] {
        match self.body {
            Body::Set(zone, set)
                if set.rtype == rtype::NS && q.qname.as_bytes() == zone.apex.as_slice() =>
            {
                &zone.glue
            }
            _ => &[],
        }
    }
}

/// The engine: answers a question for a client (the resolver's address; the ECS option of the
/// question takes precedence). No I/O, no parsing, no encoding.
pub fn resolve<'s>(
    snap: &'s Snapshot,
    scratch: &mut Scratch,
    q: &Question<'_>,
    client: IpAddr,
) -> Resolved<'s> {
    let client_subnet = q.edns.and_then(|e| e.client_subnet);
    let mut r = Resolved {
        rcode: Rcode::NoError,
        authoritative: true,
        body: Body::Empty,
        client_subnet: None,
        region: None,
    };
    let mut scope = 0u8;
    if q.edns.is_some_and(|e| e.version > 0) {
        r.rcode = Rcode::BadVers;
        r.authoritative = false;
        return r;
    }
    if q.qclass != wire::CLASS_IN || matches!(q.qtype, rtype::AXFR | rtype::IXFR) {
        r.rcode = Rcode::Refused;
        r.authoritative = false;
        return r;
    }
    r.body = match snap.zones.lookup(q.qname, q.qtype) {
        Lookup::Refused => {
            r.rcode = Rcode::Refused;
            r.authoritative = false;
            return r;
        }
        Lookup::NxDomain(zone) => {
            r.rcode = Rcode::NxDomain;
            Body::Negative(zone)
        }
        Lookup::NoData(zone) => Body::Negative(zone),
        Lookup::Records(zone, set) => Body::Set(zone, set),
        Lookup::Service(zone) => {
            let family = if q.qtype == rtype::AAAA {
                Family::V6
            } else {
                Family::V4
            };
            let ecs = client_subnet.filter(|cs| cs.source_prefix > 0);
            let (who, who_prefix) = match ecs {
                Some(cs) => (cs.addr, cs.source_prefix),
                None => (client.to_canonical(), 0),
            };
            let (home, widest) = snap.homes.lookup(who);
            if ecs.is_some() {
                scope = widest;
            }
            let choice = home.map(|h| {
                let hash = client_hash(who, who_prefix);
                snap.plan.choose(h, family, hash, &mut scratch.rng)
            });
            r.region = choice.as_ref().and_then(|c| c.region);
            match choice {
                Some(c) if !c.addrs.is_empty() => Body::Addrs(c.addrs),
                _ => Body::Negative(zone),
            }
        }
    };
    // ECS is echoed only when the answer is authoritative data (tailored or not).
    r.client_subnet = client_subnet.map(|c| c.with_scope(scope));
    r
}

/// The largest UDP response for a question: its EDNS payload size (at least 512, at most
/// [`wire::MAX_UDP_PAYLOAD`]), or 512 without EDNS.
pub fn udp_limit(edns: Option<Edns>) -> usize {
    usize::from(edns.map_or(512, |e| e.udp_payload.clamp(512, wire::MAX_UDP_PAYLOAD)))
}

/// Handles one query packet; the response (if any) is left in `scratch.out`.
pub fn respond(
    snap: &Snapshot,
    scratch: &mut Scratch,
    packet: &[u8],
    client: SocketAddr,
    transport: Transport,
    limit: Limit,
) -> Outcome {
    let q = match wire::parse_query(packet) {
        Ok(q) => q,
        Err(ParseError::Drop) => {
            return Outcome {
                send: false,
                rcode: Rcode::FormErr,
                qtype: 0,
                region: None,
                truncated: false,
            };
        }
        Err(ParseError::FormErr { id, opcode, rd, cd })
        | Err(ParseError::NotImp { id, opcode, rd, cd }) => {
            let rcode = if opcode == 0 {
                Rcode::FormErr
            } else {
                Rcode::NotImp
            };
            let header = ResponseHeader {
                id,
                opcode,
                authoritative: false,
                truncated: false,
                recursion_desired: rd,
                checking_disabled: cd,
                rcode,
            };
            ResponseWriter::new(&mut scratch.out, header, &[]).finish();
            return Outcome {
                send: true,
                rcode,
                qtype: 0,
                region: None,
                truncated: false,
            };
        }
    };
    let mut outcome = Outcome {
        send: true,
        rcode: Rcode::NoError,
        qtype: q.qtype,
        region: None,
        truncated: false,
    };
    let question = Question::from(&q);
    if limit == Limit::Slip {
        write_truncated(&mut scratch.out, &q, question.edns);
        outcome.truncated = true;
        return outcome;
    }
    let r = resolve(snap, scratch, &question, client.ip());
    outcome.rcode = r.rcode;
    outcome.region = r.region;
    write_response(&mut scratch.out, snap, &q, &question, &r);
    if transport == Transport::Udp && scratch.out.len() > udp_limit(question.edns) {
        write_truncated(&mut scratch.out, &q, question.edns);
        outcome.truncated = true;
    }
    outcome
}

/// The header fields of a query that its response repeats.
pub trait QueryHeader {
    /// Message ID.
    fn id(&self) -> u16;
    /// RD flag.
    fn recursion_desired(&self) -> bool;
    /// CD flag.
    fn checking_disabled(&self) -> bool;
    /// The question section as received.
    fn question(&self) -> &[u8];
}

impl QueryHeader for Query<'_> {
    fn id(&self) -> u16 {
        self.id
    }
    fn recursion_desired(&self) -> bool {
        self.recursion_desired
    }
    fn checking_disabled(&self) -> bool {
        self.checking_disabled
    }
    fn question(&self) -> &[u8] {
        self.question
    }
}

/// Writes the wire form of an answer into `out`.
pub fn write_response(
    out: &mut Vec<u8>,
    snap: &Snapshot,
    h: &impl QueryHeader,
    q: &Question<'_>,
    r: &Resolved<'_>,
) {
    let header = ResponseHeader {
        id: h.id(),
        opcode: 0,
        authoritative: r.authoritative,
        truncated: false,
        recursion_desired: h.recursion_desired(),
        checking_disabled: h.checking_disabled(),
        rcode: r.rcode,
    };
    let mut w = ResponseWriter::new(out, header, h.question());
    match &r.body {
        Body::Empty => {}
        Body::Negative(zone) => {
            w.section(1);
            let apex_at = QNAME_OFFSET + (q.qname.as_bytes().len() - zone.apex.len()) as u16;
            for rdata in &zone.soa.rdatas {
                w.record(
                    Owner::Pointer(apex_at),
                    rtype::SOA,
                    zone.negative_ttl,
                    rdata,
                );
            }
        }
        Body::Set(_, set) => {
            write_set(&mut w, Owner::Pointer(QNAME_OFFSET), set);
            let glue = r.glue(q);
            if !glue.is_empty() {
                w.section(2);
                for g in glue {
                    for s in &g.sets {
                        write_set(&mut w, Owner::Name(&g.name), s);
                    }
                }
            }
        }
        Body::Addrs(addrs) => {
            for a in addrs {
                match a {
                    IpAddr::V4(v4) => w.record(
                        Owner::Pointer(QNAME_OFFSET),
                        rtype::A,
                        snap.ttl,
                        &v4.octets(),
                    ),
                    IpAddr::V6(v6) => w.record(
                        Owner::Pointer(QNAME_OFFSET),
                        rtype::AAAA,
                        snap.ttl,
                        &v6.octets(),
                    ),
                }
            }
        }
    }
    if let Some(e) = q.edns {
        w.opt(r.rcode, e.dnssec_ok, r.client_subnet.as_ref());
    }
    w.finish();
}

fn write_set(w: &mut ResponseWriter<'_>, owner: Owner<'_>, set: &RrSet) {
    for rdata in &set.rdatas {
        w.record(owner, set.rtype, set.ttl, rdata);
    }
}

/// An empty response with TC set: question and OPT only.
pub fn write_truncated(out: &mut Vec<u8>, h: &impl QueryHeader, edns: Option<Edns>) {
    let header = ResponseHeader {
        id: h.id(),
        opcode: 0,
        authoritative: true,
        truncated: true,
        recursion_desired: h.recursion_desired(),
        checking_disabled: h.checking_disabled(),
        rcode: Rcode::NoError,
    };
    let mut w = ResponseWriter::new(out, header, h.question());
    if let Some(e) = edns {
        w.opt(Rcode::NoError, e.dnssec_ok, None);
    }
    w.finish();
}

/// A stable hash of the client's network (/24 or /56, or the ECS prefix if shorter), so one
/// client network keeps its spill region.
fn client_hash(ip: IpAddr, prefix: u8) -> u64 {
    let net = match ip {
        IpAddr::V4(_) => IpNet::new(ip, if prefix > 0 { prefix.min(24) } else { 24 }),
        IpAddr::V6(_) => IpNet::new(ip, if prefix > 0 { prefix.min(56) } else { 56 }),
    };
    let bytes: [u8; 16] = match net.map(|n| n.network()) {
        Ok(IpAddr::V4(a)) => a.to_ipv6_mapped().octets(),
        Ok(IpAddr::V6(a)) => a.octets(),
        Err(_) => [0; 16],
    };
    // FNV-1a, then a SplitMix finaliser to spread the bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Rng::new(h).next_u64()
}
