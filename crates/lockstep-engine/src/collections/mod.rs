//! Hashes, lists, sets and sorted sets with Redis's semantics and errors.
//!
//! A command is validated completely by [`parse`] (arity, numbers, options)
//! before it reaches the log; [`execute`] then reads the same arguments.
//! Each type is its own module (`hashes`, `lists`, `sets`, `zsets`) with
//! its names, validation and execution; blocking pops are in `blocking`.

pub mod blocking;
mod hashes;
mod lists;
mod sets;
mod stored;
mod zsets;

use std::collections::VecDeque;

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::is;
use crate::context::Context;
use crate::Reply;
pub use stored::items_of;
use stored::Failure;

/// Most items a reply built from a count argument may hold (SRANDMEMBER
/// with a negative count repeats members): a bound on one reply's memory.
pub const MAX_REPLY_ITEMS: usize = 1_000_000;

/// The outcome of validating a command's arguments.
type Validation = Result<(), Reply>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Hash,
    List,
    Set,
    SortedSet,
}

fn family(name: &str) -> Option<Family> {
    if hashes::NAMES.contains(&name) {
        Some(Family::Hash)
    } else if lists::NAMES.contains(&name) {
        Some(Family::List)
    } else if sets::NAMES.contains(&name) {
        Some(Family::Set)
    } else if zsets::NAMES.contains(&name) {
        Some(Family::SortedSet)
    } else {
        None
    }
}

/// Whether `name` is a collection command.
pub fn handles(name: &str) -> bool {
    family(name).is_some()
}

#[derive(Clone, Debug, PartialEq)]
pub struct CollectionCommand {
    name: &'static str,
    args: Vec<Bytes>,
}

pub fn parse(name: &'static str, args: &[Bytes]) -> Result<CollectionCommand, Reply> {
    match family(name).expect("a collection command") {
        Family::Hash => hashes::validate(name, args)?,
        Family::List => lists::validate(name, args)?,
        Family::Set => sets::validate(name, args)?,
        Family::SortedSet => zsets::validate(name, args)?,
    }
    Ok(CollectionCommand {
        name,
        args: args.to_vec(),
    })
}

pub fn execute(ctx: &mut Context<'_>, command: CollectionCommand) -> Result<Reply, StoreError> {
    let (name, args) = (command.name, &command.args);
    let outcome = match family(name).expect("a collection command") {
        Family::Hash => hashes::execute(ctx, name, args),
        Family::List => lists::execute(ctx, name, args),
        Family::Set => sets::execute(ctx, name, args),
        Family::SortedSet => zsets::execute(ctx, name, args),
    };
    match outcome {
        Ok(reply) | Err(Failure::Reply(reply)) => Ok(reply),
        Err(Failure::Store(err)) => Err(err),
    }
}

/// A pop's COUNT as Redis reads it: anything but a non-negative integer
/// is "out of range, must be positive".
fn positive_count(arg: &[u8]) -> Result<usize, Reply> {
    crate::args::parse_i64(arg)
        .filter(|count| *count >= 0)
        .map(|count| count as usize)
        .ok_or_else(|| Reply::error("ERR value is out of range, must be positive"))
}

fn bulk(data: &Bytes) -> Reply {
    Reply::Bulk(data.clone())
}

/// A deterministic pseudo-random sequence (SplitMix64) for SPOP and
/// SRANDMEMBER, seeded by the entry's index and cluster time and the key,
/// so every replica draws the same members.
struct Draw(u64);

impl Draw {
    fn new(ctx: &Context<'_>, key: &[u8]) -> Self {
        let key_hash = xxhash_rust::xxh3::xxh3_64(key);
        Draw(ctx.index.rotate_left(32) ^ ctx.ct ^ key_hash)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a std::collections::BTreeSet<T>) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let at = self.below(items.len());
        items.iter().nth(at)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Side {
    Left,
    Right,
}

fn side(arg: &[u8]) -> Result<Side, Reply> {
    if is(arg, "left") {
        Ok(Side::Left)
    } else if is(arg, "right") {
        Ok(Side::Right)
    } else {
        Err(Reply::syntax_error())
    }
}

/// Redis's index rules: negative counts from the end; the range is clamped.
fn range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

fn pop(list: &mut VecDeque<Bytes>, from: Side) -> Option<Bytes> {
    match from {
        Side::Left => list.pop_front(),
        Side::Right => list.pop_back(),
    }
}
