//! Clears dead marks: every few hundred milliseconds, each peer routed around is pinged over
//! the relay; the first answer puts it back on this node's ring.

use std::sync::Arc;
use std::time::Duration;

use super::Relay;
use super::wire::{Hello, RelayMessage};

const PROBE_INTERVAL: Duration = Duration::from_millis(500);

pub(super) async fn run(relay: Arc<Relay>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        relay.routing.forget_unrouted();
        for node in relay.routing.dead() {
            if ping(&relay, node).await {
                relay.routing.clear(node);
            }
        }
    }
}

async fn ping(relay: &Arc<Relay>, node: skein_raft::NodeId) -> bool {
    let Ok(mut conn) = relay.connect(node, Hello::Ping).await else {
        return false;
    };
    matches!(
        tokio::time::timeout(relay.settings.timeout, conn.rx.recv()).await,
        Ok(Ok(Some(RelayMessage::Keepalive)))
    )
}
