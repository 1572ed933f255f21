//! Node configuration: a TOML file whose every field has a default, overridden by command-line
//! flags and `SKEIN_*` environment variables (see `cli`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    pub rtmp: RtmpSection,
    pub http: HttpSection,
    pub limits: LimitsSection,
    pub hub: HubSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Name shown in the API, logs and dashboards.
    pub name: String,
    /// Region this node serves (used by the cluster and GeoDNS).
    pub region: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpSection {
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    pub listen: SocketAddr,
    /// Bearer token for admin calls (`DELETE /api/v1/clients/{id}`). Empty: admin calls refused.
    pub admin_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Connections (RTMP and HTTP-FLV players together) beyond which new ones are refused.
    pub max_connections: usize,
    /// Connections from one IP address beyond which new ones from it are refused.
    pub max_connections_per_ip: usize,
    /// Egress capacity reported to GeoDNS for load-aware answers; 0 = unknown.
    pub max_egress_mbps: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubSection {
    /// Keep the last GOP so new players start on a keyframe at once.
    pub gop_cache: bool,
    /// A GOP larger than this is not cached (only sequence headers and metadata are).
    pub max_gop_bytes: usize,
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
        if self.limits.max_connections == 0 || self.limits.max_connections_per_ip == 0 {
            bail!("limits.max_connections and limits.max_connections_per_ip must be positive");
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
        Ok(())
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.rtmp.handshake_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.rtmp.idle_timeout_secs)
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
    fn unknown_key_is_an_error_naming_it() {
        let err = toml::from_str::<Config>("[rtmp]\nchunksize = 10\n").unwrap_err();
        assert!(err.to_string().contains("chunksize"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_field_name() {
        let config: Config = toml::from_str("[rtmp]\nchunk_size = 1\n").unwrap();
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("rtmp.chunk_size"), "{err}");
    }
}
