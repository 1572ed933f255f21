//! The TOML configuration: parsing, defaults and validation with errors that name the field.
//! See `dns/examples/skein-dns.toml` for a commented example.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::wire;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    pub zones: Vec<ZoneConfig>,
    #[serde(default)]
    pub regions: Vec<RegionConfig>,
    #[serde(default)]
    pub geo: GeoConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub answer: AnswerConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// UDP addresses; each gets one SO_REUSEPORT socket per worker.
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    /// Prometheus `/metrics`; none = off.
    pub metrics: Option<SocketAddr>,
    /// UDP sockets (and threads) per address; 0 = one per CPU core.
    pub udp_workers: usize,
    /// Which UDP query path serves the sockets.
    pub udp_engine: UdpEngine,
    pub tcp_max_connections: usize,
    pub tcp_idle_timeout_ms: u64,
}

impl Default for Listen {
    fn default() -> Self {
        let dns: SocketAddr = ([127, 0, 0, 1], 5353).into();
        Listen {
            udp: vec![dns],
            tcp: vec![dns],
            metrics: None,
            udp_workers: 0,
            udp_engine: UdpEngine::Hickory,
            tcp_max_connections: 256,
            tcp_idle_timeout_ms: 10_000,
        }
    }
}

/// The UDP query path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdpEngine {
    /// hickory-server's UDP loop with our `RequestHandler` (tokio, one socket per worker).
    Hickory,
    /// Our own codec on blocking sockets, one thread per socket, `recvmmsg`/`sendmmsg`
    /// (Linux): less CPU per query, see docs/benchmarks.md.
    Batched,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone apex, e.g. "example.com".
    pub origin: String,
    pub soa: SoaConfig,
    pub ns: Vec<NsConfig>,
    #[serde(default = "default_ns_ttl")]
    pub ns_ttl: u32,
    /// Names answered by the geo/health/load logic, relative to the origin ("live") or absolute
    /// with a trailing dot.
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub records: Vec<StaticRecord>,
}

fn default_ns_ttl() -> u32 {
    86_400
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaConfig {
    /// Primary server name; defaults to the first NS.
    pub mname: Option<String>,
    /// Responsible mailbox as a name, e.g. "hostmaster.example.com".
    pub rname: String,
    #[serde(default = "one")]
    pub serial: u32,
    #[serde(default = "soa_refresh")]
    pub refresh: u32,
    #[serde(default = "soa_retry")]
    pub retry: u32,
    #[serde(default = "soa_expire")]
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    #[serde(default = "soa_minimum")]
    pub minimum: u32,
    #[serde(default = "soa_ttl")]
    pub ttl: u32,
}

fn one() -> u32 {
    1
}
fn soa_refresh() -> u32 {
    3600
}
fn soa_retry() -> u32 {
    600
}
fn soa_expire() -> u32 {
    1_209_600
}
fn soa_minimum() -> u32 {
    60
}
fn soa_ttl() -> u32 {
    3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NsConfig {
    pub name: String,
    /// Glue addresses; required when the NS name is inside the zone.
    #[serde(default)]
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRecord {
    /// Relative to the origin ("www", "@" for the apex) or absolute with a trailing dot.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default = "static_ttl")]
    pub ttl: u32,
    /// Presentation-format RDATA; names inside must be absolute (trailing dot).
    pub data: String,
}

fn static_ttl() -> u32 {
    300
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// Regional virtual IPs; when present they are handed out instead of edge addresses.
    #[serde(default)]
    pub vips: Vec<IpAddr>,
    #[serde(default)]
    pub edges: Vec<EdgeConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    pub name: String,
    /// Addresses handed out in answers (A and/or AAAA).
    pub addrs: Vec<IpAddr>,
    /// Address probed; defaults to the first of `addrs`.
    #[serde(default)]
    pub probe_addr: Option<IpAddr>,
    #[serde(default = "rtmp_port")]
    pub rtmp_port: u16,
    #[serde(default = "http_port")]
    pub http_port: u16,
    /// Capacity limits; when absent the limits the edge reports are used.
    #[serde(default)]
    pub max_connections: Option<u64>,
    #[serde(default)]
    pub max_egress_bps: Option<u64>,
}

fn rtmp_port() -> u16 {
    1935
}
fn http_port() -> u16 {
    8080
}

impl EdgeConfig {
    pub fn probe_ip(&self) -> Option<IpAddr> {
        self.probe_addr.or_else(|| self.addrs.first().copied())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoConfig {
    /// One database for both families (MaxMind GeoIP2/GeoLite2 City or any MMDB with the same
    /// or the DB-IP layout).
    pub city: Option<PathBuf>,
    /// DB-IP Lite style separate files.
    pub ipv4: Option<PathBuf>,
    pub ipv6: Option<PathBuf>,
    /// Region for clients whose location is unknown; defaults to the first region.
    pub default_region: Option<String>,
    pub overrides: Overrides,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Overrides {
    /// Continent code ("EU", "NA", ...) → region.
    pub continent: BTreeMap<String, String>,
    /// ISO 3166 country code ("DE") → region.
    pub country: BTreeMap<String, String>,
    /// Client network ("192.0.2.0/24") → region; the most specific match wins.
    pub subnet: BTreeMap<IpNet, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub interval_ms: u64,
    /// Consecutive failures before an edge is down.
    pub fall: u32,
    /// Consecutive successes before a down or unknown edge is up.
    pub rise: u32,
    /// Per-probe timeout.
    pub timeout_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_ms: 1000,
            fall: 3,
            rise: 2,
            timeout_ms: 800,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// Addresses per answer.
    pub k: usize,
    pub ttl: u32,
    /// Utilisation (0..1) above which an edge is not handed out.
    pub high_water: f64,
    /// NODATA instead of least-bad edges when nothing is healthy.
    pub fail_closed: bool,
    /// How many of the next-nearest regions share a failed or full region's clients.
    pub spill_regions: usize,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            k: 2,
            ttl: 20,
            high_water: 0.85,
            fail_closed: false,
            spill_regions: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Responses per second per client /24 (IPv4) or /56 (IPv6); 0 disables rate limiting.
    pub responses_per_second: u32,
    /// Bucket size (burst); defaults to the per-second rate.
    pub burst: Option<u32>,
    /// Every `slip`-th limited response is sent truncated (TC) instead of dropped, so real
    /// clients retry over TCP; 0 = always drop.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            responses_per_second: 200,
            burst: None,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Node API addresses ("host:port"); `--cluster` on the command line overrides.
    pub seeds: Vec<String>,
    pub poll_interval_ms: u64,
    /// Last membership seen, so a restart answers before the cluster is reachable.
    pub cache: PathBuf,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            seeds: Vec::new(),
            poll_interval_ms: 2000,
            cache: PathBuf::from("skein-dns-cluster.json"),
        }
    }
}

/// A config error naming the offending field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads, parses and validates a file; relative paths inside are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let mut config =
            Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.geo.city, &mut self.geo.ipv4, &mut self.geo.ipv6]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if self.cluster.cache.is_relative() {
            self.cluster.cache = base.join(&self.cluster.cache);
        }
    }

    /// Checks everything serde cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.zones.is_empty() {
            return Err(err("zones", "at least one zone is required"));
        }
        if self.listen.udp.is_empty() && self.listen.tcp.is_empty() {
            return Err(err("listen", "no UDP or TCP address to listen on"));
        }
        if self.listen.tcp_max_connections == 0 {
            return Err(err("listen.tcp_max_connections", "must be at least 1"));
        }
        let mut apexes = Vec::new();
        for (i, z) in self.zones.iter().enumerate() {
            let f = |name: &str| format!("zones[{i}].{name}");
            let apex = wire::name_from_str(&z.origin).map_err(|m| err(f("origin"), m))?;
            if apexes.contains(&apex) {
                return Err(err(
                    f("origin"),
                    format!("zone {} is defined twice", z.origin),
                ));
            }
            apexes.push(apex.clone());
            if z.ns.is_empty() {
                return Err(err(f("ns"), "at least one NS is required"));
            }
            for (j, ns) in z.ns.iter().enumerate() {
                let name = wire::name_from_str(&ns.name)
                    .map_err(|m| err(format!("zones[{i}].ns[{j}].name"), m))?;
                if wire::is_subdomain(&name, &apex) && ns.addrs.is_empty() {
                    return Err(err(
                        format!("zones[{i}].ns[{j}].addrs"),
                        format!("{} is inside the zone and needs glue addresses", ns.name),
                    ));
                }
            }
            if let Some(m) = &z.soa.mname {
                wire::name_from_str(m).map_err(|m| err(f("soa.mname"), m))?;
            }
            wire::name_from_str(&z.soa.rname).map_err(|m| err(f("soa.rname"), m))?;
            for (j, s) in z.services.iter().enumerate() {
                let name = relative_name(s, &z.origin)
                    .map_err(|m| err(format!("zones[{i}].services[{j}]"), m))?;
                if !wire::is_subdomain(&name, &apex) {
                    return Err(err(
                        format!("zones[{i}].services[{j}]"),
                        format!("{s} is not inside {}", z.origin),
                    ));
                }
            }
            for (j, r) in z.records.iter().enumerate() {
                crate::zone::static_rdata(r, &z.origin)
                    .map_err(|m| err(format!("zones[{i}].records[{j}]"), m))?;
            }
        }
        let mut names = Vec::new();
        for (i, r) in self.regions.iter().enumerate() {
            validate_region(r).map_err(|(field, m)| err(format!("regions[{i}].{field}"), m))?;
            if names.contains(&&r.name) {
                return Err(err(
                    format!("regions[{i}].name"),
                    format!("region {} is defined twice", r.name),
                ));
            }
            names.push(&r.name);
        }
        let known = |field: String, region: &String| -> Result<(), FieldError> {
            if !self.regions.is_empty() && !self.regions.iter().any(|r| &r.name == region) {
                return Err(err(field, format!("unknown region {region:?}")));
            }
            Ok(())
        };
        if let Some(d) = &self.geo.default_region {
            known("geo.default_region".into(), d)?;
        }
        for (k, v) in &self.geo.overrides.continent {
            known(format!("geo.overrides.continent.{k}"), v)?;
        }
        for (k, v) in &self.geo.overrides.country {
            if k.len() != 2 {
                return Err(err(
                    format!("geo.overrides.country.{k}"),
                    "country codes have two letters",
                ));
            }
            known(format!("geo.overrides.country.{k}"), v)?;
        }
        for (k, v) in &self.geo.overrides.subnet {
            known(format!("geo.overrides.subnet.\"{k}\""), v)?;
        }
        if self.geo.city.is_some() && (self.geo.ipv4.is_some() || self.geo.ipv6.is_some()) {
            return Err(err(
                "geo",
                "set either `city` (one file) or `ipv4`/`ipv6` (separate files), not both",
            ));
        }
        let h = &self.health;
        if h.interval_ms == 0 || h.timeout_ms == 0 || h.fall == 0 || h.rise == 0 {
            return Err(err(
                "health",
                "interval_ms, timeout_ms, fall and rise must be at least 1",
            ));
        }
        let a = &self.answer;
        if a.k == 0 {
            return Err(err("answer.k", "must be at least 1"));
        }
        if !(a.high_water > 0.0 && a.high_water <= 1.0) {
            return Err(err("answer.high_water", "must be in (0, 1]"));
        }
        let rl = &self.rate_limit;
        if rl.ipv4_prefix > 32 || rl.ipv6_prefix > 128 {
            return Err(err(
                "rate_limit",
                "ipv4_prefix must be ≤ 32 and ipv6_prefix ≤ 128",
            ));
        }
        if self.cluster.poll_interval_ms == 0 {
            return Err(err("cluster.poll_interval_ms", "must be at least 1"));
        }
        Ok(())
    }
}

/// Validates one region (also used for regions learned from the cluster).
pub fn validate_region(r: &RegionConfig) -> Result<(), (String, String)> {
    if r.name.is_empty() {
        return Err(("name".into(), "must not be empty".into()));
    }
    if !(-90.0..=90.0).contains(&r.lat) {
        return Err(("lat".into(), format!("{} is not a latitude", r.lat)));
    }
    if !(-180.0..=180.0).contains(&r.lon) {
        return Err(("lon".into(), format!("{} is not a longitude", r.lon)));
    }
    for (j, e) in r.edges.iter().enumerate() {
        if e.addrs.is_empty() {
            return Err((
                format!("edges[{j}].addrs"),
                format!("edge {} has no address", e.name),
            ));
        }
        if e.max_connections == Some(0) {
            return Err((
                format!("edges[{j}].max_connections"),
                "must be at least 1".into(),
            ));
        }
    }
    Ok(())
}

/// Resolves a name relative to an origin ("@" is the origin; a trailing dot means absolute).
pub fn relative_name(name: &str, origin: &str) -> Result<Vec<u8>, String> {
    if name == "@" {
        return wire::name_from_str(origin);
    }
    if name.ends_with('.') {
        return wire::name_from_str(name);
    }
    let origin = origin.strip_suffix('.').unwrap_or(origin);
    wire::name_from_str(&format!("{name}.{origin}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[zones]]
        origin = "example.com"
        services = ["live"]
        soa = { rname = "hostmaster.example.com" }
        ns = [{ name = "ns1.example.com", addrs = ["127.0.0.53"] }]

        [[regions]]
        name = "a"
        lat = 50.0
        lon = 8.0
        edges = [{ name = "a1", addrs = ["127.0.1.1"] }]
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.answer.k, 2);
        assert_eq!(c.answer.ttl, 20);
        assert_eq!(c.health.fall, 3);
        assert_eq!(c.health.rise, 2);
        assert_eq!(c.regions[0].edges[0].rtmp_port, 1935);
        assert_eq!(c.zones[0].soa.minimum, 60);
        assert_eq!(c.listen.udp_engine, UdpEngine::Hickory);
        let batched = format!("[listen]\nudp_engine = \"batched\"\n{MINIMAL}");
        let c = Config::parse(&batched).unwrap();
        assert_eq!(c.listen.udp_engine, UdpEngine::Batched);
        let bad = format!("[listen]\nudp_engine = \"fast\"\n{MINIMAL}");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("udp_engine"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let bad = MINIMAL.replace("lat = 50.0", "lat = 123.0");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("regions[0].lat"), "{e}");
        let bad = MINIMAL.replace(r#"addrs = ["127.0.0.53"]"#, "");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("zones[0].ns[0].addrs"), "{e}");
        let bad = format!("{MINIMAL}\n[geo]\ndefault_region = \"zz\"\n");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("geo.default_region"), "{e}");
        let bad = format!("{MINIMAL}\n[answer]\nk = 0\n");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("answer.k"), "{e}");
        let bad = format!("{MINIMAL}\n[answer]\nkk = 1\n");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("kk"), "{e}");
    }

    #[test]
    fn relative_names() {
        assert_eq!(
            relative_name("live", "example.com.").unwrap(),
            wire::name_from_str("live.example.com").unwrap()
        );
        assert_eq!(
            relative_name("@", "example.com").unwrap(),
            wire::name_from_str("example.com").unwrap()
        );
        assert_eq!(
            relative_name("x.org.", "example.com").unwrap(),
            wire::name_from_str("x.org").unwrap()
        );
    }
}
