//! Node configuration: a TOML file whose every field has a default, overridden by command-line
//! flags and `SKEIN_*` environment variables (see `cli`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use skein_raft::Roles;

use crate::auth::{Action, Policy};

/// The whole node configuration file, one struct per `[section]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[node]`: name and region.
    pub node: NodeSection,
    /// `[rtmp]`: the RTMP listener and protocol settings.
    pub rtmp: RtmpSection,
    /// `[http]`: the HTTP listener (API, metrics, HTTP-FLV).
    pub http: HttpSection,
    /// `[limits]`: connection limits and egress capacity.
    pub limits: LimitsSection,
    /// `[hub]`: GOP cache, player queues and timeouts.
    pub hub: HubSection,
    /// `[cluster]`: cluster membership and the relay.
    pub cluster: ClusterSection,
    /// `[auth]`: who may publish and play.
    pub auth: AuthSection,
    /// `[history]`: the collector and its store.
    pub history: HistorySection,
    /// `[dashboard]`: the web dashboard.
    pub dashboard: DashboardSection,
    /// `[hls]`: HLS and Low-Latency HLS output.
    pub hls: HlsSection,
}

/// `[history]`: the collector that samples the machine and the node, and the store of its
/// rollups (1 min to 7 days), served by `GET /api/v1/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySection {
    /// Sample and keep history (off: the history API answers 404, the dashboard shows only
    /// live values).
    pub enabled: bool,
    /// Seconds between samples; a divisor of 60.
    pub interval_secs: u64,
    /// The store's file. Empty: `history.redb` in `cluster.data_dir` when that directory
    /// exists, else the history is kept in memory only.
    pub path: PathBuf,
    /// Streams whose viewers and bit rate are kept, at each sample the ones with the most
    /// viewers on this node (0: none). They are kept a week; with the default 20 a node's
    /// store stays within 20 MiB (docs/benchmarks.md, History).
    pub max_stream_series: usize,
}

impl Default for HistorySection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 5,
            path: PathBuf::new(),
            max_stream_series: 20,
        }
    }
}

impl HistorySection {
    /// The store's file, if the history is kept on disk.
    pub fn store_path(&self, data_dir: &Path) -> Option<PathBuf> {
        if !self.path.as_os_str().is_empty() {
            Some(self.path.clone())
        } else if data_dir.is_dir() {
            Some(data_dir.join("history.redb"))
        } else {
            None
        }
    }
}

/// `[dashboard]`: the web dashboard at `/dashboard/` on the HTTP port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSection {
    /// Serve the dashboard.
    pub enabled: bool,
    /// The read-only views (streams, summary, relay, history, node, events, the GeoDNS and
    /// member views the dashboard reads) answer anyone. Off: they need the admin token, which
    /// the dashboard asks for; health and the cluster document GeoDNS reads stay open.
    pub public: bool,
    /// HTTP addresses of the GeoDNS servers (`skein-dns`'s `http.listen`) whose answers, edge
    /// health and history the GeoDNS view shows; this node asks them for the page.
    pub dns: Vec<String>,
}

impl Default for DashboardSection {
    fn default() -> Self {
        Self {
            enabled: true,
            public: true,
            dns: Vec::new(),
        }
    }
}

/// `[auth]`: what a publish and a play need, per app, and the hooks that may decide.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// What a publish needs: `"open"`, `"token"` (a signed token, `?token=...`) or `"hook"`
    /// (the `on_publish` hook decides).
    pub publish: Policy,
    /// What a play (RTMP or HTTP-FLV) needs: `"open"`, `"token"` or `"hook"`.
    pub play: Policy,
    /// Stream signing keys of a standalone node (a cluster keeps them in its state). Empty:
    /// `stream-keys.json` in `cluster.data_dir`.
    pub keys_file: PathBuf,
    /// `[auth.apps.NAME]`: the app's own `publish` / `play` policy, overriding the above.
    pub apps: BTreeMap<String, AppAuth>,
    /// `[auth.hooks]`: HTTP callbacks.
    pub hooks: HooksSection,
}

/// `[auth.apps.NAME]`: one app's policies; an unset one is the `[auth]` default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppAuth {
    /// What a publish of this app needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<Policy>,
    /// What a play of this app needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub play: Option<Policy>,
}

/// `[auth.hooks]`: HTTP callbacks in the style of SRS and nginx-rtmp. Each is a JSON POST;
/// `on_publish` and `on_play` decide (2xx allows), `on_unpublish` and `on_stop` are told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksSection {
    /// Asked before a publish when the policy is `hook` (`http://...`; empty: none).
    pub on_publish: String,
    /// Asked before a play when the policy is `hook`.
    pub on_play: String,
    /// Told when a publish ends (any policy).
    pub on_unpublish: String,
    /// Told when a play ends (any policy).
    pub on_stop: String,
    /// A hook that has not answered within this time counts as failed.
    pub timeout_ms: u64,
    /// What a failed hook call (timeout, unreachable, too many in flight) means: `false`
    /// refuses (the default), `true` lets the client in.
    pub allow_on_error: bool,
    /// An answer is remembered this long for the same client, stream and query (0: never).
    pub cache_ms: u64,
    /// Hook calls in flight at most; beyond it the attempt counts as failed.
    pub max_in_flight: usize,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            publish: Policy::Token,
            play: Policy::Open,
            keys_file: PathBuf::new(),
            apps: BTreeMap::new(),
            hooks: HooksSection::default(),
        }
    }
}

impl Default for HooksSection {
    fn default() -> Self {
        Self {
            on_publish: String::new(),
            on_play: String::new(),
            on_unpublish: String::new(),
            on_stop: String::new(),
            timeout_ms: 2_000,
            allow_on_error: false,
            cache_ms: 5_000,
            max_in_flight: 64,
        }
    }
}

impl AuthSection {
    /// What `action` on `app` needs.
    pub fn policy(&self, app: &str, action: Action) -> Policy {
        let own = self.apps.get(app).and_then(|a| match action {
            Action::Publish => a.publish,
            Action::Play => a.play,
        });
        own.unwrap_or(match action {
            Action::Publish => self.publish,
            Action::Play => self.play,
        })
    }

    /// Whether any app or default uses `policy` for `action`.
    pub fn uses(&self, action: Action, policy: Policy) -> bool {
        let default = match action {
            Action::Publish => self.publish,
            Action::Play => self.play,
        };
        default == policy
            || self.apps.values().any(|a| {
                let own = match action {
                    Action::Publish => a.publish,
                    Action::Play => a.play,
                };
                own == Some(policy)
            })
    }

    /// The key file of a standalone node.
    pub fn keys_path(&self, data_dir: &Path) -> PathBuf {
        if self.keys_file.as_os_str().is_empty() {
            data_dir.join("stream-keys.json")
        } else {
            self.keys_file.clone()
        }
    }
}

/// `[node]`: how this node is named and where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Name shown in the API, logs and dashboards.
    pub name: String,
    /// Region this node serves (used by the cluster and GeoDNS).
    pub region: String,
}

/// `[rtmp]`: the RTMP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpSection {
    /// Address the RTMP listener binds (default `0.0.0.0:1935`).
    pub listen: SocketAddr,
    /// Chunk size we announce and use for everything we send.
    pub chunk_size: u32,
    /// A connection must finish the handshake within this time.
    pub handshake_timeout_secs: u64,
    /// A publisher or an idle connection that sends nothing for this long is closed.
    pub idle_timeout_secs: u64,
    /// Largest RTMP message accepted from a peer.
    pub max_message_size: u32,
}

/// `[http]`: the HTTP listener for the API, metrics and HTTP-FLV.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Address the HTTP listener binds (default `0.0.0.0:8080`).
    pub listen: SocketAddr,
    /// Bearer token for admin calls (`DELETE /api/v1/clients/{id}`, cluster admin) and for the
    /// detailed read-only views. Empty: admin calls refused. Prefer `admin_token_file` or
    /// `SKEIN_ADMIN_TOKEN`, which keep the secret out of the file.
    pub admin_token: String,
    /// File holding the admin token (one line; read at start). Used when `admin_token` is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Separate listener for the admin calls. Set: they are served only there and answer 404
    /// on `listen`. Unset: they are served on `listen` like everything else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    /// Whether client addresses, publisher addresses and cluster internal addresses are shown
    /// without the admin token. Off: those views need the token (or are redacted).
    pub public_details: bool,
    /// Whether `/metrics` is served on `listen`. Off (with `admin_listen` set): only the admin
    /// listener serves it, so a firewall can keep it to a monitoring network.
    pub public_metrics: bool,
    /// PEM certificate chain for HTTPS on `listen` and `admin_listen`; with `tls_key`. Unset:
    /// plain HTTP. Both files are re-read when they change and on SIGHUP; a bad new pair is
    /// logged and the old one stays in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// A connection must send a request's complete header (and finish the TLS handshake)
    /// within this time, in ms; also how long an idle keep-alive connection is kept.
    pub header_read_timeout_ms: u64,
    /// Open HTTP connections (API, metrics, HTTP-FLV) beyond which the listener stops
    /// accepting until one closes. HTTP-FLV viewers also count against `limits`.
    pub max_connections: usize,
    /// On SIGTERM the node reports `draining` on its health endpoint and refuses new viewers
    /// for at most this long — until every recent health reader (GeoDNS) has seen it — before
    /// closing its connections.
    pub drain_ms: u64,
}

/// `[limits]`: admission limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Connections (RTMP and HTTP-FLV players together) beyond which new ones are refused.
    pub max_connections: usize,
    /// Connections from one client beyond which new ones from it are refused: one IPv4 address,
    /// or one IPv6 /64 (a host usually holds a whole /64).
    pub max_connections_per_ip: usize,
    /// Egress capacity reported to GeoDNS for load-aware answers; 0 = unknown.
    pub max_egress_mbps: u64,
}

/// `[hub]`: how the stream hub caches and feeds players.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubSection {
    /// Keep the last GOP so new players start on a keyframe at once.
    pub gop_cache: bool,
    /// A GOP larger than this is not cached (only sequence headers and metadata are).
    pub max_gop_bytes: usize,
    /// Payload bytes one stream holds at most: its ring plus its GOP cache. Past it the oldest
    /// frames of the ring are dropped; a player that had not read them skips to a keyframe.
    pub max_stream_bytes: usize,
    /// Messages a player may fall behind before it skips ahead to the next keyframe.
    pub player_queue: usize,
    /// A player that had to skip this many times within a minute is disconnected.
    pub max_skips_per_minute: u32,
    /// A player whose socket accepts nothing for this long is disconnected.
    pub write_timeout_secs: u64,
    /// After the publisher leaves, players wait this long for a republish before being closed.
    pub republish_grace_secs: u64,
    /// A new publish on a taken key replaces the current publisher instead of being refused.
    pub publish_replace: bool,
    /// A play of a key with no publisher waits this long for one (0: refused at once).
    pub play_wait_secs: u64,
}

/// `[hls]`: the HLS / LL-HLS output every node makes of the streams it is asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSection {
    /// Serve `/{app}/{key}.m3u8` and its segments.
    pub enabled: bool,
    /// The segment grid in milliseconds: a segment starts at the first keyframe of each
    /// multiple of it on the stream's timeline. The keyframe interval should not exceed it.
    pub segment_ms: u32,
    /// The partial-segment target in milliseconds (LL-HLS parts).
    pub part_ms: u32,
    /// Bytes of segments kept per stream (the sliding window), at least three segments' worth.
    pub max_window_bytes: usize,
    /// The per-stream segmenter stops when no HLS request came for this long.
    pub idle_secs: u64,
}

impl Default for HlsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            segment_ms: 1000,
            part_ms: 333,
            max_window_bytes: 16 << 20,
            idle_secs: 10,
        }
    }
}

/// Cluster membership and the relay between nodes. Used by `skein init`, `skein join` and by
/// `skein run` when `data_dir` already holds a cluster identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// Identity, keys, certificates and the Raft database of this node.
    pub data_dir: PathBuf,
    /// Internal QUIC address for Raft, joins and the media relay: bound and announced to the
    /// other nodes. Keep it off the public network; it is never the RTMP or HTTP port.
    pub internal: SocketAddr,
    /// Address announced for the public RTMP and HTTP ports (to GeoDNS and `skein status`).
    /// Unset: the IP of `internal` when the listeners are bound to a wildcard address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_ip: Option<IpAddr>,
    /// What this node may do: `"edge"`, `"origin"` or `"edge,origin"` in the file.
    #[serde(with = "roles_text")]
    pub roles: Roles,
    /// `[lat, lon]` of this node's region in degrees, published when the region has no
    /// coordinates yet (GeoDNS needs them to find the nearest region). Unset: not published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_coordinates: Option<[f64; 2]>,
    /// The region's virtual IPs (a load balancer's static addresses in front of its edges):
    /// GeoDNS hands these out for the region instead of edge addresses, while it still
    /// health-checks the edges. Published with the coordinates; empty: not published.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub region_vips: Vec<IpAddr>,
    /// Origins the cluster keeps (set by `skein init`; later changes go through the leader).
    pub origin_target: usize,
    /// An origin asked for a stream it does not have holds the request this long, in ms (the
    /// publisher may be on its way).
    pub pull_hold_ms: u64,
    /// A relay peer silent this long (no media, no keep-alive) is taken as dead and the stream
    /// moves to the next origin on the ring.
    pub relay_timeout_ms: u64,
    /// The edge mesh forms in a region with at least this many live edges (edge role, not
    /// origins): each stream then has one regional relay edge that pulls it from the origin,
    /// and the region's other nodes pull it from that edge. 0 turns the mesh off. Give every
    /// node of a region the same value.
    pub mesh_min_edges: usize,
    /// Lifetime of the node certificates the cluster CA signs, in seconds (set by `skein
    /// init`); every node renews its own after two thirds of it, without a restart.
    pub cert_lifetime_secs: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("skein-data"),
            internal: "127.0.0.1:7946".parse().expect("static address"),
            advertise_ip: None,
            roles: Roles {
                edge: true,
                origin: true,
            },
            region_coordinates: None,
            region_vips: Vec::new(),
            origin_target: 2,
            pull_hold_ms: 10_000,
            relay_timeout_ms: 750,
            mesh_min_edges: 3,
            cert_lifetime_secs: 86_400,
        }
    }
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: default_node_name(),
            region: "local".into(),
        }
    }
}

impl Default for RtmpSection {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:1935".parse().expect("static address"),
            chunk_size: 4096,
            handshake_timeout_secs: 5,
            idle_timeout_secs: 30,
            max_message_size: 8 << 20,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".parse().expect("static address"),
            admin_token: String::new(),
            admin_token_file: None,
            admin_listen: None,
            public_details: false,
            public_metrics: true,
            tls_cert: None,
            tls_key: None,
            header_read_timeout_ms: 10_000,
            max_connections: 10_000,
            drain_ms: 4_000,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 200,
            max_egress_mbps: 0,
        }
    }
}

impl Default for HubSection {
    fn default() -> Self {
        Self {
            gop_cache: true,
            max_gop_bytes: 16 << 20,
            max_stream_bytes: 64 << 20,
            player_queue: 512,
            max_skips_per_minute: 3,
            write_timeout_secs: 20,
            republish_grace_secs: 30,
            publish_replace: false,
            play_wait_secs: 0,
        }
    }
}

fn default_node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skein".into())
}

impl Config {
    /// Reads and validates a TOML file. Unknown keys are errors, so a typo is not silently ignored.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and cross-field rules; the error names the offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(128..=65536).contains(&self.rtmp.chunk_size) {
            bail!(
                "rtmp.chunk_size = {} is out of range (128..=65536)",
                self.rtmp.chunk_size
            );
        }
        if self.rtmp.max_message_size < 64 * 1024 {
            bail!("rtmp.max_message_size must be at least 65536 bytes");
        }
        if self.rtmp.handshake_timeout_secs == 0 || self.rtmp.idle_timeout_secs == 0 {
            bail!("rtmp.handshake_timeout_secs and rtmp.idle_timeout_secs must be positive");
        }
        if self.http.max_connections == 0 {
            bail!("http.max_connections must be positive");
        }
        if self.http.drain_ms > 60_000 {
            bail!("http.drain_ms must be at most 60000 (one minute)");
        }
        if self.limits.max_connections == 0 || self.limits.max_connections_per_ip == 0 {
            bail!("limits.max_connections and limits.max_connections_per_ip must be positive");
        }
        if self.hub.gop_cache && self.hub.max_gop_bytes >= self.hub.max_stream_bytes {
            bail!(
                "hub.max_gop_bytes ({}) must be less than hub.max_stream_bytes ({}): the GOP cache is part of the stream's budget",
                self.hub.max_gop_bytes,
                self.hub.max_stream_bytes
            );
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            bail!("http.tls_cert and http.tls_key go together: set both or neither");
        }
        if self.http.header_read_timeout_ms < 100 {
            bail!("http.header_read_timeout_ms must be at least 100");
        }
        if self
            .http
            .admin_listen
            .is_some_and(|a| a.port() != 0 && a == self.http.listen)
        {
            bail!("http.admin_listen must differ from http.listen");
        }
        if !self.http.public_metrics && self.http.admin_listen.is_none() {
            bail!("http.public_metrics = false needs http.admin_listen (where /metrics is served)");
        }
        if !(100..=10_000).contains(&self.hls.segment_ms)
            || !(50..=self.hls.segment_ms).contains(&self.hls.part_ms)
        {
            bail!("hls.segment_ms must be 100..=10000 and hls.part_ms 50..=hls.segment_ms");
        }
        if self.hls.idle_secs == 0 || self.hls.max_window_bytes < 1 << 20 {
            bail!("hls.idle_secs must be positive and hls.max_window_bytes at least 1048576");
        }
        if self.hub.player_queue < 16 {
            bail!("hub.player_queue must be at least 16 messages");
        }
        if self.hub.write_timeout_secs == 0 {
            bail!("hub.write_timeout_secs must be positive");
        }
        if self.node.name.is_empty() {
            bail!("node.name must not be empty");
        }
        if !(1..=60).contains(&self.history.interval_secs) || 60 % self.history.interval_secs != 0 {
            bail!(
                "history.interval_secs = {} must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)",
                self.history.interval_secs
            );
        }
        self.validate_auth()?;
        self.validate_cluster()
    }

    fn validate_auth(&self) -> anyhow::Result<()> {
        let hooks = &self.auth.hooks;
        for (action, url, name) in [
            (Action::Publish, &hooks.on_publish, "on_publish"),
            (Action::Play, &hooks.on_play, "on_play"),
        ] {
            if self.auth.uses(action, Policy::Hook) && url.is_empty() {
                bail!("auth: a {action} policy is \"hook\" but auth.hooks.{name} is not set");
            }
        }
        for (url, name) in [
            (&hooks.on_publish, "on_publish"),
            (&hooks.on_play, "on_play"),
            (&hooks.on_unpublish, "on_unpublish"),
            (&hooks.on_stop, "on_stop"),
        ] {
            if !url.is_empty() && !url.starts_with("http://") {
                bail!(
                    "auth.hooks.{name} = {url:?}: hooks are plain http:// URLs (keep the hook server on the internal network)"
                );
            }
            if !url.is_empty() && url.parse::<axum::http::Uri>().is_err() {
                bail!("auth.hooks.{name} = {url:?} is not a URL");
            }
        }
        if hooks.timeout_ms == 0 || hooks.timeout_ms > 30_000 {
            bail!("auth.hooks.timeout_ms must be 1..=30000");
        }
        if hooks.max_in_flight == 0 {
            bail!("auth.hooks.max_in_flight must be positive");
        }
        Ok(())
    }

    fn validate_cluster(&self) -> anyhow::Result<()> {
        let c = &self.cluster;
        if let Some([lat, lon]) = c.region_coordinates
            && !((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
        {
            bail!("cluster.region_coordinates = [{lat}, {lon}] is not [lat, lon] in degrees");
        }
        if c.origin_target == 0 {
            bail!("cluster.origin_target must be at least 1");
        }
        if c.relay_timeout_ms < 200 {
            bail!("cluster.relay_timeout_ms must be at least 200");
        }
        if c.cert_lifetime_secs < 3 {
            bail!("cluster.cert_lifetime_secs must be at least 3");
        }
        if c.internal.port() == self.rtmp.listen.port()
            || c.internal.port() == self.http.listen.port()
        {
            bail!("cluster.internal must use its own port, not the RTMP or HTTP one");
        }
        Ok(())
    }

    /// `rtmp.handshake_timeout_secs` as a [`Duration`].
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.rtmp.handshake_timeout_secs)
    }

    /// The admin token: `http.admin_token`, else the first line of `http.admin_token_file`,
    /// else empty (admin calls disabled).
    pub fn resolve_admin_token(&mut self) -> anyhow::Result<()> {
        if let (true, Some(path)) = (
            self.http.admin_token.is_empty(),
            &self.http.admin_token_file,
        ) {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read http.admin_token_file {}", path.display()))?;
            let token = text.lines().next().unwrap_or_default().trim();
            if token.is_empty() {
                bail!("http.admin_token_file {} is empty", path.display());
            }
            self.http.admin_token = token.to_owned();
        }
        Ok(())
    }

    /// A copy safe to print: every secret replaced by `<redacted>`.
    pub fn redacted(&self) -> Config {
        let mut copy = self.clone();
        if !copy.http.admin_token.is_empty() {
            copy.http.admin_token = "<redacted>".into();
        }
        copy
    }

    /// `rtmp.idle_timeout_secs` as a [`Duration`].
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.rtmp.idle_timeout_secs)
    }
}

/// Roles as the file writes them: `"edge,origin"`, parsed once when the file is read.
mod roles_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use skein_raft::Roles;

    pub fn serialize<S: Serializer>(roles: &Roles, out: S) -> Result<S::Ok, S::Error> {
        out.collect_str(roles)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Roles, D::Error> {
        let text = String::deserialize(input)?;
        Roles::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_working_defaults() {
        let config: Config = toml::from_str("").unwrap();
        config.validate().unwrap();
        assert_eq!(config.rtmp.listen.port(), 1935);
        assert_eq!(config.http.listen.port(), 8080);
    }

    #[test]
    fn example_file_is_valid_and_shows_the_defaults() {
        let example: Config = toml::from_str(include_str!("../skein.example.toml")).unwrap();
        example.validate().unwrap();
        let mut defaults = Config::default();
        defaults.node.name = example.node.name.clone();
        assert_eq!(
            toml::to_string(&example).unwrap(),
            toml::to_string(&defaults).unwrap()
        );
    }

    #[test]
    fn hls_durations_are_checked() {
        for bad in [
            "[hls]\nsegment_ms = 50\n",
            "[hls]\nsegment_ms = 1000\npart_ms = 2000\n",
            "[hls]\nidle_secs = 0\n",
        ] {
            let config: Config = toml::from_str(bad).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("hls."), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = toml::from_str::<Config>("[rtmp]\nchunksize = 10\n").unwrap_err();
        assert!(err.to_string().contains("chunksize"), "{err}");
    }

    #[test]
    fn cluster_values_are_typed_when_the_file_is_read() {
        let config: Config = toml::from_str(
            "[cluster]\nroles = \"edge\"\nadvertise_ip = \"192.0.2.7\"\nregion_coordinates = [50.1, 8.7]\nregion_vips = [\"192.0.2.80\"]\n",
        )
        .unwrap();
        assert_eq!(
            config.cluster.roles,
            Roles {
                edge: true,
                origin: false
            }
        );
        assert_eq!(
            config.cluster.advertise_ip,
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(config.cluster.region_coordinates, Some([50.1, 8.7]));
        assert_eq!(
            config.cluster.region_vips,
            vec!["192.0.2.80".parse::<IpAddr>().unwrap()]
        );
        for (bad, field) in [
            ("roles = \"edge,relay\"", "relay"),
            ("advertise_ip = \"not-an-ip\"", "advertise_ip"),
            ("region_coordinates = [50.1]", "region_coordinates"),
        ] {
            let err = toml::from_str::<Config>(&format!("[cluster]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn auth_policies_are_per_app_and_action_and_hooks_must_be_set() {
        let config: Config = toml::from_str(
            "[auth]\nplay = \"open\"\n[auth.apps.live]\nplay = \"token\"\n[auth.apps.free]\npublish = \"open\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.auth.policy("live", Action::Play), Policy::Token);
        assert_eq!(config.auth.policy("live", Action::Publish), Policy::Token);
        assert_eq!(config.auth.policy("free", Action::Publish), Policy::Open);
        assert_eq!(config.auth.policy("other", Action::Play), Policy::Open);
        let config: Config = toml::from_str("[auth]\npublish = \"hook\"\n").unwrap();
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("auth.hooks.on_publish"), "{err}");
        let config: Config =
            toml::from_str("[auth.hooks]\non_stop = \"https://example.com/\"\n").unwrap();
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("on_stop"), "{err}");
        let err = toml::from_str::<Config>("[auth]\nplay = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
    }

    #[test]
    fn http_and_hub_cross_field_rules_name_their_fields() {
        for (bad, field) in [
            ("[http]\ntls_cert = \"c.pem\"\n", "http.tls_key"),
            (
                "[http]\nheader_read_timeout_ms = 5\n",
                "http.header_read_timeout_ms",
            ),
            (
                "[http]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n",
                "http.admin_listen",
            ),
            ("[http]\npublic_metrics = false\n", "http.admin_listen"),
            ("[hub]\nmax_stream_bytes = 1000\n", "hub.max_stream_bytes"),
        ] {
            let config: Config = toml::from_str(bad).unwrap();
            let err = config.validate().unwrap_err();
            assert!(err.to_string().contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn the_admin_token_file_is_read_and_redacted_copies_hide_the_token() {
        let file = std::env::temp_dir().join(format!("skein-token-{}", std::process::id()));
        std::fs::write(&file, "tok3n\nignored\n").unwrap();
        let mut config = Config::default();
        config.http.admin_token_file = Some(file.clone());
        config.resolve_admin_token().unwrap();
        assert_eq!(config.http.admin_token, "tok3n");
        assert_eq!(config.redacted().http.admin_token, "<redacted>");
        std::fs::write(&file, "\n").unwrap();
        config.http.admin_token.clear();
        let err = config.resolve_admin_token().unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_field_name() {
        let config: Config = toml::from_str("[rtmp]\nchunk_size = 1\n").unwrap();
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("rtmp.chunk_size"), "{err}");
    }
}
