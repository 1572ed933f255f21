//! The TOML configuration, read once into typed values: serde reads the file into the raw
//! form (`RawConfig`: names, record data and region codes still as text), and one checked
//! conversion turns that into [`Config`], where names are wire-form bytes, static records are
//! RDATA and every cross-reference is resolved. Every error names the offending field
//! ([`FieldError`]). See `dns/examples/skein-dns.toml` for a commented example.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::wire;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sockets to serve on.
    pub listen: Listen,
    /// The zones we are authoritative for (at least one).
    pub zones: Vec<ZoneConfig>,
    /// Static membership (used unless cluster seeds are given).
    pub regions: Vec<RegionConfig>,
    /// Geolocation databases and overrides.
    pub geo: GeoConfig,
    /// Edge probing.
    pub health: HealthConfig,
    /// Answer policy.
    pub answer: AnswerConfig,
    /// Response rate limiting.
    pub rate_limit: RateLimitConfig,
    /// Membership from the cluster.
    pub cluster: ClusterConfig,
    /// The collector and its store.
    pub history: HistoryConfig,
}

/// The file as serde reads it; [`Config`] is what it means.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: Listen,
    zones: Vec<RawZone>,
    #[serde(default)]
    regions: Vec<RegionConfig>,
    #[serde(default)]
    geo: RawGeo,
    #[serde(default)]
    health: HealthConfig,
    #[serde(default)]
    answer: AnswerConfig,
    #[serde(default)]
    rate_limit: RateLimitConfig,
    #[serde(default)]
    cluster: ClusterConfig,
    #[serde(default)]
    history: HistoryConfig,
}

/// `[listen]`: where and how queries are received.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// UDP addresses; each gets one SO_REUSEPORT socket per worker.
    pub udp: Vec<SocketAddr>,
    /// TCP addresses.
    pub tcp: Vec<SocketAddr>,
    /// Prometheus `/metrics`; none = off.
    pub metrics: Option<SocketAddr>,
    /// UDP sockets (and threads) per address; 0 = one per CPU core.
    pub udp_workers: usize,
    /// Which UDP query path serves the sockets.
    pub udp_engine: UdpEngine,
    /// Open TCP connections at most; further ones are closed at once.
    pub tcp_max_connections: usize,
    /// A TCP connection without a query for this long is closed.
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

/// One zone, checked: every name in lowercased wire form (see [`wire::name_from_str`]).
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The zone apex.
    pub origin: Vec<u8>,
    /// The SOA record, with `mname` defaulted to the first NS.
    pub soa: Soa,
    /// Name servers (at least one), in-zone ones with glue addresses.
    pub ns: Vec<NameServer>,
    /// TTL of the NS records and their glue.
    pub ns_ttl: u32,
    /// Names answered by the geo/health/load logic, inside the zone.
    pub services: Vec<Vec<u8>>,
    /// Static records, inside the zone; never SOA or NS at the apex.
    pub records: Vec<StaticRecord>,
}

/// The SOA of a zone.
#[derive(Debug, Clone)]
pub struct Soa {
    /// Primary server name.
    pub mname: Vec<u8>,
    /// Responsible mailbox as a name.
    pub rname: Vec<u8>,
    /// Zone serial.
    pub serial: u32,
    /// Secondaries' refresh interval (s).
    pub refresh: u32,
    /// Secondaries' retry interval (s).
    pub retry: u32,
    /// Secondaries' expiry (s).
    pub expire: u32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
    /// TTL of the SOA record itself.
    pub ttl: u32,
}

/// A name server of a zone.
#[derive(Debug, Clone)]
pub struct NameServer {
    /// Its name.
    pub name: Vec<u8>,
    /// Glue addresses; present whenever the name is inside the zone.
    pub addrs: Vec<IpAddr>,
}

/// A static record, parsed from presentation format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRecord {
    /// Owner name.
    pub owner: Vec<u8>,
    /// Record type code.
    pub rtype: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// RDATA in uncompressed wire form.
    pub rdata: Vec<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    /// The zone apex, e.g. "example.com".
    origin: String,
    soa: RawSoa,
    ns: Vec<RawNameServer>,
    #[serde(default = "default_ns_ttl")]
    ns_ttl: u32,
    /// Relative to the origin ("live") or absolute with a trailing dot.
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    records: Vec<RawRecord>,
}

fn default_ns_ttl() -> u32 {
    86_400
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoa {
    /// Defaults to the first NS.
    mname: Option<String>,
    /// Mailbox as a name, e.g. "hostmaster.example.com".
    rname: String,
    #[serde(default = "one")]
    serial: u32,
    #[serde(default = "soa_refresh")]
    refresh: u32,
    #[serde(default = "soa_retry")]
    retry: u32,
    #[serde(default = "soa_expire")]
    expire: u32,
    #[serde(default = "soa_minimum")]
    minimum: u32,
    #[serde(default = "soa_ttl")]
    ttl: u32,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNameServer {
    name: String,
    #[serde(default)]
    addrs: Vec<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    /// Relative to the origin ("www", "@" for the apex) or absolute with a trailing dot.
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default = "static_ttl")]
    ttl: u32,
    /// Presentation-format RDATA; names inside must be absolute (trailing dot).
    data: String,
}

fn static_ttl() -> u32 {
    300
}

/// A region: where its clients are sent first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Unique name (overrides and the cluster refer to it).
    pub name: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Regional virtual IPs; when present they are handed out instead of edge addresses.
    #[serde(default)]
    pub vips: Vec<IpAddr>,
    #[serde(default)]
    /// Its edges.
    pub edges: Vec<EdgeConfig>,
}

/// An edge node handed out in answers and probed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Name (for logs and metrics).
    pub name: String,
    /// Addresses handed out in answers (A and/or AAAA).
    pub addrs: Vec<IpAddr>,
    /// Address probed; defaults to the first of `addrs`.
    #[serde(default)]
    pub probe_addr: Option<IpAddr>,
    /// Port of the RTMP handshake probe.
    #[serde(default = "rtmp_port")]
    pub rtmp_port: u16,
    /// Port of the `/api/v1/health` probe.
    #[serde(default = "http_port")]
    pub http_port: u16,
    /// Connection capacity; when absent the limit the edge reports is used.
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// Egress capacity in bits per second; when absent the limit the edge reports is used.
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
    /// The address probed: `probe_addr`, else the first of `addrs`.
    pub fn probe_ip(&self) -> Option<IpAddr> {
        self.probe_addr.or_else(|| self.addrs.first().copied())
    }
}

/// `[geo]`: where clients are, and overrides by place or network.
#[derive(Debug, Clone, Default)]
pub struct GeoConfig {
    /// One database for both families (MaxMind GeoIP2/GeoLite2 City or any MMDB with the same
    /// or the DB-IP layout).
    pub city: Option<PathBuf>,
    /// DB-IP Lite style separate file for IPv4 ...
    pub ipv4: Option<PathBuf>,
    /// ... and for IPv6.
    pub ipv6: Option<PathBuf>,
    /// Region for clients whose location is unknown; defaults to the first region.
    pub default_region: Option<String>,
    /// Regions chosen by continent, country or client network instead of by distance.
    pub overrides: Overrides,
}

/// Region overrides; region names are checked against `[[regions]]` when there are any.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Continent code (uppercase, "EU", "NA", ...) → region.
    pub continent: BTreeMap<[u8; 2], String>,
    /// ISO 3166 country code (uppercase, "DE") → region.
    pub country: BTreeMap<[u8; 2], String>,
    /// Client network ("192.0.2.0/24") → region; the most specific match wins.
    pub subnet: BTreeMap<IpNet, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawGeo {
    city: Option<PathBuf>,
    ipv4: Option<PathBuf>,
    ipv6: Option<PathBuf>,
    default_region: Option<String>,
    overrides: RawOverrides,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOverrides {
    continent: BTreeMap<String, String>,
    country: BTreeMap<String, String>,
    subnet: BTreeMap<IpNet, String>,
}

/// `[health]`: how edges are probed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Time between probes of one edge.
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

/// `[answer]`: the answer policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// Addresses per answer.
    pub k: usize,
    /// TTL of service answers.
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

/// `[rate_limit]`: response rate limiting per client network (UDP).
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
    /// Prefix length of an IPv4 client network.
    pub ipv4_prefix: u8,
    /// Prefix length of an IPv6 client network.
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

/// `[cluster]`: membership from the cluster API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Node API addresses ("host:port"); `--cluster` on the command line overrides.
    pub seeds: Vec<String>,
    /// Time between polls.
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

/// `[history]`: what the server samples every interval (queries by rcode, answers by region,
/// edge health, its own CPU and memory), rolled up from 1 min to 7 days and served by
/// `GET /api/v1/history` on the metrics port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Sample and keep history (off: `/api/v1/history` answers 404).
    pub enabled: bool,
    /// Seconds between samples; a divisor of 60.
    pub interval_secs: u64,
    /// The store's file; empty: kept in memory only (lost at restart).
    pub path: PathBuf,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            interval_secs: 5,
            path: PathBuf::new(),
        }
    }
}

fn check_history(history: &HistoryConfig) -> Result<(), FieldError> {
    if !(1..=60).contains(&history.interval_secs) || 60 % history.interval_secs != 0 {
        return Err(FieldError::new(
            "history.interval_secs",
            "must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)",
        ));
    }
    Ok(())
}

/// A config error naming the offending field, e.g. `zones[0].ns[1].addrs: ...`: the one error
/// type of reading a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field in the file (`regions[2].lat`, `geo.overrides.country.DE`), or the
    /// line and column when the text is not TOML at all.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error seen from the enclosing value: `lat` inside `regions[2]` becomes
    /// `regions[2].lat`.
    pub fn within(self, parent: &str) -> FieldError {
        FieldError {
            field: format!("{parent}.{}", self.field),
            message: self.message,
        }
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
    pub fn parse(text: &str) -> Result<Config, FieldError> {
        let document = toml::Deserializer::parse(text)
            .map_err(|e| FieldError::new(location(text, &e), e.message()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(document).map_err(|e| {
            let field = match e.path().to_string() {
                root if root == "." => "top level".to_string(),
                path => path,
            };
            let inner = e.inner();
            FieldError::new(
                field,
                format!("{} ({})", inner.message(), location(text, inner)),
            )
        })?;
        Config::try_from(raw)
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
}

/// "line L, column C" of where a TOML error starts.
fn location(text: &str, e: &toml::de::Error) -> String {
    let start = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}")
}

impl TryFrom<RawConfig> for Config {
    type Error = FieldError;

    /// Checks everything serde cannot, turning text into the typed values.
    fn try_from(raw: RawConfig) -> Result<Config, FieldError> {
        if raw.zones.is_empty() {
            return Err(FieldError::new("zones", "at least one zone is required"));
        }
        check_listen(&raw.listen)?;
        let mut zones: Vec<ZoneConfig> = Vec::with_capacity(raw.zones.len());
        for (i, z) in raw.zones.into_iter().enumerate() {
            let field = format!("zones[{i}]");
            let origin = z.origin.clone();
            let zone = zone(z).map_err(|e| e.within(&field))?;
            if zones.iter().any(|other| other.origin == zone.origin) {
                return Err(FieldError::new(
                    format!("{field}.origin"),
                    format!("zone {origin} is defined twice"),
                ));
            }
            zones.push(zone);
        }
        let mut names = Vec::new();
        for (i, r) in raw.regions.iter().enumerate() {
            let field = format!("regions[{i}]");
            validate_region(r).map_err(|e| e.within(&field))?;
            if names.contains(&&r.name) {
                return Err(FieldError::new(
                    format!("{field}.name"),
                    format!("region {} is defined twice", r.name),
                ));
            }
            names.push(&r.name);
        }
        let geo = geo(raw.geo, &raw.regions)?;
        check_policy(&raw.health, &raw.answer, &raw.rate_limit, &raw.cluster)?;
        check_history(&raw.history)?;
        Ok(Config {
            listen: raw.listen,
            zones,
            regions: raw.regions,
            geo,
            health: raw.health,
            answer: raw.answer,
            rate_limit: raw.rate_limit,
            cluster: raw.cluster,
            history: raw.history,
        })
    }
}

fn check_listen(listen: &Listen) -> Result<(), FieldError> {
    if listen.udp.is_empty() && listen.tcp.is_empty() {
        return Err(FieldError::new(
            "listen",
            "no UDP or TCP address to listen on",
        ));
    }
    if listen.tcp_max_connections == 0 {
        return Err(FieldError::new(
            "listen.tcp_max_connections",
            "must be at least 1",
        ));
    }
    Ok(())
}

/// One zone; fields are named relative to the zone.
fn zone(z: RawZone) -> Result<ZoneConfig, FieldError> {
    let origin = wire::name_from_str(&z.origin).map_err(|m| FieldError::new("origin", m))?;
    if z.ns.is_empty() {
        return Err(FieldError::new("ns", "at least one NS is required"));
    }
    let mut ns = Vec::with_capacity(z.ns.len());
    for (j, n) in z.ns.into_iter().enumerate() {
        let name = wire::name_from_str(&n.name)
            .map_err(|m| FieldError::new(format!("ns[{j}].name"), m))?;
        if wire::is_subdomain(&name, &origin) && n.addrs.is_empty() {
            return Err(FieldError::new(
                format!("ns[{j}].addrs"),
                format!("{} is inside the zone and needs glue addresses", n.name),
            ));
        }
        ns.push(NameServer {
            name,
            addrs: n.addrs,
        });
    }
    let mname = match &z.soa.mname {
        Some(m) => wire::name_from_str(m).map_err(|m| FieldError::new("soa.mname", m))?,
        None => ns[0].name.clone(),
    };
    let rname = wire::name_from_str(&z.soa.rname).map_err(|m| FieldError::new("soa.rname", m))?;
    let soa = Soa {
        mname,
        rname,
        serial: z.soa.serial,
        refresh: z.soa.refresh,
        retry: z.soa.retry,
        expire: z.soa.expire,
        minimum: z.soa.minimum,
        ttl: z.soa.ttl,
    };
    let mut services = Vec::with_capacity(z.services.len());
    for (j, s) in z.services.iter().enumerate() {
        let field = || format!("services[{j}]");
        let name = relative_name(s, &z.origin).map_err(|m| FieldError::new(field(), m))?;
        if !wire::is_subdomain(&name, &origin) {
            return Err(FieldError::new(
                field(),
                format!("{s} is not inside {}", z.origin),
            ));
        }
        services.push(name);
    }
    let mut records = Vec::with_capacity(z.records.len());
    for (j, r) in z.records.iter().enumerate() {
        let record =
            static_record(r, &z.origin, &origin).map_err(|e| e.within(&format!("records[{j}]")))?;
        records.push(record);
    }
    Ok(ZoneConfig {
        origin,
        soa,
        ns,
        ns_ttl: z.ns_ttl,
        services,
        records,
    })
}

/// Parses a static record with hickory-proto's presentation-format parser; fields are named
/// relative to the record.
fn static_record(r: &RawRecord, origin: &str, apex: &[u8]) -> Result<StaticRecord, FieldError> {
    let owner = relative_name(&r.name, origin).map_err(|m| FieldError::new("name", m))?;
    if !wire::is_subdomain(&owner, apex) {
        return Err(FieldError::new(
            "name",
            format!("{} is not inside {origin}", r.name),
        ));
    }
    let rt = RecordType::from_str(&r.rtype.to_ascii_uppercase())
        .map_err(|e| FieldError::new("type", format!("{:?}: {e}", r.rtype)))?;
    if matches!(
        rt,
        RecordType::OPT | RecordType::ANY | RecordType::AXFR | RecordType::IXFR
    ) {
        return Err(FieldError::new(
            "type",
            format!("{} cannot be a static record", r.rtype),
        ));
    }
    if owner == apex && matches!(rt, RecordType::SOA | RecordType::NS) {
        return Err(FieldError::new(
            "type",
            "SOA and NS at the apex come from the zone's `soa` and `ns`",
        ));
    }
    let data_error =
        |e: &dyn std::fmt::Display| FieldError::new("data", format!("{:?}: {e}", r.data));
    let rdata = RData::try_from_str(rt, &r.data).map_err(|e| data_error(&e))?;
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    rdata.emit(&mut enc).map_err(|e| data_error(&e))?;
    Ok(StaticRecord {
        owner,
        rtype: u16::from(rt),
        ttl: r.ttl,
        rdata: buf,
    })
}

/// `[geo]`, with region names checked against `regions` (when there are any: with cluster
/// membership they are not known yet) and region codes made uppercase.
fn geo(raw: RawGeo, regions: &[RegionConfig]) -> Result<GeoConfig, FieldError> {
    let known = |field: String, region: &String| -> Result<(), FieldError> {
        if !regions.is_empty() && !regions.iter().any(|r| &r.name == region) {
            return Err(FieldError::new(field, format!("unknown region {region:?}")));
        }
        Ok(())
    };
    if let Some(d) = &raw.default_region {
        known("geo.default_region".into(), d)?;
    }
    let codes = |kind: &str, map: BTreeMap<String, String>, what: &str| {
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let field = format!("geo.overrides.{kind}.{k}");
            let &[a, b] = k.as_bytes() else {
                return Err(FieldError::new(
                    field,
                    format!("{what} codes have two letters"),
                ));
            };
            known(field, &v)?;
            out.insert([a.to_ascii_uppercase(), b.to_ascii_uppercase()], v);
        }
        Ok(out)
    };
    let continent = codes("continent", raw.overrides.continent, "continent")?;
    let country = codes("country", raw.overrides.country, "country")?;
    for (k, v) in &raw.overrides.subnet {
        known(format!("geo.overrides.subnet.\"{k}\""), v)?;
    }
    if raw.city.is_some() && (raw.ipv4.is_some() || raw.ipv6.is_some()) {
        return Err(FieldError::new(
            "geo",
            "set either `city` (one file) or `ipv4`/`ipv6` (separate files), not both",
        ));
    }
    Ok(GeoConfig {
        city: raw.city,
        ipv4: raw.ipv4,
        ipv6: raw.ipv6,
        default_region: raw.default_region,
        overrides: Overrides {
            continent,
            country,
            subnet: raw.overrides.subnet,
        },
    })
}

fn check_policy(
    h: &HealthConfig,
    a: &AnswerConfig,
    rl: &RateLimitConfig,
    cluster: &ClusterConfig,
) -> Result<(), FieldError> {
    if h.interval_ms == 0 || h.timeout_ms == 0 || h.fall == 0 || h.rise == 0 {
        return Err(FieldError::new(
            "health",
            "interval_ms, timeout_ms, fall and rise must be at least 1",
        ));
    }
    if a.k == 0 {
        return Err(FieldError::new("answer.k", "must be at least 1"));
    }
    if !(a.high_water > 0.0 && a.high_water <= 1.0) {
        return Err(FieldError::new("answer.high_water", "must be in (0, 1]"));
    }
    if rl.ipv4_prefix > 32 || rl.ipv6_prefix > 128 {
        return Err(FieldError::new(
            "rate_limit",
            "ipv4_prefix must be ≤ 32 and ipv6_prefix ≤ 128",
        ));
    }
    if cluster.poll_interval_ms == 0 {
        return Err(FieldError::new(
            "cluster.poll_interval_ms",
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Validates one region (also used for regions learned from the cluster); fields are named
/// relative to the region.
pub fn validate_region(r: &RegionConfig) -> Result<(), FieldError> {
    if r.name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    if !(-90.0..=90.0).contains(&r.lat) {
        return Err(FieldError::new(
            "lat",
            format!("{} is not a latitude", r.lat),
        ));
    }
    if !(-180.0..=180.0).contains(&r.lon) {
        return Err(FieldError::new(
            "lon",
            format!("{} is not a longitude", r.lon),
        ));
    }
    for (j, e) in r.edges.iter().enumerate() {
        if e.addrs.is_empty() {
            return Err(FieldError::new(
                format!("edges[{j}].addrs"),
                format!("edge {} has no address", e.name),
            ));
        }
        if e.max_connections == Some(0) {
            return Err(FieldError::new(
                format!("edges[{j}].max_connections"),
                "must be at least 1",
            ));
        }
    }
    Ok(())
}

/// Resolves a name relative to an origin ("@" is the origin; a trailing dot means absolute).
fn relative_name(name: &str, origin: &str) -> Result<Vec<u8>, String> {
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
        let e = Config::parse(&bad).unwrap_err();
        assert_eq!(e.field, "listen.udp_engine");
        assert!(e.message.ends_with("(line 2, column 14)"), "{e}");
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
        assert!(e.starts_with("answer.kk: unknown field `kk`"), "{e}");
        let bad = MINIMAL.replace(r#"["127.0.0.53"]"#, "[53]");
        let e = Config::parse(&bad).unwrap_err();
        assert_eq!(e.field, "zones[0].ns[0].addrs[0]");
        assert!(e.message.contains("expected IP address"), "{e}");
        let e = Config::parse("[listen\n").unwrap_err();
        assert_eq!(e.field, "line 1, column 8");
        let e = Config::parse("").unwrap_err();
        assert_eq!(
            e.to_string().split(" (").next(),
            Some("top level: missing field `zones`")
        );
    }

    #[test]
    fn static_records_are_uncompressed_wire_and_errors_name_the_record() {
        let with_record = |record: &str| {
            MINIMAL.replace(
                "services = [\"live\"]",
                &format!("services = [\"live\"]\nrecords = [{record}]"),
            )
        };
        let c = Config::parse(&with_record(
            r#"{ name = "x", type = "mx", data = "10 mail.example.com." }"#,
        ))
        .unwrap();
        let r = &c.zones[0].records[0];
        assert_eq!(r.owner, wire::name_from_str("x.example.com").unwrap());
        assert_eq!(r.rtype, wire::rtype::MX);
        assert_eq!(r.ttl, 300);
        let mut want = vec![0, 10];
        want.extend(wire::name_from_str("mail.example.com").unwrap());
        assert_eq!(r.rdata, want);
        for (record, field) in [
            (
                r#"{ name = "x", type = "MX", data = "not-a-number mail." }"#,
                "zones[0].records[0].data",
            ),
            (
                r#"{ name = "x", type = "NOPE", data = "1" }"#,
                "zones[0].records[0].type",
            ),
            (
                r#"{ name = "@", type = "NS", data = "ns9.example.com." }"#,
                "zones[0].records[0].type",
            ),
            (
                r#"{ name = "x.org.", type = "A", data = "127.0.0.1" }"#,
                "zones[0].records[0].name",
            ),
        ] {
            let e = Config::parse(&with_record(record)).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn region_codes_are_two_letters_uppercased() {
        let c = Config::parse(&format!(
            "{MINIMAL}\n[geo.overrides]\ncountry = {{ de = \"a\" }}\ncontinent = {{ EU = \"a\" }}\n"
        ))
        .unwrap();
        assert_eq!(c.geo.overrides.country.get(b"DE"), Some(&"a".to_string()));
        assert_eq!(c.geo.overrides.continent.get(b"EU"), Some(&"a".to_string()));
        let bad = format!("{MINIMAL}\n[geo.overrides]\ncontinent = {{ Europe = \"a\" }}\n");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("geo.overrides.continent.Europe"), "{e}");
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
