//! Readers blocked until a key's record changes (ELECT.OBSERVE,
//! SVC.DISCOVER ... AFTER, BARRIER.WAIT): woken by the `Changed` events
//! of applied entries, on this node, for exactly the keys they watch. No
//! polling, and a write to another key wakes nobody. Change-feed readers
//! (CHANGES.READ ... BLOCK, CHANGES.SUBSCRIBE) follow the index of the
//! newest change instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

pub struct Watchers {
    by_key: Mutex<HashMap<Bytes, Vec<Arc<Notify>>>>,
    /// The index of the newest applied change.
    feed: tokio::sync::watch::Sender<u64>,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers {
            by_key: Mutex::default(),
            feed: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// A registration; dropping it stops watching.
pub struct Watch {
    watchers: Arc<Watchers>,
    key: Bytes,
    notify: Arc<Notify>,
}

impl Watch {
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut by_key = self.watchers.by_key.lock().expect("watchers lock");
        if let Some(list) = by_key.get_mut(&self.key) {
            list.retain(|n| !Arc::ptr_eq(n, &self.notify));
            if list.is_empty() {
                by_key.remove(&self.key);
            }
        }
    }
}

impl Watchers {
    /// Starts watching `key`.
    pub fn watch(self: &Arc<Self>, key: Bytes) -> Watch {
        let notify = Arc::new(Notify::new());
        self.by_key
            .lock()
            .expect("watchers lock")
            .entry(key.clone())
            .or_default()
            .push(notify.clone());
        Watch {
            watchers: self.clone(),
            key,
            notify,
        }
    }

    /// Follows the index of the newest change (any key).
    pub fn feed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed.subscribe()
    }

    /// Waits for the next change after `feed` was last marked seen: true
    /// if one came, false once `deadline` passed (None: no deadline).
    pub async fn next_change(
        feed: &mut tokio::sync::watch::Receiver<u64>,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        match deadline {
            Some(at) => tokio::select! {
                changed = feed.changed() => changed.is_ok(),
                _ = tokio::time::sleep_until(at.into()) => false,
            },
            None => feed.changed().await.is_ok(),
        }
    }

    /// `key`'s record changed at `index`: wake its watchers.
    pub fn changed(&self, index: u64, key: &Bytes) {
        self.feed.send_if_modified(|newest| {
            let moved = index > *newest;
            *newest = (*newest).max(index);
            moved
        });
        let by_key = self.by_key.lock().expect("watchers lock");
        if let Some(list) = by_key.get(key) {
            for notify in list {
                // A permit is stored if the watcher is between two looks,
                // so the change is not missed.
                notify.notify_one();
            }
        }
    }

    /// Keys being watched (for INFO).
    pub fn watched_keys(&self) -> usize {
        self.by_key.lock().expect("watchers lock").len()
    }
}
