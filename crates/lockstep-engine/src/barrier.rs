//! Barriers (ZooKeeper's recipes, as native commands).
//!
//! A *barrier* is up while its record exists: `BARRIER.SET` raises it,
//! `BARRIER.REMOVE` takes it down, and `BARRIER.WAIT` (a blocking read on
//! the server) returns once it is down.
//!
//! A *double barrier* gathers `count` participants: `BARRIER.ENTER` parks
//! each one (see `parking`) until the count is reached, and the entry that
//! reaches it answers all of them; `BARRIER.LEAVE` parks until every
//! participant has left, and the entry of the last one answers all the
//! leavers and resets the barrier. A participant may hold a lease: when it
//! ends, the participant leaves. A participant whose ENTER wait runs out
//! (or whose client leaves) withdraws.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is, Args};
use crate::codec::{Reader, Writer};
use crate::context::Context;
use crate::expiry::Target;
use crate::leases::{self, Attachment};
use crate::limits::{self, Limit, MAX_PARTICIPANTS_CEILING};
use crate::notify;
use crate::parking::{self, ParkRef};
use crate::record::{Record, ValueType};
use crate::{Reply, RequestId};

const MAX_WAIT_MS: i64 = 365 * 24 * 3600 * 1000;
const FORMAT_V1: u8 = 1;
const KIND_SINGLE: u8 = 0;
const KIND_DOUBLE: u8 = 1;

#[derive(Clone, Debug, PartialEq)]
pub enum BarrierCommand {
    Set(Bytes),
    /// One look for the server's blocking read: 1 once the barrier is down,
    /// nil while it is up.
    Wait(Bytes),
    Remove(Bytes),
    Enter {
        name: Bytes,
        participant: Bytes,
        count: u32,
        wait: Option<u64>,
        lease: Option<u64>,
    },
    Leave {
        name: Bytes,
        participant: Bytes,
        wait: Option<u64>,
    },
}

fn wait_option(rest: &mut Args<'_>) -> Result<u64, Reply> {
    let ms = integer(rest.value()?)?;
    if ms <= 0 || ms > MAX_WAIT_MS {
        return Err(Reply::error(format!(
            "ERR invalid wait: must be a positive number of milliseconds up to {MAX_WAIT_MS}"
        )));
    }
    Ok(ms as u64)
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<BarrierCommand, Reply> {
    Ok(match name {
        "barrier.set" => BarrierCommand::Set(args[0].clone()),
        "barrier.wait" => {
            let mut rest = Args::new(&args[1..]);
            while let Some(option) = rest.next() {
                if is(option, "wait") {
                    wait_option(&mut rest)?;
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            BarrierCommand::Wait(args[0].clone())
        }
        "barrier.remove" => BarrierCommand::Remove(args[0].clone()),
        "barrier.enter" => {
            let count = integer(&args[2])?;
            if !(1..=MAX_PARTICIPANTS_CEILING).contains(&count) {
                return Err(Reply::error(format!(
                    "ERR invalid count: must be between 1 and {MAX_PARTICIPANTS_CEILING}"
                )));
            }
            let mut wait = None;
            let mut lease = None;
            let mut rest = Args::new(&args[3..]);
            while let Some(option) = rest.next() {
                if is(option, "wait") {
                    wait = Some(wait_option(&mut rest)?);
                } else if is(option, "lease") {
                    lease = Some(leases::parse_id(rest.value()?)?);
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            BarrierCommand::Enter {
                name: args[0].clone(),
                participant: args[1].clone(),
                count: count as u32,
                wait,
                lease,
            }
        }
        "barrier.leave" => {
            let mut wait = None;
            let mut rest = Args::new(&args[2..]);
            while let Some(option) = rest.next() {
                if is(option, "wait") {
                    wait = Some(wait_option(&mut rest)?);
                } else {
                    return Err(Reply::syntax_error());
                }
            }
            BarrierCommand::Leave {
                name: args[0].clone(),
                participant: args[1].clone(),
                wait,
            }
        }
        other => unreachable!("{other} is not a barrier command"),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Enter,
    Leave,
}

#[derive(Clone, Debug, PartialEq)]
struct Waiter {
    phase: Phase,
    participant: Bytes,
    request: RequestId,
    wait_id: Bytes,
    deadline: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Double {
    count: u32,
    full: bool,
    participants: Vec<(Bytes, Option<u64>)>,
    waiters: Vec<Waiter>,
}

#[derive(Clone, Debug, PartialEq)]
enum Barrier {
    Single,
    Double(Double),
}

impl Barrier {
    fn decode(body: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(body, "barrier record");
        if r.u8()? != FORMAT_V1 {
            return Err(StoreError::corrupt(
                "barrier record",
                "unknown format version",
            ));
        }
        let barrier = match r.u8()? {
            KIND_SINGLE => Barrier::Single,
            KIND_DOUBLE => {
                let count = r.u32()?;
                let full = r.u8()? != 0;
                let participants = (0..r.count(12)?)
                    .map(|_| Ok((r.bytes()?, r.optional()?)))
                    .collect::<Result<_, StoreError>>()?;
                let waiters = (0..r.count(33)?)
                    .map(|_| {
                        Ok(Waiter {
                            phase: if r.u8()? == 0 {
                                Phase::Enter
                            } else {
                                Phase::Leave
                            },
                            participant: r.bytes()?,
                            request: RequestId {
                                origin: r.u64()?,
                                seq: r.u64()?,
                            },
                            wait_id: r.bytes()?,
                            deadline: r.optional()?,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
                Barrier::Double(Double {
                    count,
                    full,
                    participants,
                    waiters,
                })
            }
            _ => return Err(StoreError::corrupt("barrier record", "unknown kind")),
        };
        r.finish()?;
        Ok(barrier)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_V1];
        match self {
            Barrier::Single => out.put_u8(KIND_SINGLE),
            Barrier::Double(d) => {
                out.put_u8(KIND_DOUBLE);
                out.put_u32(d.count);
                out.put_u8(d.full as u8);
                out.put_u32(d.participants.len() as u32);
                for (participant, lease) in &d.participants {
                    out.put_bytes(participant);
                    out.put_optional(*lease);
                }
                out.put_u32(d.waiters.len() as u32);
                for w in &d.waiters {
                    out.put_u8(if w.phase == Phase::Enter { 0 } else { 1 });
                    out.put_bytes(&w.participant);
                    out.put_u64(w.request.origin);
                    out.put_u64(w.request.seq);
                    out.put_bytes(&w.wait_id);
                    out.put_optional(w.deadline);
                }
            }
        }
        out
    }
}

impl Double {
    fn waits_deadline(&self) -> Option<u64> {
        self.waiters.iter().filter_map(|w| w.deadline).min()
    }

    /// Takes `participant` out (it left, withdrew, or its lease ended).
    fn drop_participant(
        &mut self,
        ctx: &mut Context<'_>,
        name: &[u8],
        participant: &[u8],
    ) -> Result<bool, StoreError> {
        let Some(at) = self
            .participants
            .iter()
            .position(|(p, _)| p.as_ref() == participant)
        else {
            return Ok(false);
        };
        let (_, lease) = self.participants.remove(at);
        if let Some(lease) = lease {
            leases::detach(ctx, lease, &attachment(name, participant))?;
        }
        // A participant still waiting to enter has withdrawn.
        let (gone, staying): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.phase == Phase::Enter && w.participant.as_ref() == participant);
        self.waiters = staying;
        for waiter in gone {
            answer(ctx, &waiter, Reply::Nil);
        }
        Ok(true)
    }

    /// Answers every waiter of `phase`.
    fn release(&mut self, ctx: &mut Context<'_>, phase: Phase, reply: Reply) {
        let (done, staying): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.phase == phase);
        self.waiters = staying;
        for waiter in done {
            answer(ctx, &waiter, reply.clone());
        }
    }

    /// Once everybody has left, the leavers are answered.
    fn check_empty(&mut self, ctx: &mut Context<'_>) {
        if self.participants.is_empty() {
            self.release(ctx, Phase::Leave, Reply::Integer(1));
        }
    }

    /// Waits that ran out: an entering participant withdraws, a leaving one
    /// has left already; both get nil.
    fn settle(&mut self, ctx: &mut Context<'_>, name: &[u8]) -> Result<(), StoreError> {
        let ct = ctx.ct;
        let (late, staying): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.deadline.is_some_and(|at| at <= ct));
        self.waiters = staying;
        for waiter in late {
            answer(ctx, &waiter, Reply::Nil);
            if waiter.phase == Phase::Enter {
                self.drop_participant(ctx, name, &waiter.participant)?;
            }
        }
        self.check_empty(ctx);
        Ok(())
    }
}

fn answer(ctx: &mut Context<'_>, waiter: &Waiter, reply: Reply) {
    ctx.defer_reply(waiter.request, reply);
    parking::forget(ctx, &waiter.wait_id);
}

fn attachment(name: &[u8], participant: &[u8]) -> Attachment {
    Attachment::Participant {
        barrier: Bytes::copy_from_slice(name),
        participant: Bytes::copy_from_slice(participant),
    }
}

/// The earliest wait deadline in a stored barrier body.
pub fn waits_deadline(body: &[u8]) -> Result<Option<u64>, StoreError> {
    Ok(match Barrier::decode(body)? {
        Barrier::Double(d) => d.waits_deadline(),
        Barrier::Single => None,
    })
}

fn load(
    ctx: &Context<'_>,
    key: &[u8],
) -> Result<Result<Option<(Record, Barrier)>, Reply>, StoreError> {
    Ok(match ctx.typed_record(key, ValueType::Barrier)? {
        Ok(Some(record)) => {
            let barrier = Barrier::decode(&record.body)?;
            Ok(Some((record, barrier)))
        }
        other => other.map(|_| None),
    })
}

fn save(
    ctx: &mut Context<'_>,
    key: &[u8],
    existing: Option<Record>,
    barrier: &Barrier,
) -> Result<(), StoreError> {
    ctx.store_body(
        key,
        existing,
        ValueType::Barrier,
        Bytes::from(barrier.encode()),
    )?;
    ctx.notify(notify::MODULE, "barrier", key)?;
    let waits = match barrier {
        Barrier::Double(d) => d.waits_deadline(),
        Barrier::Single => None,
    };
    ctx.set_deadline(Target::Waits(Bytes::copy_from_slice(key)), waits);
    Ok(())
}

fn save_double(
    ctx: &mut Context<'_>,
    key: &[u8],
    existing: Option<Record>,
    double: Double,
) -> Result<(), StoreError> {
    if double.participants.is_empty() && double.waiters.is_empty() {
        // Everybody left: the barrier resets.
        if existing.is_some() {
            ctx.remove_own(key)?;
            ctx.notify(notify::GENERIC, "del", key)?;
        }
        return Ok(());
    }
    save(ctx, key, existing, &Barrier::Double(double))
}

fn not_double() -> Reply {
    Reply::error("ERR this barrier is not a double barrier")
}

pub fn execute(ctx: &mut Context<'_>, command: BarrierCommand) -> Result<Reply, StoreError> {
    match command {
        BarrierCommand::Set(name) => match load(ctx, &name)? {
            Err(reply) => Ok(reply),
            Ok(Some(_)) => Ok(Reply::Integer(0)),
            Ok(None) => {
                save(ctx, &name, None, &Barrier::Single)?;
                Ok(Reply::Integer(1))
            }
        },
        BarrierCommand::Wait(name) => match load(ctx, &name)? {
            Err(reply) => Ok(reply),
            Ok(None) => Ok(Reply::Integer(1)),
            Ok(Some((_, Barrier::Single))) => Ok(Reply::Nil),
            Ok(Some(_)) => Ok(Reply::error(
                "ERR this is a double barrier: use BARRIER.ENTER and BARRIER.LEAVE",
            )),
        },
        BarrierCommand::Remove(name) => match load(ctx, &name)? {
            Err(reply) => Ok(reply),
            Ok(None) => Ok(Reply::Integer(0)),
            Ok(Some(_)) => {
                ctx.remove(&name)?;
                ctx.notify(notify::GENERIC, "del", &name)?;
                Ok(Reply::Integer(1))
            }
        },
        BarrierCommand::Enter {
            name,
            participant,
            count,
            wait,
            lease,
        } => {
            let (record, mut double) = match load(ctx, &name)? {
                Err(reply) => return Ok(reply),
                Ok(None) => (
                    None,
                    Double {
                        count,
                        ..Double::default()
                    },
                ),
                Ok(Some((record, Barrier::Double(d)))) => (Some(record), d),
                Ok(Some(_)) => return Ok(not_double()),
            };
            let most = limits::get(ctx, Limit::Participants)?;
            if u64::from(count) > most {
                return Ok(Reply::error(format!(
                    "ERR count {count} is above barrier-max-participants ({most})"
                )));
            }
            if double.count != count {
                return Ok(Reply::error(format!(
                    "ERR barrier has count {}, not {count}",
                    double.count
                )));
            }
            if let Some(lease) = lease {
                if let Err(reply) = leases::check_attachable(ctx, lease)? {
                    return Ok(reply);
                }
            }
            let present = double.participants.iter().any(|(p, _)| *p == participant);
            if !present {
                if double.participants.len() >= count as usize && !double.full {
                    return Ok(Reply::error("ERR barrier is full"));
                }
                double.participants.push((participant.clone(), lease));
                if let Some(lease) = lease {
                    leases::attach(ctx, lease, attachment(&name, &participant))?;
                }
            }
            let entered = Reply::Integer(double.participants.len() as i64);
            if double.full || double.participants.len() >= count as usize {
                double.full = true;
                double.release(ctx, Phase::Enter, entered.clone());
                save_double(ctx, &name, record, double)?;
                return Ok(entered);
            }
            let Some(request) = ctx.parkable_request() else {
                // Inside a script or MULTI an enter cannot wait.
                save_double(ctx, &name, record, double)?;
                return Ok(Reply::Nil);
            };
            // A retried enter takes the waiting one's place.
            if let Some(at) = double
                .waiters
                .iter()
                .position(|w| w.phase == Phase::Enter && w.participant == participant)
            {
                let old = double.waiters.remove(at);
                answer(ctx, &old, Reply::Nil);
            }
            let wait_id = parking::park(ctx, ParkRef::Barrier(name.clone()));
            double.waiters.push(Waiter {
                phase: Phase::Enter,
                participant,
                request,
                wait_id,
                deadline: wait.map(|ms| ctx.ct.saturating_add(ms)),
            });
            save_double(ctx, &name, record, double)?;
            Ok(Reply::Nil)
        }
        BarrierCommand::Leave {
            name,
            participant,
            wait,
        } => {
            let (record, mut double) = match load(ctx, &name)? {
                Err(reply) => return Ok(reply),
                Ok(None) => return Ok(Reply::Integer(0)),
                Ok(Some((record, Barrier::Double(d)))) => (record, d),
                Ok(Some(_)) => return Ok(not_double()),
            };
            if !double.drop_participant(ctx, &name, &participant)? {
                return Ok(Reply::Integer(0));
            }
            if double.participants.is_empty() {
                double.check_empty(ctx);
                save_double(ctx, &name, Some(record), double)?;
                return Ok(Reply::Integer(1));
            }
            let Some(request) = ctx.parkable_request() else {
                save_double(ctx, &name, Some(record), double)?;
                return Ok(Reply::Nil);
            };
            let wait_id = parking::park(ctx, ParkRef::Barrier(name.clone()));
            double.waiters.push(Waiter {
                phase: Phase::Leave,
                participant,
                request,
                wait_id,
                deadline: wait.map(|ms| ctx.ct.saturating_add(ms)),
            });
            save_double(ctx, &name, Some(record), double)?;
            Ok(Reply::Nil)
        }
    }
}

/// A stored barrier whose waits may have run out.
pub fn settle(ctx: &mut Context<'_>, key: &[u8]) -> Result<(), StoreError> {
    if let Ok(Some((record, Barrier::Double(mut double)))) = load(ctx, key)? {
        double.settle(ctx, key)?;
        save_double(ctx, key, Some(record), double)?;
    }
    Ok(())
}

/// Lease `lease` ended: its participant leaves (and, the last to go,
/// releases the leavers).
pub fn lease_ended(
    ctx: &mut Context<'_>,
    key: &[u8],
    participant: &[u8],
    lease: u64,
) -> Result<(), StoreError> {
    let Ok(Some((record, Barrier::Double(mut double)))) = load(ctx, key)? else {
        return Ok(());
    };
    let held = double
        .participants
        .iter()
        .any(|(p, l)| p.as_ref() == participant && *l == Some(lease));
    if held {
        double.drop_participant(ctx, key, participant)?;
        double.check_empty(ctx);
        save_double(ctx, key, Some(record), double)?;
    }
    Ok(())
}

/// PARK.CANCEL of a waiting participant: an enterer withdraws, a leaver
/// stops waiting; both get nil.
pub fn cancel_wait(ctx: &mut Context<'_>, key: &[u8], wait_id: &[u8]) -> Result<bool, StoreError> {
    let Ok(Some((record, Barrier::Double(mut double)))) = load(ctx, key)? else {
        return Ok(false);
    };
    let Some(at) = double
        .waiters
        .iter()
        .position(|w| w.wait_id.as_ref() == wait_id)
    else {
        return Ok(false);
    };
    let waiter = double.waiters.remove(at);
    answer(ctx, &waiter, Reply::Nil);
    if waiter.phase == Phase::Enter {
        double.drop_participant(ctx, key, &waiter.participant)?;
        double.check_empty(ctx);
    }
    save_double(ctx, key, Some(record), double)?;
    Ok(true)
}

/// The barrier is deleted or overwritten: waiters get nil, leases let go.
pub fn discard(ctx: &mut Context<'_>, key: &[u8], old: &Record) -> Result<(), StoreError> {
    if let Barrier::Double(double) = Barrier::decode(&old.body)? {
        for (participant, lease) in &double.participants {
            if let Some(lease) = lease {
                leases::detach(ctx, *lease, &attachment(key, participant))?;
            }
        }
        for waiter in &double.waiters {
            answer(ctx, waiter, Reply::Nil);
        }
    }
    Ok(())
}
