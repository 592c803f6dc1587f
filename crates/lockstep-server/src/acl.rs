//! This node's view of the users: a cache of the replicated user records
//! (dropped per user when an entry changes one, whole when a snapshot
//! replaces the state), the default user's password from `--requirepass`
//! until the replicated record exists, and ACL LOG (this node's denials).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use lockstep_engine::acl::User;
use lockstep_engine::Reply;
use lockstep_raft::NodeHandle;
use sha2::{Digest, Sha256};

/// ACL LOG keeps this many entries, as Redis's default.
const LOG_LEN: usize = 128;

/// SHA-256 of a password, as lowercase hex (Redis's `#` form).
pub fn password_hash(password: &[u8]) -> String {
    let digest = Sha256::digest(password);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[derive(Default)]
pub struct AclCache {
    users: RwLock<HashMap<Bytes, Option<Arc<User>>>>,
    /// Bumped by every invalidation: a record read before one is not cached.
    generation: std::sync::atomic::AtomicU64,
    /// `--requirepass`, hashed: the default user's password while the
    /// replicated record does not exist.
    pub requirepass: Option<String>,
    log: Mutex<AclLog>,
}

#[derive(Default)]
struct AclLog {
    next_id: u64,
    entries: VecDeque<LogEntry>,
}

struct LogEntry {
    id: u64,
    count: u64,
    reason: &'static str,
    context: &'static str,
    object: String,
    username: String,
    client: String,
    created: Instant,
    created_unix_ms: u64,
    updated_unix_ms: u64,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AclCache {
    pub fn with_requirepass(password: Option<&str>) -> AclCache {
        AclCache {
            requirepass: password.map(|p| password_hash(p.as_bytes())),
            ..AclCache::default()
        }
    }

    /// User `name` as this node knows it (None: no such user).
    pub fn user(&self, node: &NodeHandle, name: &[u8]) -> Option<Arc<User>> {
        if let Some(cached) = self.users.read().expect("acl cache").get(name) {
            return cached.clone();
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let loaded = match node.read_local(&[
            Bytes::from_static(b"ACL.RECORD"),
            Bytes::copy_from_slice(name),
        ]) {
            Reply::Bulk(record) => User::decode(Bytes::copy_from_slice(name), &record).ok(),
            _ if name == b"default" => Some(self.virtual_default()),
            _ => None,
        }
        .map(Arc::new);
        let mut users = self.users.write().expect("acl cache");
        if self.generation.load(std::sync::atomic::Ordering::Acquire) != generation {
            return loaded;
        }
        // Bounded: a cache entry per user name asked for.
        if users.len() > lockstep_engine::acl::MAX_USERS * 2 {
            users.clear();
        }
        users.insert(Bytes::copy_from_slice(name), loaded.clone());
        loaded
    }

    /// The default user before ACL SETUSER default: everything, with
    /// `--requirepass`'s password if given.
    fn virtual_default(&self) -> User {
        let mut user = User::unrestricted_default();
        if let Some(hash) = &self.requirepass {
            user.nopass = false;
            user.passwords = vec![hash.clone()];
        }
        user
    }

    pub fn invalidate(&self, name: &[u8]) {
        let mut users = self.users.write().expect("acl cache");
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        users.remove(name);
    }

    pub fn clear(&self) {
        let mut users = self.users.write().expect("acl cache");
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        users.clear();
    }

    /// Records a denial (grouped with an identical recent one, as Redis).
    pub fn log(
        &self,
        reason: &'static str,
        context: &'static str,
        object: String,
        username: String,
        client: String,
    ) {
        let mut log = self.log.lock().expect("acl log");
        let now = unix_ms();
        if let Some(same) = log.entries.iter_mut().find(|entry| {
            entry.reason == reason
                && entry.context == context
                && entry.object == object
                && entry.username == username
                && entry.created.elapsed().as_secs() < 60
        }) {
            same.count += 1;
            same.updated_unix_ms = now;
            same.client = client;
            return;
        }
        let id = log.next_id;
        log.next_id += 1;
        log.entries.push_front(LogEntry {
            id,
            count: 1,
            reason,
            context,
            object,
            username,
            client,
            created: Instant::now(),
            created_unix_ms: now,
            updated_unix_ms: now,
        });
        log.entries.truncate(LOG_LEN);
    }

    pub fn reset_log(&self) {
        self.log.lock().expect("acl log").entries.clear();
    }

    /// ACL LOG's reply: the newest `count` entries.
    pub fn log_reply(&self, count: usize) -> Reply {
        let log = self.log.lock().expect("acl log");
        Reply::Array(
            log.entries
                .iter()
                .take(count)
                .map(|entry| {
                    Reply::Map(vec![
                        (Reply::bulk("count"), Reply::Integer(entry.count as i64)),
                        (Reply::bulk("reason"), Reply::bulk(entry.reason)),
                        (Reply::bulk("context"), Reply::bulk(entry.context)),
                        (Reply::bulk("object"), Reply::bulk(entry.object.clone())),
                        (Reply::bulk("username"), Reply::bulk(entry.username.clone())),
                        (
                            Reply::bulk("age-seconds"),
                            Reply::bulk(format!("{:.3}", entry.created.elapsed().as_secs_f64())),
                        ),
                        (
                            Reply::bulk("client-info"),
                            Reply::bulk(entry.client.clone()),
                        ),
                        (Reply::bulk("entry-id"), Reply::Integer(entry.id as i64)),
                        (
                            Reply::bulk("timestamp-created"),
                            Reply::Integer(entry.created_unix_ms as i64),
                        ),
                        (
                            Reply::bulk("timestamp-last-updated"),
                            Reply::Integer(entry.updated_unix_ms as i64),
                        ),
                    ])
                })
                .collect(),
        )
    }
}
