//! Simulated clients: what they ask, and what they record of the answers.

use bytes::Bytes;
use lockstep_check::fencing::Grant;
use lockstep_check::queue::QueueHistory;
use lockstep_check::register::{Command, Reply as RegisterReply};
use lockstep_check::Operation;
use lockstep_engine::Reply;
use rand::rngs::StdRng;
use rand::Rng;

/// TTL of the SET NX PX locks, in virtual ms.
pub const LOCK_TTL_MS: u64 = 1000;
/// Register keys are renewed this often (virtual ms), so each key's
/// history stays small enough to check.
const REGISTER_PERIOD_MS: u64 = 3000;
/// TTL of the clients' leases, virtual ms.
pub const LEASE_TTL_MS: u64 = 1500;
/// The election the clients campaign in.
pub const ELECTION: &str = "e";

/// One client operation in flight, and how to judge its reply.
#[derive(Clone, Debug)]
pub enum Request {
    Register {
        key: String,
        command: Command,
    },
    /// Native lock: LOCK.TRY name owner ttl (a grant carries its token).
    /// Each attempt has an owner of its own: acquiring again as the same
    /// owner would return the same token, by design.
    LockTry {
        name: String,
        owner: u64,
    },
    LockRelease {
        name: String,
        owner: u64,
    },
    Push {
        item: u64,
    },
    Pop,
    /// LEASE.GRANT (the reply is the lease id).
    LeaseGrant,
    LeaseKeepalive {
        lease: u64,
    },
    /// A key attached to the lease: it must go when the lease does.
    LeaseKey {
        lease: u64,
        key: String,
    },
    /// ELECT.CAMPAIGN with a short wait (the sim has no server to cancel).
    Campaign {
        lease: u64,
    },
    Resign {
        lease: u64,
    },
    SvcRegister {
        lease: u64,
    },
    Heartbeat,
}

impl Request {
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Request::Register {
                command: Command::Read,
                ..
            }
        )
    }

    pub fn argv(&self, client: u64) -> Vec<Bytes> {
        let words: Vec<String> = match self {
            Request::Register { key, command } => match command {
                Command::Read => vec!["GET".into(), key.clone()],
                Command::Write { value, ttl_ms } => {
                    let mut words = vec!["SET".into(), key.clone(), value.to_string()];
                    if let Some(ttl) = ttl_ms {
                        words.extend(["PX".into(), ttl.to_string()]);
                    }
                    words
                }
                Command::SetIfAbsent { value, ttl_ms } => {
                    let mut words = vec!["SET".into(), key.clone(), value.to_string(), "NX".into()];
                    if let Some(ttl) = ttl_ms {
                        words.extend(["PX".into(), ttl.to_string()]);
                    }
                    words
                }
                Command::CompareAndSet { expected, value } => vec![
                    "SET".into(),
                    key.clone(),
                    value.to_string(),
                    "IFEQ".into(),
                    expected.to_string(),
                ],
                Command::CompareAndDelete { expected } => {
                    vec!["DELIFEQ".into(), key.clone(), expected.to_string()]
                }
                Command::Delete => vec!["DEL".into(), key.clone()],
            },
            Request::LockTry { name, owner } => vec![
                "LOCK.TRY".into(),
                name.clone(),
                format!("c{client}-{owner}"),
                LOCK_TTL_MS.to_string(),
            ],
            Request::LockRelease { name, owner } => vec![
                "LOCK.RELEASE".into(),
                name.clone(),
                format!("c{client}-{owner}"),
            ],
            Request::Push { item } => vec!["RPUSH".into(), "queue".into(), item.to_string()],
            Request::Pop => vec!["LPOP".into(), "queue".into()],
            Request::LeaseGrant => vec!["LEASE.GRANT".into(), LEASE_TTL_MS.to_string()],
            Request::LeaseKeepalive { lease } => {
                vec!["LEASE.KEEPALIVE".into(), lease.to_string()]
            }
            Request::LeaseKey { lease, key } => vec![
                "SET".into(),
                key.clone(),
                "v".into(),
                "LEASE".into(),
                lease.to_string(),
            ],
            Request::Campaign { lease } => vec![
                "ELECT.CAMPAIGN".into(),
                ELECTION.into(),
                format!("c{client}"),
                lease.to_string(),
                "WAIT".into(),
                "400".into(),
            ],
            Request::Resign { lease } => vec![
                "ELECT.RESIGN".into(),
                ELECTION.into(),
                "LEASE".into(),
                lease.to_string(),
            ],
            Request::SvcRegister { lease } => vec![
                "SVC.REGISTER".into(),
                "svc".into(),
                format!("c{client}"),
                "addr".into(),
                "TTL".into(),
                "600".into(),
                "DEREGISTER".into(),
                "600".into(),
                "LEASE".into(),
                lease.to_string(),
            ],
            Request::Heartbeat => vec!["SVC.HEARTBEAT".into(), "svc".into(), format!("c{client}")],
        };
        words.into_iter().map(Bytes::from).collect()
    }
}

/// Picks a client's next operation.
pub fn next_request(
    rng: &mut StdRng,
    now_ms: u64,
    next_value: &mut u64,
    last_seen: Option<u64>,
    holds_native_lock: Option<&(String, u64)>,
    lease: Option<u64>,
) -> Request {
    *next_value += 1;
    let value = *next_value;
    let generation = now_ms / REGISTER_PERIOD_MS;
    if let Some((name, owner)) = holds_native_lock {
        return Request::LockRelease {
            name: name.clone(),
            owner: *owner,
        };
    }
    // A fifth of the operations are sessions: grant a lease, keep it
    // alive, hang keys, a candidacy and an instance on it.
    if rng.gen_range(0..5) == 0 {
        let Some(lease) = lease else {
            return Request::LeaseGrant;
        };
        return match rng.gen_range(0..10) {
            0..=3 => Request::LeaseKeepalive { lease },
            4 => Request::LeaseKey {
                lease,
                key: format!("sess:{lease}:{value}"),
            },
            5 | 6 => Request::Campaign { lease },
            7 => Request::Resign { lease },
            8 => Request::SvcRegister { lease },
            _ => Request::Heartbeat,
        };
    }
    match rng.gen_range(0..100) {
        0..=29 => Request::Register {
            key: format!("r{generation}:{}", rng.gen_range(0..3)),
            command: Command::Read,
        },
        30..=44 => Request::Register {
            key: format!("r{generation}:{}", rng.gen_range(0..3)),
            command: Command::Write {
                value,
                ttl_ms: rng.gen_bool(0.2).then(|| rng.gen_range(200..2000)),
            },
        },
        45..=54 => Request::Register {
            key: format!("r{generation}:{}", rng.gen_range(0..3)),
            command: Command::CompareAndSet {
                expected: last_seen.unwrap_or(value - 1),
                value,
            },
        },
        55..=64 => {
            // SET NX PX locks, released by compare-and-delete.
            let key = format!("l{}", generation);
            if rng.gen_bool(0.5) {
                Request::Register {
                    key,
                    command: Command::SetIfAbsent {
                        value,
                        ttl_ms: Some(LOCK_TTL_MS),
                    },
                }
            } else {
                Request::Register {
                    key,
                    command: Command::CompareAndDelete {
                        expected: last_seen.unwrap_or(value - 1),
                    },
                }
            }
        }
        65..=79 => Request::LockTry {
            name: format!("n{}", rng.gen_range(0..2)),
            owner: value,
        },
        80..=89 => Request::Push { item: value },
        _ => Request::Pop,
    }
}

/// Everything the clients saw.
#[derive(Default)]
pub struct Histories {
    pub registers: Vec<(String, Operation<Command, RegisterReply>)>,
    pub grants: Vec<(String, Grant)>,
    pub queue: QueueHistory,
    pub unknown_pops: usize,
    pub completed: u64,
    pub unknown: u64,
}

fn number(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Bulk(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

impl Histories {
    /// Records a reply (`None`: the outcome is unknown). Returns the value
    /// a read saw, for the client's next compare-and-set.
    pub fn record(
        &mut self,
        client: u64,
        request: &Request,
        call_ns: u64,
        ret_ns: u64,
        reply: Option<&Reply>,
    ) -> Option<u64> {
        if reply.is_some() {
            self.completed += 1;
        } else {
            self.unknown += 1;
        }
        match request {
            Request::Register { key, command } => {
                let op = match reply {
                    None if command == &Command::Read => return None,
                    None => Operation::unknown(client, call_ns, command.clone()),
                    Some(reply) => {
                        let seen = match command {
                            Command::Read => RegisterReply::Value(number(reply)),
                            Command::Write { .. } => RegisterReply::Done(true),
                            Command::SetIfAbsent { .. } | Command::CompareAndSet { .. } => {
                                RegisterReply::Done(matches!(reply, Reply::Status(_)))
                            }
                            Command::CompareAndDelete { .. } | Command::Delete => {
                                RegisterReply::Done(reply == &Reply::Integer(1))
                            }
                        };
                        Operation::returned(client, call_ns, ret_ns, command.clone(), seen)
                    }
                };
                let seen = match op.output() {
                    Some(RegisterReply::Value(value)) => *value,
                    _ => None,
                };
                self.registers.push((key.clone(), op));
                seen
            }
            Request::LockTry { name, .. } => {
                if let Some(Reply::Integer(token)) = reply {
                    self.grants.push((
                        name.clone(),
                        Grant {
                            client,
                            call: call_ns,
                            ret: ret_ns,
                            token: *token as u64,
                        },
                    ));
                }
                None
            }
            Request::LockRelease { .. }
            | Request::LeaseGrant
            | Request::LeaseKeepalive { .. }
            | Request::LeaseKey { .. }
            | Request::Campaign { .. }
            | Request::Resign { .. }
            | Request::SvcRegister { .. }
            | Request::Heartbeat => None,
            Request::Push { item } => {
                match reply {
                    Some(Reply::Integer(_)) => {
                        self.queue.acknowledged.insert(*item);
                    }
                    _ => {
                        self.queue.unknown.insert(*item);
                    }
                }
                None
            }
            Request::Pop => {
                match reply {
                    Some(reply) => {
                        if let Some(item) = number(reply) {
                            self.queue.delivered.push(item);
                        }
                    }
                    None => self.unknown_pops += 1,
                }
                None
            }
        }
    }
}
