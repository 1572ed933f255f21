//! The node's history as the node shares it: the store (`skein-history`'s, over the node's
//! [families](crate::history::FAMILIES), in `history.redb` in the data directory or in memory)
//! and the machine inventory of the latest sample.

use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use skein_history::HistoryStore;

use crate::config::Config;
use crate::history::FAMILIES;

/// The machine, as the dashboard's node view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// Host name.
    pub host: String,
    /// Operating system and kernel.
    pub os: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical cores.
    pub cores: usize,
    /// Physical cores, when known.
    pub physical_cores: Option<usize>,
    /// Machine memory in bytes.
    pub memory_bytes: u64,
    /// Network interfaces with their addresses.
    pub interfaces: Vec<Interface>,
}

/// One network interface.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// Its addresses with prefix lengths.
    pub addresses: Vec<String>,
    /// Bytes received since boot.
    pub received_bytes: u64,
    /// Bytes sent since boot.
    pub sent_bytes: u64,
}

/// The node's history: the store, the sample interval and the inventory.
pub struct History {
    /// The rollups.
    pub store: Arc<HistoryStore>,
    inventory: Mutex<Option<Inventory>>,
}

impl History {
    /// The store `config` names, over the node's families: its file, or memory when there is
    /// no data directory.
    pub fn open(config: &Config) -> anyhow::Result<Arc<Self>> {
        let interval_ms = config.history.interval_secs * 1000;
        let store = match config.history.store_path(&config.cluster.data_dir) {
            Some(path) => HistoryStore::open(&path, interval_ms, &FAMILIES)?,
            None => {
                tracing::info!(
                    data_dir = %config.cluster.data_dir.display(),
                    "no data directory: history is kept in memory only (set history.path to keep it)"
                );
                HistoryStore::in_memory(interval_ms, &FAMILIES)?
            }
        };
        Ok(Self::new(store))
    }

    /// History kept in `store`.
    pub fn new(store: HistoryStore) -> Arc<Self> {
        Arc::new(Self {
            store: Arc::new(store),
            inventory: Mutex::new(None),
        })
    }

    /// Sample interval in ms.
    pub fn interval_ms(&self) -> u64 {
        self.store.interval_ms()
    }

    /// The machine inventory from the latest sample.
    pub fn inventory(&self) -> Option<Inventory> {
        self.inventory.lock().clone()
    }

    /// Keeps the inventory of the latest sample.
    pub(super) fn set_inventory(&self, inventory: Inventory) {
        *self.inventory.lock() = Some(inventory);
    }
}
