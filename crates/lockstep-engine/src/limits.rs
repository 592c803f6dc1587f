//! The bounds of the coordination records and the change feed, and
//! `notify-keyspace-events`, as replicated settings.
//!
//! Every record a coordination command writes is bounded (leases alive,
//! items per lease, candidates per election, instances per service, ...),
//! so every command's cost is. The bounds decide replies (a grant beyond
//! the limit is refused), so every node must use the same numbers at the
//! same index: they live in the keyspace and change only through the log
//! (`CONFIG SET` on any node proposes `CONFIG.SET`). A snapshot carries
//! them; a node's own configuration does not.
//!
//! Record: `mcl name` -> the value (u64), only for a limit that was set.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::integer;
use crate::context::Context;
use crate::glob::glob_match;
use crate::Reply;

const KEY_PREFIX: &[u8] = b"mcl";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Leases alive at once.
    Leases,
    /// Items (keys, locks, candidacies, instances, participants) one lease
    /// may hold.
    LeaseItems,
    /// Candidates one election may queue.
    Candidates,
    /// Instances one service may have.
    Instances,
    /// Services at once.
    Services,
    /// Metadata and tags of one instance, bytes.
    MetaBytes,
    /// Participants of one double barrier.
    Participants,
    /// `notify-keyspace-events`: the classes of keyspace events published
    /// (flags of `notify`, shown as Redis's letters).
    NotifyEvents,
    /// Changes the change feed keeps.
    ChangesKept,
    /// Bytes the change feed keeps.
    ChangesBytes,
}

/// Name, default, smallest and largest value a limit may be set to.
struct Definition {
    limit: Limit,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
    /// Written and shown as Redis's event-class letters, not a number.
    letters: bool,
}

const DEFINITIONS: &[Definition] = &[
    Definition {
        limit: Limit::Leases,
        name: "lease-max-alive",
        default: 100_000,
        min: 1,
        max: 10_000_000,
        letters: false,
    },
    Definition {
        limit: Limit::LeaseItems,
        name: "lease-max-items",
        default: 10_000,
        min: 1,
        max: 1_000_000,
        letters: false,
    },
    Definition {
        limit: Limit::Candidates,
        name: "election-max-candidates",
        default: 10_000,
        min: 1,
        max: 1_000_000,
        letters: false,
    },
    Definition {
        limit: Limit::Instances,
        name: "svc-max-instances",
        default: 10_000,
        min: 1,
        max: 1_000_000,
        letters: false,
    },
    Definition {
        limit: Limit::Services,
        name: "svc-max-services",
        default: 10_000,
        min: 1,
        max: 1_000_000,
        letters: false,
    },
    Definition {
        limit: Limit::MetaBytes,
        name: "svc-max-meta-bytes",
        default: 4096,
        min: 0,
        max: 1 << 20,
        letters: false,
    },
    Definition {
        limit: Limit::Participants,
        name: "barrier-max-participants",
        default: 10_000,
        min: 1,
        max: 1_000_000,
        letters: false,
    },
    Definition {
        limit: Limit::NotifyEvents,
        name: "notify-keyspace-events",
        default: 0,
        min: 0,
        max: u32::MAX as u64,
        letters: true,
    },
    Definition {
        limit: Limit::ChangesKept,
        name: "changes-max-kept",
        default: 1_000_000,
        min: 1,
        max: 1_000_000_000,
        letters: false,
    },
    Definition {
        limit: Limit::ChangesBytes,
        name: "changes-max-bytes",
        default: 256 << 20,
        min: 1 << 10,
        max: 1 << 40,
        letters: false,
    },
];

/// The largest double-barrier count any setting allows (checked when the
/// command is parsed; the current limit is checked when it runs).
pub const MAX_PARTICIPANTS_CEILING: i64 = 1_000_000;

fn definition(limit: Limit) -> &'static Definition {
    DEFINITIONS
        .iter()
        .find(|d| d.limit == limit)
        .expect("every limit is defined")
}

fn key(name: &str) -> Vec<u8> {
    let mut out = KEY_PREFIX.to_vec();
    out.extend_from_slice(name.as_bytes());
    out
}

/// The limit's value at this point of the log.
pub fn get(ctx: &Context<'_>, limit: Limit) -> Result<u64, StoreError> {
    let d = definition(limit);
    Ok(match ctx.raw_get(&key(d.name))? {
        Some(bytes) => bytes
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .unwrap_or(d.default),
        None => d.default,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitsCommand {
    /// `CONFIG.SET name value [name value ...]`: all or nothing.
    Set(Vec<(&'static str, u64)>),
    /// `CONFIG.GET pattern [pattern ...]`.
    Get(Vec<Bytes>),
}

/// Whether `name` is one of these settings (the server asks, to tell them
/// from its own).
pub fn is_limit(name: &[u8]) -> bool {
    find(name).is_some()
}

fn find(name: &[u8]) -> Option<&'static Definition> {
    DEFINITIONS
        .iter()
        .find(|d| d.name.as_bytes().eq_ignore_ascii_case(name))
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<LimitsCommand, Reply> {
    Ok(match name {
        "config.set" => {
            if !args.len().is_multiple_of(2) {
                return Err(Reply::error(
                    "ERR wrong number of arguments for 'config|set' command",
                ));
            }
            let mut settings = Vec::with_capacity(args.len() / 2);
            for pair in args.chunks(2) {
                let Some(d) = find(&pair[0]) else {
                    return Err(Reply::error(format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        String::from_utf8_lossy(&pair[0])
                    )));
                };
                let failed = |why: String| {
                    Reply::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
                        d.name
                    ))
                };
                let value = if d.letters {
                    crate::notify::parse_flags(&pair[1])
                        .map(u64::from)
                        .ok_or_else(|| failed(crate::notify::INVALID_FLAGS.to_string()))?
                } else {
                    integer(&pair[1])
                        .ok()
                        .and_then(|v| u64::try_from(v).ok())
                        .filter(|v| (d.min..=d.max).contains(v))
                        .ok_or_else(|| {
                            failed(format!(
                                "argument must be between {} and {} inclusive",
                                d.min, d.max
                            ))
                        })?
                };
                settings.push((d.name, value));
            }
            LimitsCommand::Set(settings)
        }
        "config.get" => LimitsCommand::Get(args.to_vec()),
        other => unreachable!("{other} is not a limits command"),
    })
}

pub fn execute(ctx: &mut Context<'_>, command: LimitsCommand) -> Result<Reply, StoreError> {
    Ok(match command {
        LimitsCommand::Set(settings) => {
            for (name, value) in settings {
                let d = find(name.as_bytes()).expect("parsed");
                if value == d.default {
                    ctx.raw_delete(key(name));
                } else {
                    ctx.raw_put(key(name), value.to_be_bytes().to_vec());
                }
            }
            Reply::ok()
        }
        LimitsCommand::Get(patterns) => {
            let mut pairs = Vec::new();
            for d in DEFINITIONS {
                if patterns.iter().any(|p| glob_match(p, d.name.as_bytes())) {
                    let value = get(ctx, d.limit)?;
                    let shown = if d.letters {
                        crate::notify::flags_text(value as u32)
                    } else {
                        value.to_string()
                    };
                    pairs.push((Reply::bulk(d.name), Reply::Bulk(Bytes::from(shown))));
                }
            }
            Reply::Map(pairs)
        }
    })
}
