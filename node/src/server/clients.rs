//! Every connection the node serves (RTMP and HTTP-FLV): admission against the connection
//! limits, per-client counters for the API, and a cancel handle so an admin can drop one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Traffic;

/// How a client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// An RTMP connection (publisher or player).
    Rtmp,
    /// An HTTP-FLV player.
    HttpFlv,
    /// An HLS request, or a stream's HLS segmenter (the one player HLS viewers share).
    Hls,
}

/// What a connection is doing; in the API as `role` and `stream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", content = "stream", rename_all = "lowercase")]
pub enum Role {
    /// Connected, not yet publishing or playing.
    Connecting,
    /// Publishing the named stream.
    Publisher(String),
    /// Playing the named stream.
    Player(String),
}

/// Why [`Clients::admit`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `limits.max_connections` (the value) connections are open.
    #[error("connection limit reached ({0} connections)")]
    TooMany(usize),
    /// `limits.max_connections_per_ip` (the value) connections are open from this address.
    #[error("per-address connection limit reached ({0} connections from this address)")]
    TooManyFromAddress(usize),
}

impl Refused {
    /// Label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::TooMany(_) => "max_connections",
            Refused::TooManyFromAddress(_) => "max_connections_per_ip",
        }
    }
}

impl Protocol {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::HttpFlv => "http-flv",
            Protocol::Hls => "hls",
        }
    }
}

/// One admitted connection: identity, role and byte counters.
pub struct Client {
    /// Node-unique connection id, from 1; used by `DELETE /api/v1/clients/{id}`.
    pub id: u64,
    /// The remote address.
    pub peer: SocketAddr,
    /// RTMP or HTTP-FLV.
    pub protocol: Protocol,
    /// When the connection was admitted.
    pub connected_at: Instant,
    connected_unix: u64,
    role: Mutex<Role>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Cancelled to close the connection (admin kick, replaced publisher).
    pub cancel: CancellationToken,
    traffic: Arc<Traffic>,
}

impl Client {
    /// Records what the connection is doing now.
    pub fn set_role(&self, role: Role) {
        *self.role.lock() = role;
    }

    /// What the connection is doing now.
    pub fn role(&self) -> Role {
        self.role.lock().clone()
    }

    /// Counts `n` bytes received, for this client and the node.
    pub fn add_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        self.traffic.bytes_in.inc_by(n as u64);
    }

    /// Counts `n` bytes sent, for this client and the node.
    pub fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        self.traffic.bytes_out.inc_by(n as u64);
    }

    /// A snapshot of this client for the API.
    pub fn view(&self) -> ClientView {
        ClientView {
            id: self.id,
            peer: self.peer,
            protocol: self.protocol,
            role: self.role(),
            connected_at_unix: self.connected_unix,
            connected_secs: self.connected_at.elapsed().as_secs_f64(),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// A client as the clients API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    /// Connection id.
    pub id: u64,
    /// The remote address.
    pub peer: SocketAddr,
    /// RTMP or HTTP-FLV.
    pub protocol: Protocol,
    /// What the connection is doing, flattened into `role` and `stream`.
    #[serde(flatten)]
    pub role: Role,
    /// When the connection was admitted, in Unix seconds.
    pub connected_at_unix: u64,
    /// Seconds since the connection was admitted.
    pub connected_secs: f64,
    /// Bytes received from the client.
    pub bytes_in: u64,
    /// Bytes sent to the client.
    pub bytes_out: u64,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Arc<Client>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The table of open connections, enforcing the connection limits.
pub struct Clients {
    max: usize,
    max_per_ip: usize,
    next_id: AtomicU64,
    table: Mutex<Table>,
    /// The node-wide byte counters every client adds to.
    pub traffic: Arc<Traffic>,
}

impl Clients {
    /// A table allowing `max` connections in total and `max_per_ip` from one IP address.
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_ip,
            next_id: AtomicU64::new(1),
            table: Mutex::new(Table::default()),
            traffic: Arc::new(Traffic::default()),
        })
    }

    /// The total connection limit.
    pub fn max_connections(&self) -> usize {
        self.max
    }

    /// Admits a new connection or says which limit refuses it. The returned guard removes the
    /// client again when dropped.
    pub fn admit(
        self: &Arc<Self>,
        peer: SocketAddr,
        protocol: Protocol,
    ) -> Result<ClientGuard, Refused> {
        let mut table = self.table.lock();
        if table.by_id.len() >= self.max {
            return Err(Refused::TooMany(self.max));
        }
        let from_ip = table.per_ip.entry(client_network(peer.ip())).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(Refused::TooManyFromAddress(self.max_per_ip));
        }
        *from_ip += 1;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(Client {
            id,
            peer,
            protocol,
            connected_at: Instant::now(),
            connected_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            role: Mutex::new(Role::Connecting),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            traffic: self.traffic.clone(),
        });
        table.by_id.insert(id, client.clone());
        Ok(ClientGuard {
            clients: self.clone(),
            client,
        })
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        self.table.lock().by_id.len()
    }

    /// Every open connection, by id.
    pub fn list(&self) -> Vec<ClientView> {
        let clients: Vec<Arc<Client>> = self.table.lock().by_id.values().cloned().collect();
        let mut views: Vec<ClientView> = clients.iter().map(|c| c.view()).collect();
        views.sort_by_key(|v| v.id);
        views
    }

    /// Counts connections by what they do: (publishers, players, other).
    pub fn roles(&self) -> (usize, usize, usize) {
        let clients: Vec<Arc<Client>> = self.table.lock().by_id.values().cloned().collect();
        clients
            .iter()
            .fold((0, 0, 0), |(p, v, o), c| match c.role() {
                Role::Publisher(_) => (p + 1, v, o),
                Role::Player(_) => (p, v + 1, o),
                Role::Connecting => (p, v, o + 1),
            })
    }

    /// HTTP-FLV players (the other players of [`roles`](Self::roles) play RTMP).
    pub fn http_flv_players(&self) -> usize {
        let clients: Vec<Arc<Client>> = self.table.lock().by_id.values().cloned().collect();
        clients
            .iter()
            .filter(|c| c.protocol == Protocol::HttpFlv && matches!(c.role(), Role::Player(_)))
            .count()
    }

    /// Cancels a client's connection; false when there is no such client.
    pub fn kick(&self, id: u64) -> bool {
        let client = self.table.lock().by_id.get(&id).cloned();
        client.map(|c| c.cancel.cancel()).is_some()
    }

    fn remove(&self, client: &Client) {
        let mut table = self.table.lock();
        table.by_id.remove(&client.id);
        let network = client_network(client.peer.ip());
        if let Some(n) = table.per_ip.get_mut(&network) {
            *n -= 1;
            if *n == 0 {
                table.per_ip.remove(&network);
            }
        }
    }
}

/// What the per-address limit counts as one client: an IPv4 address (also when it comes
/// IPv4-mapped), or an IPv6 /64 — one host usually holds a whole /64, so counting IPv6
/// addresses one by one would make the limit meaningless.
pub(crate) fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// A connection's membership in the table, for as long as the connection lives.
pub struct ClientGuard {
    clients: Arc<Clients>,
    /// The admitted client.
    pub client: Arc<Client>,
}

impl std::ops::Deref for ClientGuard {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.clients.remove(&self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_hold_and_are_released_on_drop() {
        let clients = Clients::new(3, 2);
        let a = clients.admit(addr("127.0.0.1:1"), Protocol::Rtmp).unwrap();
        let _b = clients.admit(addr("127.0.0.1:2"), Protocol::Rtmp).unwrap();
        assert_eq!(
            clients
                .admit(addr("127.0.0.1:3"), Protocol::Rtmp)
                .err()
                .unwrap(),
            Refused::TooManyFromAddress(2)
        );
        let _c = clients
            .admit(addr("127.0.0.2:1"), Protocol::HttpFlv)
            .unwrap();
        assert_eq!(
            clients
                .admit(addr("127.0.0.3:1"), Protocol::Rtmp)
                .err()
                .unwrap(),
            Refused::TooMany(3)
        );
        drop(a);
        assert_eq!(clients.count(), 2);
        clients.admit(addr("127.0.0.1:4"), Protocol::Rtmp).unwrap();
    }

    #[test]
    fn an_ipv6_host_is_its_slash_64() {
        let clients = Clients::new(100, 2);
        let _a = clients
            .admit(addr("[2001:db8:1:2::a]:1"), Protocol::Rtmp)
            .unwrap();
        let _b = clients
            .admit(addr("[2001:db8:1:2:ffff::b]:1"), Protocol::Rtmp)
            .unwrap();
        assert_eq!(
            clients
                .admit(addr("[2001:db8:1:2::c]:1"), Protocol::Rtmp)
                .err(),
            Some(Refused::TooManyFromAddress(2)),
            "a third address of the same /64"
        );
        clients
            .admit(addr("[2001:db8:1:3::a]:1"), Protocol::Rtmp)
            .unwrap();
        // IPv4-mapped addresses count as the IPv4 address they carry.
        let _v4 = clients.admit(addr("192.0.2.1:1"), Protocol::Rtmp).unwrap();
        let _mapped = clients
            .admit(addr("[::ffff:192.0.2.1]:2"), Protocol::Rtmp)
            .unwrap();
        assert!(clients.admit(addr("192.0.2.1:3"), Protocol::Rtmp).is_err());
    }

    #[test]
    fn kick_cancels_only_that_client() {
        let clients = Clients::new(10, 10);
        let a = clients.admit(addr("127.0.0.1:1"), Protocol::Rtmp).unwrap();
        let b = clients.admit(addr("127.0.0.1:2"), Protocol::Rtmp).unwrap();
        assert!(clients.kick(a.id));
        assert!(a.cancel.is_cancelled());
        assert!(!b.cancel.is_cancelled());
        assert!(!clients.kick(999));
    }
}
