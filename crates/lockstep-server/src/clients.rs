//! The registry of connected clients, for CLIENT LIST / INFO and INFO clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub local: SocketAddr,
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
    pub protocol: u8,
    pub connected_at: Instant,
    pub last_command: String,
    pub last_active: Instant,
    /// Subscriptions: channels, patterns, shard channels.
    pub subscriptions: (usize, usize, usize),
    /// Commands queued in MULTI (None outside).
    pub multi: Option<usize>,
    pub watched: usize,
    /// CLIENT LIST flags beyond N: P (subscriber), x (in MULTI), t
    /// (tracking), O (monitor).
    pub flags: String,
    pub user: String,
    /// Wakes the connection to close it (CLIENT KILL).
    pub kill: std::sync::Arc<tokio::sync::Notify>,
}

impl ClientInfo {
    /// One line in Redis's CLIENT LIST format.
    pub fn line(&self) -> String {
        let now = Instant::now();
        let flags = if self.flags.is_empty() {
            "N"
        } else {
            &self.flags
        };
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={flags} db=0 sub={} psub={} ssub={} multi={} watch={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 tot-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.local,
            self.name,
            now.duration_since(self.connected_at).as_secs(),
            now.duration_since(self.last_active).as_secs(),
            self.subscriptions.0,
            self.subscriptions.1,
            self.subscriptions.2,
            self.multi.map_or(-1, |n| n as i64),
            self.watched,
            if self.last_command.is_empty() { "NULL" } else { &self.last_command },
            if self.user.is_empty() { "default" } else { &self.user },
            self.protocol,
            self.lib_name,
            self.lib_ver,
        )
    }
}

#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    connected: Mutex<BTreeMap<u64, ClientInfo>>,
    total_connections: AtomicU64,
    total_commands: AtomicU64,
}

impl Clients {
    pub fn register(&self, addr: SocketAddr, local: SocketAddr) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            ClientInfo {
                id,
                addr,
                local,
                name: String::new(),
                lib_name: String::new(),
                lib_ver: String::new(),
                protocol: 2,
                connected_at: now,
                last_command: String::new(),
                last_active: now,
                subscriptions: (0, 0, 0),
                multi: None,
                watched: 0,
                flags: String::new(),
                user: String::new(),
                kill: Default::default(),
            },
        );
        id
    }

    /// A connection id no RESP client has, for another front end's
    /// connections (their watches are keyed by it).
    pub fn reserve_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn unregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn update(&self, id: u64, change: impl FnOnce(&mut ClientInfo)) {
        if let Some(info) = self.lock().get_mut(&id) {
            change(info);
        }
    }

    pub fn count_command(&self) {
        self.total_commands.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, id: u64) -> Option<ClientInfo> {
        self.lock().get(&id).cloned()
    }

    pub fn all(&self) -> Vec<ClientInfo> {
        self.lock().values().cloned().collect()
    }

    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    pub fn total_connections(&self) -> u64 {
        self.total_connections.load(Ordering::Relaxed)
    }

    pub fn total_commands(&self) -> u64 {
        self.total_commands.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ClientInfo>> {
        self.connected.lock().expect("clients lock")
    }
}
