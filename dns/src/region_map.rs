//! The home region of every client address, worked out when what decides it changes (the geo
//! database, the regions' coordinates, the overrides) instead of once per query.
//!
//! Each family's address space is cut into runs: maximal ranges of consecutive addresses with
//! the same home region. A query's home region is a binary search over the run starts, and
//! its ECS scope is the shortest prefix whose network around the client lies inside the
//! client's run: the widest network in which no address gets another region (gdnsd answers
//! the same way). A resolver caches an answer for the scope's network (RFC 7871 §7.3.1), so
//! a wide scope saves it one query per client network inside it; a narrower network than the
//! database's (e.g. the database's /31) would make it ask again for every neighbour.
//!
//! Within one region the answer still varies — the weighted draw of edges, and the spill
//! share chosen by a hash of the client's /24 (/56) — but those spread load, they do not
//! follow the client's location; a resolver that caches one draw for a wide network is like
//! one more client, so the scope does not narrow for them.
//!
//! The scope may come out longer than the query's source prefix: the source network then
//! straddles regions and the answer is right only for a part of it. RFC 7871 §7.2.1 allows
//! that and tells the resolver to send that many bits in later queries for the network;
//! capping the scope at the source prefix would instead claim the answer for addresses that
//! belong to another region.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::automap;
use crate::geo::{GeoDb, Location};

/// What decides a client's home region, besides the geo database.
#[derive(Debug, Clone, PartialEq)]
pub struct HomeRules {
    /// Latitude and longitude of the plan's regions, by index: the nearest one is home.
    pub coordinates: Vec<(f64, f64)>,
    /// Region by ISO country code (overrides the distance).
    pub country: HashMap<[u8; 2], usize>,
    /// Region by continent code (after the country, before the distance).
    pub continent: HashMap<[u8; 2], usize>,
    /// Region by client network, most specific first: the first that holds the client wins,
    /// before any location.
    pub subnets: Vec<(IpNet, usize)>,
    /// Region of clients without a location.
    pub default_region: Option<usize>,
}

impl HomeRules {
    /// The home region of a client at `location` (`None`: not in the database).
    pub fn region_of(&self, location: Option<&Location>) -> Option<usize> {
        let Some(loc) = location else {
            return self.default_region;
        };
        loc.country
            .and_then(|c| self.country.get(&c))
            .or_else(|| loc.continent.and_then(|c| self.continent.get(&c)))
            .copied()
            .or_else(|| automap::nearest(&self.coordinates, loc.lat, loc.lon))
            .or(self.default_region)
    }
}

/// A run: its first address (an integer of the family's width) and its home region.
type Run = (u128, Option<usize>);

/// One family's address space in runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Runs {
    /// Address width: 32 or 128.
    bits: u8,
    /// Ascending by first address; the first run starts at 0, each ends where the next starts.
    runs: Vec<Run>,
}

/// The host part of a network with `host_bits` host bits.
pub fn host_mask(host_bits: u8) -> u128 {
    match host_bits {
        0 => 0,
        h => u128::MAX >> (128 - u32::from(h.min(128))),
    }
}

impl Runs {
    /// One family's runs: the database's networks in address order (gaps get the default
    /// region), then the subnet overrides painted over them, least specific first.
    fn build(geo: Option<&GeoDb>, rules: &HomeRules, ipv4: bool) -> Runs {
        let bits = if ipv4 { 32 } else { 128 };
        let mut runs: Vec<Run> = Vec::new();
        let append = |runs: &mut Vec<Run>, start: u128, region: Option<usize>| {
            if runs.last().is_none_or(|last| last.1 != region) {
                runs.push((start, region));
            }
        };
        // The first address no network has covered yet; `None` once the space is covered.
        let mut next = Some(0u128);
        if let Some(geo) = geo {
            geo.for_each_network(
                ipv4,
                |loc| rules.region_of(loc),
                |first, host_bits, region| {
                    let Some(from) = next.filter(|&from| first >= from) else {
                        return; // out of order: not from a well-formed tree
                    };
                    if first > from {
                        append(&mut runs, from, rules.default_region);
                    }
                    append(&mut runs, first, region);
                    next = (first | host_mask(host_bits)).checked_add(1);
                },
            );
        }
        if let Some(from) = next {
            append(&mut runs, from, rules.default_region);
        }
        let mut runs = Runs { bits, runs };
        for (net, region) in rules.subnets.iter().rev() {
            let (first, host_bits) = match (net, ipv4) {
                (IpNet::V4(n), true) => (u128::from(u32::from(n.network())), 32 - n.prefix_len()),
                (IpNet::V6(n), false) => (u128::from(n.network()), 128 - n.prefix_len()),
                _ => continue,
            };
            runs.paint(first, first | host_mask(host_bits), Some(*region));
        }
        debug_assert!(runs.runs.first().is_some_and(|r| r.0 == 0));
        runs
    }

    fn last(&self) -> u128 {
        host_mask(self.bits)
    }

    /// Index of the run holding `addr`.
    fn index_of(&self, addr: u128) -> usize {
        // The first run starts at 0, so at least one start is <= addr.
        self.runs.partition_point(|r| r.0 <= addr) - 1
    }

    /// Gives `first..=last` one region.
    fn paint(&mut self, first: u128, last: u128, region: Option<usize>) {
        let after = last
            .checked_add(1)
            .map(|next| (next, self.runs[self.index_of(next)].1));
        let mut painted: Vec<Run> = self.runs.iter().copied().filter(|r| r.0 < first).collect();
        painted.push((first, region));
        if let Some(after) = after {
            painted.push(after);
            painted.extend(self.runs.iter().copied().filter(|r| r.0 > after.0));
        }
        painted.dedup_by(|later, earlier| later.1 == earlier.1);
        self.runs = painted;
    }

    /// The home region of `addr` and the shortest prefix whose network around `addr` lies in
    /// its run.
    fn lookup(&self, addr: u128) -> (Option<usize>, u8) {
        let i = self.index_of(addr);
        let first = self.runs[i].0;
        let last = self.runs.get(i + 1).map_or(self.last(), |next| next.0 - 1);
        let fits = |prefix: u8| {
            let host = host_mask(self.bits - prefix);
            addr & !host >= first && addr | host <= last
        };
        // A network that fits still fits when it is made longer: bisect.
        let (mut lo, mut hi) = (0u8, self.bits);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        (self.runs[i].1, lo)
    }
}

/// The home region and widest scope of every address of both families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionMap {
    v4: Runs,
    v6: Runs,
}

impl RegionMap {
    /// Walks the database (if any) once per family; the cost is proportional to its number of
    /// networks, the result to the number of region changes along the address space.
    pub fn build(geo: Option<&GeoDb>, rules: &HomeRules) -> RegionMap {
        RegionMap {
            v4: Runs::build(geo, rules, true),
            v6: Runs::build(geo, rules, false),
        }
    }

    /// The home region of a client address and the prefix length of the widest network
    /// around it in which every address has that home region (in the address's own family:
    /// an IPv4-mapped IPv6 address is looked up as IPv4, its scope counted in IPv6 bits).
    pub fn lookup(&self, ip: IpAddr) -> (Option<usize>, u8) {
        match (ip, ip.to_canonical()) {
            (IpAddr::V6(_), IpAddr::V4(v4)) => {
                let (region, scope) = self.v4.lookup(u128::from(u32::from(v4)));
                (region, scope + 96)
            }
            (_, IpAddr::V4(v4)) => self.v4.lookup(u128::from(u32::from(v4))),
            (_, IpAddr::V6(v6)) => self.v6.lookup(u128::from(v6)),
        }
    }

    /// Number of runs (IPv4, IPv6), for the log line at load.
    pub fn run_counts(&self) -> (usize, usize) {
        (self.v4.runs.len(), self.v6.runs.len())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::config::GeoConfig;
    use crate::geo::{GeoEntry, Layout, write_demo_mmdb, write_mmdb};

    const FRANKFURT: (f64, f64) = (50.11, 8.68);
    const VIRGINIA: (f64, f64) = (38.95, -77.45);
    const SINGAPORE: (f64, f64) = (1.35, 103.82);

    fn rules(coordinates: &[(f64, f64)], subnets: &[(&str, usize)]) -> HomeRules {
        let mut subnets: Vec<(IpNet, usize)> = subnets
            .iter()
            .map(|(net, region)| (net.parse::<IpNet>().unwrap().trunc(), *region))
            .collect();
        subnets.sort_by_key(|s| std::cmp::Reverse(s.0.prefix_len()));
        HomeRules {
            coordinates: coordinates.to_vec(),
            country: HashMap::new(),
            continent: HashMap::new(),
            subnets,
            default_region: Some(0),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Each (address, home region, scope) is what the map says.
    fn assert_homes(map: &RegionMap, cases: &[(&str, usize, u8)]) {
        for &(addr, region, scope) in cases {
            assert_eq!(map.lookup(ip(addr)), (Some(region), scope), "{addr}");
        }
    }

    fn open(path: &std::path::Path) -> GeoDb {
        GeoDb::open(&GeoConfig {
            city: Some(path.to_path_buf()),
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn without_database_or_overrides_one_region_covers_everything() {
        let map = RegionMap::build(None, &rules(&[FRANKFURT], &[]));
        assert_eq!(map.lookup(ip("192.0.2.1")), (Some(0), 0));
        assert_eq!(map.lookup(ip("2001:db8::1")), (Some(0), 0));
        assert_eq!(map.run_counts(), (1, 1));
    }

    #[test]
    fn subnet_overrides_cut_the_space_and_the_most_specific_wins() {
        let r = rules(
            &[FRANKFURT, VIRGINIA],
            &[
                ("127.0.1.128/25", 1),
                ("127.0.1.192/26", 0),
                ("2001:db8::/32", 1),
            ],
        );
        let map = RegionMap::build(None, &r);
        assert_homes(
            &map,
            &[
                ("127.0.1.130", 1, 26),
                ("127.0.1.200", 0, 26),
                // The /25 below the override: a, but the /24 would hold b's addresses.
                ("127.0.1.7", 0, 25),
                // Far away: 0.0.0.0/2 holds only a, 0.0.0.0/1 holds 127.0.1.128.
                ("10.0.0.1", 0, 2),
                ("200.0.0.1", 0, 1),
                ("2001:db8:5::", 1, 32),
                ("2001:db9::", 0, 32),
                // An IPv4-mapped address: the IPv4 answer, the scope in IPv6 bits.
                ("::ffff:127.0.1.130", 1, 122),
            ],
        );
    }

    #[test]
    fn demo_database_scopes_are_the_widest_uniform_networks() {
        let path = std::env::temp_dir().join(format!("skein-dns-map-{}.mmdb", std::process::id()));
        write_demo_mmdb(&path).unwrap();
        let db = open(&path);
        // a: Frankfurt (also the default: unknown addresses), b: Virginia. Singapore's
        // networks are nearest to Frankfurt.
        let map = db.region_map(&rules(&[FRANKFURT, VIRGINIA], &[]));
        assert_homes(
            &map,
            &[
                // 127.0.1.0/24 is a, 127.0.2.0/24 b: the widest network of a around it is
                // the /23.
                ("127.0.1.0", 0, 23),
                ("127.0.2.9", 1, 24),
                ("127.0.3.0", 0, 24),
                ("198.51.100.0", 1, 24),
                // Nothing but a in 0.0.0.0/2.
                ("10.9.8.0", 0, 2),
                ("2001:db8:2::", 1, 48),
            ],
        );
        assert_eq!(map.lookup(ip("2001:db8:3::")).0, Some(0));
        // With Singapore as a region, 203.0.113.0/24 has a region of its own.
        let three = db.region_map(&rules(&[FRANKFURT, VIRGINIA, SINGAPORE], &[]));
        assert_eq!(three.lookup(ip("203.0.113.0")), (Some(2), 24));
        assert_eq!(three.lookup(ip("127.0.3.0")), (Some(2), 24));
        // Asked again with the same rules: the same map, not a new walk.
        let again = db.region_map(&rules(&[FRANKFURT, VIRGINIA, SINGAPORE], &[]));
        assert!(Arc::ptr_eq(&three, &again));
        std::fs::remove_file(path).ok();
    }

    /// The home region by the definition: the first override holding the address, else the
    /// region of its location in the database.
    fn home_by_lookup(db: &GeoDb, rules: &HomeRules, addr: u32) -> Option<usize> {
        let ip = IpAddr::V4(Ipv4Addr::from(addr));
        match rules.subnets.iter().find(|(net, _)| net.contains(&ip)) {
            Some((_, region)) => Some(*region),
            None => rules.region_of(db.locate(ip).as_ref()),
        }
    }

    /// Whether every address of `first..=last` has the home region `region`: the region by
    /// lookup can only change where an inserted network starts or ends, so checking the
    /// first address and every such boundary inside the range is exact.
    fn uniform(
        db: &GeoDb,
        rules: &HomeRules,
        boundaries: &[u32],
        (first, last): (u32, u32),
        region: Option<usize>,
    ) -> bool {
        std::iter::once(first)
            .chain(
                boundaries
                    .iter()
                    .copied()
                    .filter(|b| (first..=last).contains(b)),
            )
            .all(|b| home_by_lookup(db, rules, b) == region)
    }

    fn network_of(addr: u32, prefix: u8) -> (u32, u32) {
        let host = host_mask(32 - prefix) as u32;
        (addr & !host, addr | host)
    }

    const PLACES: [(f64, f64, &str, &str); 4] = [
        (50.11, 8.68, "DE", "EU"),
        (38.95, -77.45, "US", "NA"),
        (1.35, 103.82, "SG", "AS"),
        (-33.87, 151.21, "AU", "OC"),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// For random databases and overrides: the region of an address is the one a lookup
        /// gives, every address inside its scope has that region, and the network one bit
        /// wider does not.
        #[test]
        fn scope_is_the_widest_network_of_one_region(
            nets in proptest::collection::vec((any::<u32>(), 9u8..=28, 0usize..4), 1..24),
            overrides in proptest::collection::vec((any::<u32>(), 10u8..=30, 0usize..3), 0..4),
            queries in proptest::collection::vec(any::<u32>(), 1..48),
        ) {
            // Everything inside 10.0.0.0/8, so that networks meet and nest.
            let inside = |a: u32| 0x0a00_0000 | (a & 0x00ff_ffff);
            let mut entries: Vec<GeoEntry> = Vec::new();
            let mut boundaries = Vec::new();
            for (addr, prefix, place) in nets {
                let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(inside(addr))), prefix).unwrap().trunc();
                if entries.iter().any(|e| e.net.contains(&net.network()) || net.contains(&e.net.network())) {
                    continue;
                }
                let (lat, lon, country, continent) = PLACES[place];
                entries.push(GeoEntry { net, lat, lon, country: country.into(), continent: continent.into() });
            }
            let mut r = rules(&[FRANKFURT, VIRGINIA, SINGAPORE], &[]);
            r.country.insert(*b"AU", 1);
            for (addr, prefix, region) in overrides {
                let net = IpNet::new(IpAddr::V4(Ipv4Addr::from(inside(addr))), prefix).unwrap().trunc();
                r.subnets.push((net, region));
            }
            r.subnets.sort_by_key(|s| std::cmp::Reverse(s.0.prefix_len()));
            for net in entries.iter().map(|e| e.net).chain(r.subnets.iter().map(|s| s.0)) {
                if let IpNet::V4(n) = net {
                    boundaries.push(u32::from(n.network()));
                    boundaries.extend(u32::from(n.broadcast()).checked_add(1));
                }
            }
            let path = std::env::temp_dir().join(format!(
                "skein-dns-prop-{}-{:?}.mmdb",
                std::process::id(),
                std::thread::current().id()
            ));
            write_mmdb(&path, Layout::GeoIp2, &entries).unwrap();
            let db = open(&path);
            std::fs::remove_file(&path).ok();
            let map = RegionMap::build(Some(&db), &r);
            let samples = queries.iter().flat_map(|&q| [q, inside(q)]).chain(boundaries.clone());
            for addr in samples {
                let (region, scope) = map.lookup(IpAddr::V4(Ipv4Addr::from(addr)));
                prop_assert_eq!(region, home_by_lookup(&db, &r, addr));
                prop_assert!(uniform(&db, &r, &boundaries, network_of(addr, scope), region),
                    "{} scope /{} holds another region", Ipv4Addr::from(addr), scope);
                if scope > 0 {
                    prop_assert!(!uniform(&db, &r, &boundaries, network_of(addr, scope - 1), region),
                        "{} scope /{} is not the widest", Ipv4Addr::from(addr), scope);
                }
            }
        }
    }
}
