//! The RTMP client driver: the sans-IO `ClientSession` over a TCP socket. Used by the load
//! generator and by tests; node-to-node relays build on it.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession};

/// `rtmp://host[:port]/app/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port; 1935 when the URL has none.
    pub port: u16,
    /// The RTMP application, the first path segment.
    pub app: String,
    /// The stream key, the rest of the path.
    pub key: String,
}

impl RtmpUrl {
    /// Parses `rtmp://host[:port]/app/key`; an IPv6 host goes in brackets.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("rtmp://")
            .with_context(|| format!("{url}: not an rtmp:// URL"))?;
        let (authority, path) = rest
            .split_once('/')
            .with_context(|| format!("{url}: missing /app/key"))?;
        let (app, key) = path
            .split_once('/')
            .with_context(|| format!("{url}: missing stream key after the app"))?;
        if app.is_empty() || key.is_empty() {
            bail!("{url}: app and stream key must not be empty");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_matches(|c| c == '[' || c == ']').to_owned(),
                p.parse()
                    .with_context(|| format!("{url}: bad port {p:?}"))?,
            ),
            _ => (authority.to_owned(), 1935),
        };
        Ok(Self {
            host,
            port,
            app: app.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The `tcUrl` sent in connect: `rtmp://host:port/app`.
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}:{}/{}", self.host, self.port, self.app)
    }

    /// The same URL with another stream key.
    pub fn with_key(&self, key: &str) -> Self {
        Self {
            key: key.to_owned(),
            ..self.clone()
        }
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tc_url(), self.key)
    }
}

/// An RTMP client connection: a [`ClientSession`] over a TCP socket.
pub struct RtmpClient {
    socket: TcpStream,
    session: ClientSession,
    inbound: BytesMut,
    events: VecDeque<ClientEvent>,
    received: u64,
}

impl RtmpClient {
    /// Connects the TCP socket and starts the handshake.
    pub async fn connect(url: &RtmpUrl) -> anyhow::Result<Self> {
        let socket = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("cannot connect to {}:{}", url.host, url.port))?;
        socket.set_nodelay(true)?;
        let mut session = ClientSession::new(ClientConfig::new(&url.app, url.tc_url()));
        session.start();
        Ok(Self {
            socket,
            session,
            inbound: BytesMut::with_capacity(64 * 1024),
            events: VecDeque::new(),
            received: 0,
        })
    }

    /// The sans-IO session, to publish, play or send media; [`flush`](Self::flush) after.
    pub fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Bytes read from the socket so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Writes all output the session has queued to the socket.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        while let Some(out) = self.session.take_output() {
            self.socket.write_all(&out).await?;
        }
        Ok(())
    }

    /// The next event from the server, reading as needed.
    pub async fn next_event(&mut self) -> anyhow::Result<ClientEvent> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            self.flush().await?;
            if self.inbound.capacity() - self.inbound.len() < 16 * 1024 {
                self.inbound.reserve(64 * 1024);
            }
            let n = self.socket.read_buf(&mut self.inbound).await?;
            if n == 0 {
                bail!("server closed the connection");
            }
            self.received += n as u64;
            self.session.feed(&mut self.inbound)?;
            while let Some(event) = self.session.poll_event() {
                self.events.push_back(event);
            }
        }
    }

    async fn wait_started(&mut self, what: &str, timeout: Duration) -> anyhow::Result<()> {
        let wait = async {
            loop {
                match self.next_event().await? {
                    ClientEvent::PublishStarted | ClientEvent::PlayStarted => return Ok(()),
                    ClientEvent::Status {
                        level,
                        code,
                        description,
                    } if level == "error" => bail!("{what} refused: {code}: {description}"),
                    ClientEvent::Disconnected => bail!("{what} refused: server closed the session"),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .with_context(|| format!("{what} not started within {timeout:?}"))?
    }

    /// Plays `key` and waits until the server accepts it.
    pub async fn play(&mut self, key: &str, timeout: Duration) -> anyhow::Result<()> {
        self.session.play(key);
        self.wait_started("play", timeout).await
    }

    /// Publishes `key` and waits until the server accepts it.
    pub async fn publish(&mut self, key: &str, timeout: Duration) -> anyhow::Result<()> {
        self.session.publish(key);
        self.wait_started("publish", timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/live/cam1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str(), u.key.as_str()),
            ("127.0.0.1", 1936, "live", "cam1")
        );
        assert_eq!(RtmpUrl::parse("rtmp://example/live/k").unwrap().port, 1935);
        assert_eq!(u.to_string(), "rtmp://127.0.0.1:1936/live/cam1");
        assert!(RtmpUrl::parse("http://x/live/k").is_err());
        assert!(RtmpUrl::parse("rtmp://x/live").is_err());
        assert!(RtmpUrl::parse("rtmp://x:abc/live/k").is_err());
    }
}
