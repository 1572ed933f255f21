//! Zone data: SOA, NS with glue, static records and the service names, prepared at load time
//! in both forms the query path writes: wire bytes (the batched UDP engine copies them) and
//! hickory-proto records (the hickory-server engine hands them to its encoder).

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};

use crate::config::{FieldError, ZoneConfig};
use crate::wire::{self, rtype};

/// Records of one type at one name, RDATA in wire form and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrSet {
    /// Record type.
    pub rtype: u16,
    /// TTL (the smallest of the records merged into the set).
    pub ttl: u32,
    /// RDATA in uncompressed wire form.
    pub rdatas: Vec<Vec<u8>>,
    /// The same RDATA as hickory-proto values, in the same order.
    pub data: Vec<RData>,
}

impl RrSet {
    fn new(rtype: u16, ttl: u32) -> RrSet {
        RrSet {
            rtype,
            ttl,
            rdatas: Vec::new(),
            data: Vec::new(),
        }
    }

    fn push(&mut self, rdata: Vec<u8>) -> Result<(), String> {
        let mut d = BinDecoder::new(&rdata);
        let len = Restrict::new(rdata.len() as u16);
        let value = RData::read(&mut d, RecordType::from(self.rtype), len)
            .map_err(|e| format!("RDATA of type {}: {e}", self.rtype))?;
        self.data.push(value);
        self.rdatas.push(rdata);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Node {
    rrsets: Vec<RrSet>,
    service: bool,
}

/// One zone we are authoritative for.
#[derive(Debug)]
pub struct Zone {
    /// Apex, lowercased wire form.
    pub apex: Vec<u8>,
    /// Number of labels of the apex (owner of the SOA in negative answers).
    pub apex_labels: usize,
    /// The SOA set (also at the apex node), for negative answers.
    pub soa: RrSet,
    /// TTL for the SOA in negative answers (RFC 2308: min of SOA TTL and MINIMUM).
    pub negative_ttl: u32,
    /// In-zone NS names (wire form and as a hickory name) with their A/AAAA glue.
    pub glue: Vec<Glue>,
}

#[derive(Debug)]
/// An in-zone name server with its addresses.
pub struct Glue {
    /// Its name, lowercased wire form.
    pub name: Vec<u8>,
    /// The same name for hickory-proto records.
    pub owner: Name,
    /// Its A and AAAA sets.
    pub sets: Vec<RrSet>,
}

/// What the zone data says about a question.
#[derive(Debug)]
pub enum Lookup<'z> {
    /// Not inside any of our zones.
    Refused,
    /// The name does not exist in this zone.
    NxDomain(&'z Zone),
    /// The name exists, without data of the asked type.
    NoData(&'z Zone),
    /// Static data (including SOA and NS at the apex; CNAME for any type).
    Records(&'z Zone, &'z RrSet),
    /// A service name asked for A, AAAA or ANY: the answer comes from the geo/load logic.
    Service(&'z Zone),
}

/// All zones.
#[derive(Debug, Default)]
pub struct Zones {
    zones: Vec<Zone>,
    apex_index: HashMap<Vec<u8>, usize>,
    nodes: HashMap<Vec<u8>, Node>,
}

impl Zones {
    /// Builds the zone data of a checked config; what remains to be found wrong here (a CNAME
    /// beside other data, a service name with static addresses) is reported against the zone.
    pub fn build(zones: &[ZoneConfig]) -> Result<Zones, FieldError> {
        let mut built = Zones::default();
        for (i, z) in zones.iter().enumerate() {
            built
                .add_zone(z)
                .map_err(|m| FieldError::new(format!("zones[{i}]"), m))?;
        }
        Ok(built)
    }

    fn add_zone(&mut self, z: &ZoneConfig) -> Result<(), String> {
        let apex = z.origin.clone();
        let mut soa_rdata = z.soa.mname.clone();
        soa_rdata.extend_from_slice(&z.soa.rname);
        for v in [
            z.soa.serial,
            z.soa.refresh,
            z.soa.retry,
            z.soa.expire,
            z.soa.minimum,
        ] {
            soa_rdata.extend_from_slice(&v.to_be_bytes());
        }
        let mut soa = RrSet::new(rtype::SOA, z.soa.ttl);
        soa.push(soa_rdata)?;
        let mut ns = RrSet::new(rtype::NS, z.ns_ttl);
        let mut glue = Vec::new();
        let zone_idx = self.zones.len();
        self.apex_index.insert(apex.clone(), zone_idx);
        self.node(&apex, &apex).rrsets.push(soa.clone());
        for n in &z.ns {
            ns.push(n.name.clone())?;
            if wire::is_subdomain(&n.name, &apex) {
                let sets = address_rrsets(&n.addrs, z.ns_ttl)?;
                let node = self.node(&n.name, &apex);
                for s in &sets {
                    if !node.rrsets.iter().any(|r| r.rtype == s.rtype) {
                        node.rrsets.push(s.clone());
                    }
                }
                let display = wire::name_to_string(&n.name);
                let owner = Name::from_ascii(&display).map_err(|e| format!("{display}: {e}"))?;
                glue.push(Glue {
                    name: n.name.clone(),
                    owner,
                    sets,
                });
            }
        }
        self.node(&apex, &apex).rrsets.push(ns);
        for name in &z.services {
            self.node(name, &apex).service = true;
        }
        for r in &z.records {
            let node = self.node(&r.owner, &apex);
            match node.rrsets.iter_mut().find(|s| s.rtype == r.rtype) {
                Some(set) => {
                    set.ttl = set.ttl.min(r.ttl);
                    set.push(r.rdata.clone())?;
                }
                None => {
                    let mut set = RrSet::new(r.rtype, r.ttl);
                    set.push(r.rdata.clone())?;
                    node.rrsets.push(set);
                }
            }
        }
        for (name, node) in &self.nodes {
            if !wire::is_subdomain(name, &apex) {
                continue;
            }
            let has_cname = node.rrsets.iter().any(|s| s.rtype == rtype::CNAME);
            if has_cname && (node.rrsets.len() > 1 || node.service) {
                return Err(format!(
                    "{}: a CNAME cannot coexist with other data",
                    wire::name_to_string(name)
                ));
            }
            if node.service
                && node
                    .rrsets
                    .iter()
                    .any(|s| s.rtype == rtype::A || s.rtype == rtype::AAAA)
            {
                return Err(format!(
                    "{}: a service name cannot also have static A/AAAA records",
                    wire::name_to_string(name)
                ));
            }
        }
        self.zones.push(Zone {
            apex_labels: label_count(&apex),
            apex,
            negative_ttl: z.soa.ttl.min(z.soa.minimum),
            soa,
            glue,
        });
        Ok(())
    }

    /// The node for `name`, created with every empty non-terminal between it and the apex.
    fn node(&mut self, name: &[u8], apex: &[u8]) -> &mut Node {
        let mut pos = 0usize;
        while name.len() - pos > apex.len() {
            pos += usize::from(name[pos]) + 1;
            self.nodes.entry(name[pos..].to_vec()).or_default();
        }
        self.nodes.entry(name.to_vec()).or_default()
    }

    /// Resolves a question against the zone data.
    pub fn lookup(&self, qname: &wire::LowerName, qtype: u16) -> Lookup<'_> {
        let name = qname.as_bytes();
        let Some(zone) = qname
            .label_starts()
            .find_map(|i| self.apex_index.get(&name[i..]))
            .and_then(|&i| self.zones.get(i))
        else {
            return Lookup::Refused;
        };
        let Some(node) = self.nodes.get(name) else {
            return Lookup::NxDomain(zone);
        };
        if node.service && matches!(qtype, rtype::A | rtype::AAAA | rtype::ANY) {
            return Lookup::Service(zone);
        }
        let found = if qtype == rtype::ANY {
            // RFC 8482: answer ANY with one RRset.
            node.rrsets.first()
        } else {
            node.rrsets
                .iter()
                .find(|s| s.rtype == qtype)
                .or_else(|| node.rrsets.iter().find(|s| s.rtype == rtype::CNAME))
        };
        match found {
            Some(set) => Lookup::Records(zone, set),
            None => Lookup::NoData(zone),
        }
    }

    /// Is this name a service name of some zone (used by tests and check-config output)?
    pub fn service_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.service)
            .map(|(k, _)| wire::name_to_string(k))
            .collect();
        v.sort();
        v
    }
}

/// Labels of a wire-form name, root excluded.
fn label_count(name: &[u8]) -> usize {
    let mut n = 0;
    let mut pos = 0usize;
    while let Some(&len) = name.get(pos) {
        if len == 0 {
            break;
        }
        n += 1;
        pos += usize::from(len) + 1;
    }
    n
}

fn address_rrsets(addrs: &[IpAddr], ttl: u32) -> Result<Vec<RrSet>, String> {
    let mut v4 = RrSet::new(rtype::A, ttl);
    let mut v6 = RrSet::new(rtype::AAAA, ttl);
    for a in addrs {
        match a {
            IpAddr::V4(a) => v4.push(a.octets().to_vec())?,
            IpAddr::V6(a) => v6.push(a.octets().to_vec())?,
        }
    }
    Ok([v4, v6]
        .into_iter()
        .filter(|s| !s.rdatas.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn zones() -> Zones {
        let c = Config::parse(
            r#"
            [[zones]]
            origin = "example.com"
            services = ["live", "pub.live"]
            soa = { rname = "hostmaster.example.com", minimum = 30 }
            ns = [{ name = "ns1.example.com", addrs = ["127.0.0.53", "::1"] },
                  { name = "ns.other.net" }]
            records = [
              { name = "www", type = "CNAME", data = "live.example.com." },
              { name = "@", type = "TXT", data = "\"hello\"" },
              { name = "a.b.deep", type = "MX", data = "10 mail.example.com." },
            ]
            "#,
        )
        .unwrap();
        Zones::build(&c.zones).unwrap()
    }

    fn name(s: &str) -> wire::LowerName {
        let mut p = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend(wire::name_from_str(s).unwrap());
        p.extend([0, 1, 0, 1]);
        wire::parse_query(&p).unwrap().qname
    }

    #[test]
    fn conflicts_are_reported_against_the_zone() {
        let c = Config::parse(
            r#"
            [[zones]]
            origin = "example.com"
            soa = { rname = "hostmaster.example.com" }
            ns = [{ name = "ns.other.net" }]
            [[zones]]
            origin = "example.org"
            services = ["live"]
            soa = { rname = "hostmaster.example.org" }
            ns = [{ name = "ns.other.net" }]
            records = [{ name = "live", type = "CNAME", data = "x.example.com." }]
            "#,
        )
        .unwrap();
        let e = Zones::build(&c.zones).unwrap_err();
        assert_eq!(e.field, "zones[1]");
        assert!(e.message.contains("live.example.org.: a CNAME"), "{e}");
    }

    #[test]
    fn lookups() {
        let z = zones();
        assert!(matches!(
            z.lookup(&name("example.org"), rtype::A),
            Lookup::Refused
        ));
        assert!(matches!(z.lookup(&name("com"), rtype::A), Lookup::Refused));
        assert!(matches!(
            z.lookup(&name("live.example.com"), rtype::A),
            Lookup::Service(_)
        ));
        assert!(matches!(
            z.lookup(&name("pub.live.example.com"), rtype::AAAA),
            Lookup::Service(_)
        ));
        assert!(matches!(
            z.lookup(&name("live.example.com"), rtype::MX),
            Lookup::NoData(_)
        ));
        assert!(matches!(
            z.lookup(&name("nope.example.com"), rtype::A),
            Lookup::NxDomain(_)
        ));
        // empty non-terminal
        assert!(matches!(
            z.lookup(&name("deep.example.com"), rtype::A),
            Lookup::NoData(_)
        ));
        assert!(matches!(
            z.lookup(&name("b.deep.example.com"), rtype::A),
            Lookup::NoData(_)
        ));
        match z.lookup(&name("example.com"), rtype::SOA) {
            Lookup::Records(zone, set) => {
                assert_eq!(set.rtype, rtype::SOA);
                assert_eq!(zone.negative_ttl, 30);
                assert_eq!(zone.glue.len(), 1);
                assert_eq!(zone.apex_labels, 2);
                assert_eq!(zone.glue[0].owner.to_string(), "ns1.example.com.");
                assert_eq!(set.data.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        match z.lookup(&name("www.example.com"), rtype::A) {
            Lookup::Records(_, set) => assert_eq!(set.rtype, rtype::CNAME),
            other => panic!("{other:?}"),
        }
        match z.lookup(&name("ns1.example.com"), rtype::AAAA) {
            Lookup::Records(_, set) => assert_eq!(set.rdatas[0].len(), 16),
            other => panic!("{other:?}"),
        }
        match z.lookup(&name("example.com"), rtype::ANY) {
            Lookup::Records(_, set) => assert_eq!(set.rtype, rtype::SOA),
            other => panic!("{other:?}"),
        }
    }
}
