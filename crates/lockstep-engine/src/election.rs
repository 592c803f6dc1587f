//! Leader elections (etcd's v3election on RESP): candidates campaign with
//! a value and a lease; the first leads, the others wait in FIFO order,
//! parked (see `parking`), and the entry that ends a leadership (a
//! resignation, the leader's lease ending) makes the next one leader and
//! answers it.
//!
//! A leadership's token is the index of the entry that made it leader:
//! strictly increasing per election across all time and failovers, so it
//! fences a deposed leader's writes. A candidate is identified by its
//! lease (one candidacy per lease per election, as in etcd).
//!
//! The record (type `election`) keeps the leader, the queue, and the last
//! transitions (a new leader, no leader, a new value) with their indexes,
//! so an observer resuming after the index it saw gets the next transition
//! and misses none that is still kept.

use std::collections::VecDeque;

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is, Args};
use crate::codec::{Reader, Writer};
use crate::context::Context;
use crate::expiry::Target;
use crate::leases::{self, Attachment};
use crate::limits::{self, Limit};
use crate::notify;
use crate::parking::{self, ParkRef};
use crate::record::{Record, ValueType};
use crate::{Reply, RequestId};

/// Transitions an election keeps for observers.
pub const HISTORY: usize = 32;
/// Longest WAIT, ms.
const MAX_WAIT_MS: i64 = 365 * 24 * 3600 * 1000;
const FORMAT_V1: u8 = 1;

#[derive(Clone, Debug, PartialEq)]
pub enum ElectionCommand {
    Campaign {
        election: Bytes,
        value: Bytes,
        lease: u64,
        wait: Option<u64>,
    },
    Leader(Bytes),
    Proclaim {
        election: Bytes,
        token: u64,
        value: Bytes,
    },
    /// By the leadership's token, or by lease (which also withdraws a
    /// waiting candidacy).
    Resign {
        election: Bytes,
        by: Resigner,
    },
    Observe {
        election: Bytes,
        after: Option<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resigner {
    Token(u64),
    Lease(u64),
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<ElectionCommand, Reply> {
    Ok(match name {
        "elect.campaign" => {
            let mut wait = None;
            let mut rest = Args::new(&args[3..]);
            while let Some(option) = rest.next() {
                if is(option, "wait") {
                    let ms = integer(rest.value()?)?;
                    if ms <= 0 || ms > MAX_WAIT_MS {
                        return Err(Reply::error(format!(
                            "ERR invalid wait: must be a positive number of milliseconds up to {MAX_WAIT_MS}"
                        )));
                    }
                    wait = Some(ms as u64);
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            ElectionCommand::Campaign {
                election: args[0].clone(),
                value: args[1].clone(),
                lease: leases::parse_id(&args[2])?,
                wait,
            }
        }
        "elect.leader" => ElectionCommand::Leader(args[0].clone()),
        "elect.proclaim" => ElectionCommand::Proclaim {
            election: args[0].clone(),
            token: token(&args[1])?,
            value: args[2].clone(),
        },
        "elect.resign" => ElectionCommand::Resign {
            election: args[0].clone(),
            by: match &args[1..] {
                [token_arg] => Resigner::Token(token(token_arg)?),
                [option, id] if is(option, "lease") => Resigner::Lease(leases::parse_id(id)?),
                _ => return Err(Reply::syntax_error()),
            },
        },
        "elect.observe" => {
            let mut after = None;
            let mut rest = Args::new(&args[1..]);
            while let Some(option) = rest.next() {
                if is(option, "after") {
                    after = Some(integer(rest.value()?)?.max(0) as u64);
                } else if is(option, "wait") {
                    // The server waits; the engine answers one read.
                    let ms = integer(rest.value()?)?;
                    if ms < 0 {
                        return Err(Reply::error("ERR timeout is negative"));
                    }
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            ElectionCommand::Observe {
                election: args[0].clone(),
                after,
            }
        }
        other => unreachable!("{other} is not an election command"),
    })
}

fn token(arg: &[u8]) -> Result<u64, Reply> {
    match integer(arg)? {
        t if t > 0 => Ok(t as u64),
        _ => Err(Reply::error("ERR invalid token")),
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Leader {
    lease: u64,
    token: u64,
    value: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
struct Candidate {
    lease: u64,
    value: Bytes,
    request: RequestId,
    wait_id: Bytes,
    deadline: Option<u64>,
}

/// A change observers see: who leads (or nobody) from this index on.
#[derive(Clone, Debug, PartialEq)]
struct Transition {
    index: u64,
    leader: Option<Leader>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Election {
    leader: Option<Leader>,
    candidates: VecDeque<Candidate>,
    history: VecDeque<Transition>,
    /// Index of the newest transition dropped from `history` (0: none).
    dropped_through: u64,
}

fn put_leader(out: &mut Vec<u8>, leader: &Option<Leader>) {
    match leader {
        Some(leader) => {
            out.put_u8(1);
            out.put_u64(leader.lease);
            out.put_u64(leader.token);
            out.put_bytes(&leader.value);
        }
        None => out.put_u8(0),
    }
}

fn read_leader(r: &mut Reader<'_>) -> Result<Option<Leader>, StoreError> {
    Ok(match r.u8()? {
        0 => None,
        _ => Some(Leader {
            lease: r.u64()?,
            token: r.u64()?,
            value: r.bytes()?,
        }),
    })
}

impl Election {
    fn decode(body: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(body, "election record");
        if r.u8()? != FORMAT_V1 {
            return Err(StoreError::corrupt(
                "election record",
                "unknown format version",
            ));
        }
        let leader = read_leader(&mut r)?;
        let candidates = (0..r.count(40)?)
            .map(|_| {
                Ok(Candidate {
                    lease: r.u64()?,
                    value: r.bytes()?,
                    request: RequestId {
                        origin: r.u64()?,
                        seq: r.u64()?,
                    },
                    wait_id: r.bytes()?,
                    deadline: r.optional()?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let history = (0..r.count(9)?)
            .map(|_| {
                Ok(Transition {
                    index: r.u64()?,
                    leader: read_leader(&mut r)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let dropped_through = r.u64()?;
        r.finish()?;
        Ok(Election {
            leader,
            candidates,
            history,
            dropped_through,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_V1];
        put_leader(&mut out, &self.leader);
        out.put_u32(self.candidates.len() as u32);
        for c in &self.candidates {
            out.put_u64(c.lease);
            out.put_bytes(&c.value);
            out.put_u64(c.request.origin);
            out.put_u64(c.request.seq);
            out.put_bytes(&c.wait_id);
            out.put_optional(c.deadline);
        }
        out.put_u32(self.history.len() as u32);
        for t in &self.history {
            out.put_u64(t.index);
            put_leader(&mut out, &t.leader);
        }
        out.put_u64(self.dropped_through);
        out
    }

    fn waits_deadline(&self) -> Option<u64> {
        self.candidates.iter().filter_map(|c| c.deadline).min()
    }

    /// Records that from this entry on `leader` leads (or nobody).
    fn transition(&mut self, index: u64) {
        if self.history.back().is_some_and(|t| t.index == index) {
            self.history.pop_back();
        }
        self.history.push_back(Transition {
            index,
            leader: self.leader.clone(),
        });
        while self.history.len() > HISTORY {
            if let Some(dropped) = self.history.pop_front() {
                self.dropped_through = dropped.index;
            }
        }
    }

    /// With nobody leading, the first candidate leads (answered with its
    /// token), in this entry.
    fn promote(&mut self, ctx: &mut Context<'_>) {
        if self.leader.is_some() {
            return;
        }
        if let Some(next) = self.candidates.pop_front() {
            let token = ctx.index;
            parking::forget(ctx, &next.wait_id);
            ctx.defer_reply(next.request, Reply::Integer(token as i64));
            self.leader = Some(Leader {
                lease: next.lease,
                token,
                value: next.value,
            });
        }
        self.transition(ctx.index);
    }

    /// Candidates whose wait ran out leave with nil.
    fn settle(&mut self, ctx: &mut Context<'_>, election: &[u8]) -> Result<(), StoreError> {
        let ct = ctx.ct;
        let (gone, staying): (Vec<Candidate>, Vec<Candidate>) = self
            .candidates
            .drain(..)
            .partition(|c| c.deadline.is_some_and(|at| at <= ct));
        self.candidates = staying.into();
        for candidate in gone {
            dismiss(ctx, election, &candidate)?;
        }
        Ok(())
    }
}

fn attachment(election: &[u8]) -> Attachment {
    Attachment::Candidate {
        election: Bytes::copy_from_slice(election),
    }
}

/// A waiting candidate leaves with nil.
fn dismiss(
    ctx: &mut Context<'_>,
    election: &[u8],
    candidate: &Candidate,
) -> Result<(), StoreError> {
    ctx.defer_reply(candidate.request, Reply::Nil);
    parking::forget(ctx, &candidate.wait_id);
    leases::detach(ctx, candidate.lease, &attachment(election))
}

/// The earliest candidate wait deadline in a stored election body.
pub fn waits_deadline(body: &[u8]) -> Result<Option<u64>, StoreError> {
    Ok(Election::decode(body)?.waits_deadline())
}

fn load(
    ctx: &Context<'_>,
    key: &[u8],
) -> Result<Result<(Option<Record>, Election), Reply>, StoreError> {
    Ok(match ctx.typed_record(key, ValueType::Election)? {
        Ok(Some(record)) => {
            let election = Election::decode(&record.body)?;
            Ok((Some(record), election))
        }
        Ok(None) => Ok((None, Election::default())),
        Err(reply) => Err(reply),
    })
}

fn save(
    ctx: &mut Context<'_>,
    key: &[u8],
    existing: Option<Record>,
    election: &Election,
) -> Result<(), StoreError> {
    ctx.store_body(
        key,
        existing,
        ValueType::Election,
        Bytes::from(election.encode()),
    )?;
    ctx.notify(notify::MODULE, "election", key)?;
    ctx.set_deadline(
        Target::Waits(Bytes::copy_from_slice(key)),
        election.waits_deadline(),
    );
    Ok(())
}

fn leader_map(leader: &Option<Leader>) -> Vec<(Reply, Reply)> {
    match leader {
        Some(leader) => vec![
            (Reply::bulk("leader"), Reply::Bulk(leader.value.clone())),
            (Reply::bulk("token"), Reply::Integer(leader.token as i64)),
            (Reply::bulk("lease"), Reply::Integer(leader.lease as i64)),
        ],
        None => vec![
            (Reply::bulk("leader"), Reply::Nil),
            (Reply::bulk("token"), Reply::Nil),
            (Reply::bulk("lease"), Reply::Nil),
        ],
    }
}

pub fn execute(ctx: &mut Context<'_>, command: ElectionCommand) -> Result<Reply, StoreError> {
    let key = match &command {
        ElectionCommand::Campaign { election, .. }
        | ElectionCommand::Proclaim { election, .. }
        | ElectionCommand::Resign { election, .. }
        | ElectionCommand::Observe { election, .. }
        | ElectionCommand::Leader(election) => election.clone(),
    };
    let (record, mut election) = match load(ctx, &key)? {
        Ok(loaded) => loaded,
        Err(reply) => return Ok(reply),
    };
    let before = election.clone();
    let reply = match command {
        ElectionCommand::Campaign {
            value, lease, wait, ..
        } => {
            if let Err(reply) = leases::check_attachable(ctx, lease)? {
                return Ok(reply);
            }
            if let Some(leader) = election.leader.as_mut().filter(|l| l.lease == lease) {
                // Campaigning again (a retry) resumes the leadership.
                let token = leader.token;
                if leader.value != value {
                    leader.value = value;
                    election.transition(ctx.index);
                }
                Reply::Integer(token as i64)
            } else if election.leader.is_none() && election.candidates.is_empty() {
                election.leader = Some(Leader {
                    lease,
                    token: ctx.index,
                    value,
                });
                election.transition(ctx.index);
                leases::attach(ctx, lease, attachment(&key))?;
                Reply::Integer(ctx.index as i64)
            } else if let Some(request) = ctx.parkable_request() {
                let queued = election.candidates.iter().position(|c| c.lease == lease);
                if queued.is_none() {
                    let most = limits::get(ctx, Limit::Candidates)?;
                    if election.candidates.len() as u64 >= most {
                        return Ok(Reply::error(format!(
                            "ERR election already has {most} candidates (election-max-candidates)"
                        )));
                    }
                }
                if let Some(at) = queued {
                    // A retried campaign takes the queued one's place.
                    let old = &election.candidates[at];
                    ctx.defer_reply(old.request, Reply::Nil);
                    parking::forget(ctx, &old.wait_id);
                }
                let candidate = Candidate {
                    lease,
                    value,
                    request,
                    wait_id: parking::park(ctx, ParkRef::Election(key.clone())),
                    deadline: wait.map(|ms| ctx.ct.saturating_add(ms)),
                };
                match queued {
                    Some(at) => election.candidates[at] = candidate,
                    None => {
                        election.candidates.push_back(candidate);
                        leases::attach(ctx, lease, attachment(&key))?;
                    }
                }
                Reply::Nil
            } else {
                // Inside a script or MULTI a campaign cannot wait.
                Reply::Nil
            }
        }
        ElectionCommand::Leader(_) => match &election.leader {
            Some(_) => {
                let mut fields = leader_map(&election.leader);
                fields.push((
                    Reply::bulk("candidates"),
                    Reply::Integer(election.candidates.len() as i64),
                ));
                Reply::Map(fields)
            }
            None => Reply::Nil,
        },
        ElectionCommand::Proclaim { token, value, .. } => {
            match election.leader.as_mut().filter(|l| l.token == token) {
                Some(leader) => {
                    if leader.value != value {
                        leader.value = value;
                        election.transition(ctx.index);
                    }
                    Reply::Integer(1)
                }
                None => Reply::Integer(0),
            }
        }
        ElectionCommand::Resign { by, .. } => {
            let leads = election.leader.as_ref().is_some_and(|l| match by {
                Resigner::Token(token) => l.token == token,
                Resigner::Lease(lease) => l.lease == lease,
            });
            let mut done = false;
            if leads {
                let leader = election.leader.take().expect("checked");
                leases::detach(ctx, leader.lease, &attachment(&key))?;
                election.promote(ctx);
                done = true;
            }
            if let Resigner::Lease(lease) = by {
                if let Some(at) = election.candidates.iter().position(|c| c.lease == lease) {
                    let candidate = election.candidates.remove(at).expect("in range");
                    dismiss(ctx, &key, &candidate)?;
                    done = true;
                }
            }
            Reply::Integer(done as i64)
        }
        ElectionCommand::Observe { after, .. } => {
            let next = match after {
                None => election.history.back(),
                Some(after) => election.history.iter().find(|t| t.index > after),
            };
            match next {
                Some(t) => {
                    let mut fields = vec![(Reply::bulk("index"), Reply::Integer(t.index as i64))];
                    fields.extend(leader_map(&t.leader));
                    let missed = after.is_some_and(|after| after < election.dropped_through);
                    fields.push((Reply::bulk("missed"), Reply::Integer(missed as i64)));
                    Reply::Map(fields)
                }
                // Nothing after that index (yet): the server waits.
                None if after.is_some() => Reply::Nil,
                None => {
                    let mut fields = vec![(Reply::bulk("index"), Reply::Integer(0))];
                    fields.extend(leader_map(&None));
                    fields.push((Reply::bulk("missed"), Reply::Integer(0)));
                    Reply::Map(fields)
                }
            }
        }
    };
    if ctx.index != 0 && election != before {
        save(ctx, &key, record, &election)?;
    }
    Ok(reply)
}

/// A stored election whose candidate waits may have run out.
pub fn settle(ctx: &mut Context<'_>, key: &[u8]) -> Result<(), StoreError> {
    if let Ok((Some(record), mut election)) = load(ctx, key)? {
        election.settle(ctx, key)?;
        save(ctx, key, Some(record), &election)?;
    }
    Ok(())
}

/// Lease `lease` ended: its leadership ends (the next candidate leads in
/// this entry) and its candidacy, if waiting, is withdrawn.
pub fn lease_ended(ctx: &mut Context<'_>, key: &[u8], lease: u64) -> Result<(), StoreError> {
    let Ok((Some(record), mut election)) = load(ctx, key)? else {
        return Ok(());
    };
    let before = election.clone();
    if election.leader.as_ref().is_some_and(|l| l.lease == lease) {
        election.leader = None;
        election.promote(ctx);
    }
    let (gone, staying): (Vec<Candidate>, Vec<Candidate>) = election
        .candidates
        .drain(..)
        .partition(|c| c.lease == lease);
    election.candidates = staying.into();
    for candidate in gone {
        ctx.defer_reply(candidate.request, Reply::Nil);
        parking::forget(ctx, &candidate.wait_id);
    }
    if election != before {
        save(ctx, key, Some(record), &election)?;
    }
    Ok(())
}

/// PARK.CANCEL of a waiting candidate: it leaves with nil.
pub fn cancel_wait(ctx: &mut Context<'_>, key: &[u8], wait_id: &[u8]) -> Result<bool, StoreError> {
    let Ok((Some(record), mut election)) = load(ctx, key)? else {
        return Ok(false);
    };
    let Some(at) = election
        .candidates
        .iter()
        .position(|c| c.wait_id.as_ref() == wait_id)
    else {
        return Ok(false);
    };
    let candidate = election.candidates.remove(at).expect("in range");
    dismiss(ctx, key, &candidate)?;
    save(ctx, key, Some(record), &election)?;
    Ok(true)
}

/// The election is deleted or overwritten: waiting candidates get nil,
/// leases let go of it.
pub fn discard(ctx: &mut Context<'_>, key: &[u8], old: &Record) -> Result<(), StoreError> {
    let election = Election::decode(&old.body)?;
    if let Some(leader) = &election.leader {
        leases::detach(ctx, leader.lease, &attachment(key))?;
    }
    for candidate in &election.candidates {
        dismiss(ctx, key, candidate)?;
    }
    Ok(())
}
