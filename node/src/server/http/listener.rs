//! Admission of HTTP connections, shared by the public and the admin listener: at most
//! `http.max_connections` open at once (at the cap the listeners stop accepting until one
//! closes; the kernel's backlog holds the rest), and at most `limits.max_connections_per_ip`
//! from one client — an IPv4 address or an IPv6 /64, as for RTMP — beyond which a new
//! connection is closed at once. A slot is held for as long as its connection lives.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::server::clients::client_network;

/// The HTTP connection limits and who holds them.
pub struct HttpAdmission {
    permits: Arc<Semaphore>,
    max_per_network: usize,
    per_network: Mutex<HashMap<IpAddr, usize>>,
}

impl HttpAdmission {
    /// Limits of `max` connections in total and `max_per_network` per client network.
    pub fn new(max: usize, max_per_network: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max_per_network,
            per_network: Mutex::new(HashMap::new()),
        })
    }

    /// Waits until fewer than `max` connections are open; the permit is the room for one more.
    pub async fn room(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Admits a connection from `peer` into the room `permit` holds, unless its network has
    /// all its connections open already.
    pub fn admit(
        self: &Arc<Self>,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> Option<ConnectionSlot> {
        let network = client_network(peer.ip());
        let mut per_network = self.per_network.lock();
        let open = per_network.entry(network).or_default();
        if *open >= self.max_per_network {
            return None;
        }
        *open += 1;
        Some(ConnectionSlot {
            admission: self.clone(),
            network,
            _permit: permit,
        })
    }

    /// The per-client limit.
    pub fn max_per_network(&self) -> usize {
        self.max_per_network
    }
}

/// One admitted HTTP connection's place in the limits; dropping it frees the place.
pub struct ConnectionSlot {
    admission: Arc<HttpAdmission>,
    network: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_network = self.admission.per_network.lock();
        if let Some(open) = per_network.get_mut(&self.network) {
            *open -= 1;
            if *open == 0 {
                per_network.remove(&self.network);
            }
        }
    }
}

/// The peer address of an HTTP connection, as handlers extract it (`ConnectInfo<PeerAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_network_gets_its_share_and_no_more() {
        let admission = HttpAdmission::new(10, 2);
        let peer = |s: &str| s.parse::<SocketAddr>().unwrap();
        let a = admission.admit(peer("[2001:db8::1]:1"), admission.room().await);
        let b = admission.admit(peer("[2001:db8::2]:1"), admission.room().await);
        assert!(a.is_some() && b.is_some());
        assert!(
            admission
                .admit(peer("[2001:db8::3]:1"), admission.room().await)
                .is_none(),
            "a third connection of the same /64"
        );
        assert!(
            admission
                .admit(peer("[2001:db8:0:1::1]:1"), admission.room().await)
                .is_some()
        );
        drop(a);
        assert!(
            admission
                .admit(peer("[2001:db8::3]:1"), admission.room().await)
                .is_some()
        );
    }
}
