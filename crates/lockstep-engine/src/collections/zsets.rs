//! Sorted sets: members ordered by (score, member), with Redis's range
//! forms (by rank, score or lex, forward or reversed, with LIMIT), pops,
//! removals by range, and union / intersection / difference of sorted sets
//! and sets.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::stored::{load, save, save_result, Failure, Outcome, Set, SortedSet};
use super::{bulk, positive_count, range, Validation};
use crate::args::{integer, is};
use crate::context::Context;
use crate::notify;
use crate::record::ValueType;
use crate::Reply;

pub const NAMES: &[&str] = &[
    "zadd",
    "zrem",
    "zscore",
    "zmscore",
    "zincrby",
    "zcard",
    "zrank",
    "zrevrank",
    "zrange",
    "zrangebyscore",
    "zrevrangebyscore",
    "zrevrange",
    "zrangebylex",
    "zrevrangebylex",
    "zcount",
    "zlexcount",
    "zremrangebyscore",
    "zremrangebyrank",
    "zremrangebylex",
    "zpopmin",
    "zpopmax",
    "zunionstore",
    "zinterstore",
    "zdiffstore",
    "zunion",
    "zinter",
    "zdiff",
];

pub fn validate(name: &'static str, args: &[Bytes]) -> Validation {
    match name {
        "zadd" => {
            zadd_options(args)?;
        }
        "zincrby" => {
            score(&args[1])?;
        }
        "zrank" | "zrevrank" => match args.len() {
            2 => {}
            3 if is(&args[2], "withscore") => {}
            _ => return Err(Reply::syntax_error()),
        },
        "zrange" | "zrangebyscore" | "zrevrangebyscore" | "zrevrange" | "zrangebylex"
        | "zrevrangebylex" => {
            range_options(name, args)?;
        }
        "zcount" | "zremrangebyscore" => {
            bound(&args[1])?;
            bound(&args[2])?;
        }
        "zlexcount" | "zremrangebylex" => {
            lex_bound(&args[1])?;
            lex_bound(&args[2])?;
        }
        "zremrangebyrank" => {
            integer(&args[1])?;
            integer(&args[2])?;
        }
        "zpopmin" | "zpopmax" => match args.len() {
            1 => {}
            2 => {
                positive_count(&args[1])?;
            }
            _ => return Err(Reply::syntax_error()),
        },
        "zunionstore" | "zinterstore" | "zdiffstore" => {
            combine_options(name, &args[1..])?;
        }
        "zunion" | "zinter" | "zdiff" => {
            combine_options(name, args)?;
        }
        _ => {}
    }
    Ok(())
}

fn score(arg: &[u8]) -> Result<f64, Reply> {
    let invalid = || Reply::error("ERR value is not a valid float");
    let text = std::str::from_utf8(arg).map_err(|_| invalid())?;
    let value = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        lower if lower.contains("nan") || lower.contains("inf") => return Err(invalid()),
        _ => text.trim().parse::<f64>().map_err(|_| invalid())?,
    };
    if text.trim() != text || value.is_nan() {
        return Err(invalid());
    }
    Ok(value)
}

/// A ZRANGEBYSCORE bound: `x`, `(x` (exclusive), `-inf`, `+inf`.
#[derive(Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

fn bound(arg: &[u8]) -> Result<Bound, Reply> {
    let invalid = || Reply::error("ERR min or max is not a float");
    match arg.strip_prefix(b"(") {
        Some(rest) => Ok(Bound {
            value: score(rest).map_err(|_| invalid())?,
            exclusive: true,
        }),
        None => Ok(Bound {
            value: score(arg).map_err(|_| invalid())?,
            exclusive: false,
        }),
    }
}

fn above(score: f64, min: Bound) -> bool {
    if min.exclusive {
        score > min.value
    } else {
        score >= min.value
    }
}

fn below(score: f64, max: Bound) -> bool {
    if max.exclusive {
        score < max.value
    } else {
        score <= max.value
    }
}

#[derive(Default)]
struct ZaddOptions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
    pairs: Vec<(f64, Bytes)>,
}

fn zadd_options(args: &[Bytes]) -> Result<ZaddOptions, Reply> {
    let mut options = ZaddOptions::default();
    let mut at = 1;
    while at < args.len() {
        let arg = &args[at];
        match () {
            _ if is(arg, "nx") => options.nx = true,
            _ if is(arg, "xx") => options.xx = true,
            _ if is(arg, "gt") => options.gt = true,
            _ if is(arg, "lt") => options.lt = true,
            _ if is(arg, "ch") => options.ch = true,
            _ if is(arg, "incr") => options.incr = true,
            _ => break,
        }
        at += 1;
    }
    let rest = &args[at..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(Reply::syntax_error());
    }
    if options.nx && options.xx {
        return Err(Reply::error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (options.gt && options.lt) || (options.nx && (options.gt || options.lt)) {
        return Err(Reply::error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if options.incr && rest.len() != 2 {
        return Err(Reply::error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    for pair in rest.chunks(2) {
        options.pairs.push((score(&pair[0])?, pair[1].clone()));
    }
    Ok(options)
}

fn format_score(value: f64) -> Bytes {
    Bytes::from(crate::format_double(value))
}

/// A ZRANGEBYLEX bound: `[x` (inclusive), `(x` (exclusive), `-`, `+`.
#[derive(Clone, Debug)]
enum LexBound {
    Min,
    Max,
    Inclusive(Bytes),
    Exclusive(Bytes),
}

fn lex_bound(arg: &Bytes) -> Result<LexBound, Reply> {
    match arg.first() {
        Some(b'-') if arg.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if arg.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::Inclusive(arg.slice(1..))),
        Some(b'(') => Ok(LexBound::Exclusive(arg.slice(1..))),
        _ => Err(Reply::error("ERR min or max not valid string range item")),
    }
}

fn lex_above(member: &[u8], min: &LexBound) -> bool {
    match min {
        LexBound::Min => true,
        LexBound::Max => false,
        LexBound::Inclusive(value) => member >= value.as_ref(),
        LexBound::Exclusive(value) => member > value.as_ref(),
    }
}

fn lex_below(member: &[u8], max: &LexBound) -> bool {
    match max {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::Inclusive(value) => member <= value.as_ref(),
        LexBound::Exclusive(value) => member < value.as_ref(),
    }
}

/// Whether a lex range can hold anything (min not above max).
fn lex_range_empty(min: &LexBound, max: &LexBound) -> bool {
    match (min, max) {
        (LexBound::Max, _) | (_, LexBound::Min) => true,
        (LexBound::Min, _) | (_, LexBound::Max) => false,
        (LexBound::Inclusive(a), LexBound::Inclusive(b)) => a > b,
        (
            LexBound::Inclusive(a) | LexBound::Exclusive(a),
            LexBound::Inclusive(b) | LexBound::Exclusive(b),
        ) => a >= b,
    }
}

/// The members of a lex range in score order, found as Redis finds them:
/// from the first member at or above `min`, while members stay at or
/// below `max` (from the last member at or below `max`, downwards, when
/// reversed). With equal scores, as lex ranges are meant to be used, that
/// is every member in the range; with mixed scores it is what Redis
/// answers for a small sorted set.
fn lex_walk<'a>(
    ordered: Vec<(&'a Bytes, f64)>,
    min: &LexBound,
    max: &LexBound,
    rev: bool,
) -> Vec<(&'a Bytes, f64)> {
    let (Some(first), Some(last)) = (ordered.first(), ordered.last()) else {
        return Vec::new();
    };
    if lex_range_empty(min, max) || !lex_above(last.0, min) || !lex_below(first.0, max) {
        return Vec::new();
    }
    if rev {
        let Some(start) = ordered.iter().rposition(|(m, _)| lex_below(m, max)) else {
            return Vec::new();
        };
        ordered[..=start]
            .iter()
            .rev()
            .take_while(|(m, _)| lex_above(m, min))
            .copied()
            .collect()
    } else {
        let Some(start) = ordered.iter().position(|(m, _)| lex_above(m, min)) else {
            return Vec::new();
        };
        ordered[start..]
            .iter()
            .take_while(|(m, _)| lex_below(m, max))
            .copied()
            .collect()
    }
}

/// Which members a range selects.
enum Selection {
    Rank(i64, i64),
    Score(Bound, Bound),
    Lex(LexBound, LexBound),
}

struct RangeOptions {
    selection: Selection,
    rev: bool,
    limit: Option<(i64, i64)>,
    with_scores: bool,
}

/// Parses every range form. ZRANGE takes BYSCORE / BYLEX / REV / LIMIT /
/// WITHSCORES; the older commands fix the kind and direction, and take
/// WITHSCORES (not the lex ones) and LIMIT (not ZREVRANGE).
fn range_options(name: &str, args: &[Bytes]) -> Result<RangeOptions, Reply> {
    #[derive(PartialEq)]
    enum Kind {
        Rank,
        Score,
        Lex,
    }
    let (mut kind, mut rev, flexible) = match name {
        "zrange" => (Kind::Rank, false, true),
        "zrevrange" => (Kind::Rank, true, false),
        "zrangebyscore" => (Kind::Score, false, false),
        "zrevrangebyscore" => (Kind::Score, true, false),
        "zrangebylex" => (Kind::Lex, false, false),
        "zrevrangebylex" => (Kind::Lex, true, false),
        other => unreachable!("{other} is not a range command"),
    };
    let mut limit = None;
    let mut with_scores = false;
    let mut at = 3;
    while at < args.len() {
        let arg = &args[at];
        if is(arg, "withscores") && (flexible || kind != Kind::Lex) {
            with_scores = true;
        } else if is(arg, "byscore") && flexible && kind == Kind::Rank {
            kind = Kind::Score;
        } else if is(arg, "bylex") && flexible && kind == Kind::Rank {
            kind = Kind::Lex;
        } else if is(arg, "rev") && flexible {
            rev = true;
        } else if is(arg, "limit") && at + 2 < args.len() && (flexible || kind != Kind::Rank) {
            limit = Some((integer(&args[at + 1])?, integer(&args[at + 2])?));
            at += 2;
        } else {
            return Err(Reply::syntax_error());
        }
        at += 1;
    }
    // Reversed score and lex ranges name the upper end first.
    let (low, high) = if rev && kind != Kind::Rank {
        (&args[2], &args[1])
    } else {
        (&args[1], &args[2])
    };
    let selection = match kind {
        Kind::Rank => {
            // Redis lets a rank range through with any offset so long as
            // the count is -1 (and then ignores the offset).
            if limit.is_some_and(|(_, count)| count != -1) {
                return Err(Reply::error(
                    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
                ));
            }
            Selection::Rank(integer(&args[1])?, integer(&args[2])?)
        }
        Kind::Score => Selection::Score(bound(low)?, bound(high)?),
        Kind::Lex => {
            if with_scores {
                return Err(Reply::error(
                    "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
                ));
            }
            Selection::Lex(lex_bound(low)?, lex_bound(high)?)
        }
    };
    Ok(RangeOptions {
        selection,
        rev,
        limit,
        with_scores,
    })
}

/// The members a selection picks, in the order a reply lists them.
fn select<'a>(
    zset: &'a SortedSet,
    selection: &Selection,
    rev: bool,
    limit: Option<(i64, i64)>,
) -> Vec<(&'a Bytes, f64)> {
    let mut ordered = zset.ordered();
    if rev {
        ordered.reverse();
    }
    let matching: Vec<(&Bytes, f64)> = match selection {
        Selection::Rank(start, stop) => {
            return match range(ordered.len(), *start, *stop) {
                Some((start, stop)) => ordered[start..=stop].to_vec(),
                None => Vec::new(),
            }
        }
        Selection::Score(min, max) => ordered
            .into_iter()
            .filter(|(_, s)| above(*s, *min) && below(*s, *max))
            .collect(),
        Selection::Lex(min, max) => {
            if rev {
                ordered.reverse();
            }
            lex_walk(ordered, min, max, rev)
        }
    };
    match limit {
        None => matching,
        Some((offset, _)) if offset < 0 => Vec::new(),
        Some((offset, count)) => {
            let count = if count < 0 {
                usize::MAX
            } else {
                count as usize
            };
            matching
                .into_iter()
                .skip(offset as usize)
                .take(count)
                .collect()
        }
    }
}

fn scored_reply(selected: &[(&Bytes, f64)], with_scores: bool) -> Reply {
    let mut out = Vec::with_capacity(selected.len() * 2);
    for (member, value) in selected {
        out.push(bulk(member));
        if with_scores {
            out.push(Reply::Bulk(format_score(*value)));
        }
    }
    Reply::Array(out)
}

#[derive(Clone, Copy, PartialEq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

struct CombineOptions {
    keys: Vec<Bytes>,
    weights: Vec<f64>,
    aggregate: Aggregate,
    with_scores: bool,
}

/// `numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX]
/// [WITHSCORES]` of ZUNION, ZINTER, ZDIFF and their STORE forms.
fn combine_options(name: &str, args: &[Bytes]) -> Result<CombineOptions, Reply> {
    let numkeys = integer(&args[0])?;
    if numkeys <= 0 {
        return Err(Reply::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let numkeys = numkeys as usize;
    if numkeys > args.len() - 1 {
        return Err(Reply::syntax_error());
    }
    let stores = name.ends_with("store");
    let is_diff = name.starts_with("zdiff");
    let mut options = CombineOptions {
        keys: args[1..1 + numkeys].to_vec(),
        weights: vec![1.0; numkeys],
        aggregate: Aggregate::Sum,
        with_scores: false,
    };
    let rest = &args[1 + numkeys..];
    let mut at = 0;
    while at < rest.len() {
        let arg = &rest[at];
        if is(arg, "weights") && !is_diff && at + numkeys < rest.len() {
            for (slot, weight) in rest[at + 1..=at + numkeys].iter().enumerate() {
                options.weights[slot] =
                    score(weight).map_err(|_| Reply::error("ERR weight value is not a float"))?;
            }
            at += numkeys;
        } else if is(arg, "aggregate") && !is_diff && at + 1 < rest.len() {
            let value = &rest[at + 1];
            options.aggregate = if is(value, "sum") {
                Aggregate::Sum
            } else if is(value, "min") {
                Aggregate::Min
            } else if is(value, "max") {
                Aggregate::Max
            } else {
                return Err(Reply::syntax_error());
            };
            at += 1;
        } else if is(arg, "withscores") && !stores {
            options.with_scores = true;
        } else {
            return Err(Reply::syntax_error());
        }
        at += 1;
    }
    Ok(options)
}

/// The scores at `key`: a sorted set, or a set whose members score 1.
fn scores_of(ctx: &Context<'_>, key: &[u8]) -> Outcome<BTreeMap<Bytes, f64>> {
    match ctx.record(key)?.map(|record| record.value_type) {
        None => Ok(BTreeMap::new()),
        Some(ValueType::SortedSet) => Ok(load::<SortedSet>(ctx, key)?.1.scores),
        Some(ValueType::Set) => Ok(load::<Set>(ctx, key)?
            .1
             .0
            .into_iter()
            .map(|member| (member, 1.0))
            .collect()),
        Some(_) => Err(Failure::Reply(Reply::wrong_type())),
    }
}

/// `a * b` where 0 * inf counts as 0, as in Redis.
fn weighted(value: f64, weight: f64) -> f64 {
    let product = value * weight;
    if product.is_nan() {
        0.0
    } else {
        product
    }
}

fn aggregate(aggregate: Aggregate, a: f64, b: f64) -> f64 {
    match aggregate {
        Aggregate::Sum => {
            let sum = a + b;
            // inf + -inf: Redis keeps 0.
            if sum.is_nan() {
                0.0
            } else {
                sum
            }
        }
        Aggregate::Min => a.min(b),
        Aggregate::Max => a.max(b),
    }
}

fn combine(ctx: &Context<'_>, name: &str, options: &CombineOptions) -> Outcome<SortedSet> {
    let mut inputs = Vec::with_capacity(options.keys.len());
    for key in &options.keys {
        inputs.push(scores_of(ctx, key)?);
    }
    let mut inputs = inputs.into_iter().zip(&options.weights);
    let (first, weight) = inputs.next().expect("at least one key");
    let mut result: BTreeMap<Bytes, f64> = first
        .into_iter()
        .map(|(member, value)| (member, weighted(value, *weight)))
        .collect();
    for (input, weight) in inputs {
        if name.starts_with("zunion") {
            for (member, value) in input {
                let value = weighted(value, *weight);
                result
                    .entry(member)
                    .and_modify(|current| *current = aggregate(options.aggregate, *current, value))
                    .or_insert(value);
            }
        } else if name.starts_with("zinter") {
            result.retain(|member, _| input.contains_key(member));
            for (member, current) in result.iter_mut() {
                let value = weighted(input[member], *weight);
                *current = aggregate(options.aggregate, *current, value);
            }
        } else {
            result.retain(|member, _| !input.contains_key(member));
        }
    }
    Ok(SortedSet::from_scores(result))
}

pub fn execute(ctx: &mut Context<'_>, name: &'static str, args: &[Bytes]) -> Outcome<Reply> {
    match name {
        "zunionstore" | "zinterstore" | "zdiffstore" => {
            let options = combine_options(name, &args[1..])?;
            let result = combine(ctx, name, &options)?;
            let len = result.scores.len() as i64;
            save_result(ctx, &args[0], &result, (notify::ZSET, name))?;
            return Ok(Reply::Integer(len));
        }
        "zunion" | "zinter" | "zdiff" => {
            let options = combine_options(name, args)?;
            let result = combine(ctx, name, &options)?;
            return Ok(scored_reply(&result.ordered(), options.with_scores));
        }
        _ => {}
    }
    let key = &args[0];
    let (record, mut zset) = load::<SortedSet>(ctx, key)?;
    let reply = match name {
        "zadd" => {
            let options = zadd_options(args)?;
            let mut added = 0;
            let mut changed = 0;
            let mut incremented = None;
            for (given, member) in options.pairs {
                let current = zset.scores.get(&member).copied();
                if (options.nx && current.is_some()) || (options.xx && current.is_none()) {
                    continue;
                }
                let next = match (options.incr, current) {
                    (true, Some(old)) => old + given,
                    _ => given,
                };
                if next.is_nan() {
                    return Err(Reply::error("ERR resulting score is not a number (NaN)").into());
                }
                if let Some(old) = current {
                    if (options.gt && next <= old) || (options.lt && next >= old) {
                        continue;
                    }
                    if next != old {
                        changed += 1;
                    }
                } else {
                    added += 1;
                }
                zset.scores.insert(member, next);
                incremented = Some(next);
            }
            if added + changed > 0 {
                zset.prepare();
                let event = if options.incr { "zincr" } else { "zadd" };
                save(ctx, key, record, &zset, (notify::ZSET, event))?;
            }
            return Ok(if options.incr {
                incremented.map_or(Reply::Nil, Reply::Double)
            } else if options.ch {
                Reply::Integer(added + changed)
            } else {
                Reply::Integer(added)
            });
        }
        "zincrby" => {
            let by = score(&args[1])?;
            let current = zset.scores.get(&args[2]).copied();
            let next = current.unwrap_or(0.0) + by;
            if next.is_nan() {
                return Err(Reply::error("ERR resulting score is not a number (NaN)").into());
            }
            if current != Some(next) {
                zset.scores.insert(args[2].clone(), next);
                zset.prepare();
                save(ctx, key, record, &zset, (notify::ZSET, "zincr"))?;
            }
            return Ok(Reply::Double(next));
        }
        "zrem" => {
            let removed = args[1..]
                .iter()
                .filter(|m| zset.scores.remove(*m).is_some())
                .count();
            if removed > 0 {
                zset.prepare();
                save(ctx, key, record, &zset, (notify::ZSET, "zrem"))?;
            }
            return Ok(Reply::Integer(removed as i64));
        }
        "zscore" => zset
            .scores
            .get(&args[1])
            .map_or(Reply::Nil, |s| Reply::Double(*s)),
        "zcard" => Reply::Integer(zset.scores.len() as i64),
        "zcount" => {
            let (min, max) = (bound(&args[1])?, bound(&args[2])?);
            let count = zset
                .scores
                .values()
                .filter(|s| above(**s, min) && below(**s, max))
                .count();
            Reply::Integer(count as i64)
        }
        "zrank" | "zrevrank" => {
            let mut ordered = zset.ordered();
            if name == "zrevrank" {
                ordered.reverse();
            }
            match ordered.iter().position(|(member, _)| **member == args[1]) {
                None => Reply::Nil,
                Some(rank) if args.len() == 3 => Reply::Array(vec![
                    Reply::Integer(rank as i64),
                    Reply::Double(ordered[rank].1),
                ]),
                Some(rank) => Reply::Integer(rank as i64),
            }
        }
        "zmscore" => Reply::Array(
            args[1..]
                .iter()
                .map(|m| zset.scores.get(m).map_or(Reply::Nil, |s| Reply::Double(*s)))
                .collect(),
        ),
        "zlexcount" => {
            let (min, max) = (lex_bound(&args[1])?, lex_bound(&args[2])?);
            Reply::Integer(lex_walk(zset.ordered(), &min, &max, false).len() as i64)
        }
        "zrange" | "zrangebyscore" | "zrevrangebyscore" | "zrevrange" | "zrangebylex"
        | "zrevrangebylex" => {
            let options = range_options(name, args)?;
            let selected = select(&zset, &options.selection, options.rev, options.limit);
            scored_reply(&selected, options.with_scores)
        }
        "zremrangebyscore" | "zremrangebyrank" | "zremrangebylex" => {
            let selection = match name {
                "zremrangebyscore" => Selection::Score(bound(&args[1])?, bound(&args[2])?),
                "zremrangebylex" => Selection::Lex(lex_bound(&args[1])?, lex_bound(&args[2])?),
                _ => Selection::Rank(integer(&args[1])?, integer(&args[2])?),
            };
            let doomed: Vec<Bytes> = select(&zset, &selection, false, None)
                .into_iter()
                .map(|(member, _)| member.clone())
                .collect();
            for member in &doomed {
                zset.scores.remove(member);
            }
            if !doomed.is_empty() {
                zset.prepare();
                save(ctx, key, record, &zset, (notify::ZSET, name))?;
            }
            Reply::Integer(doomed.len() as i64)
        }
        "zpopmin" | "zpopmax" => {
            let count = match args.get(1) {
                Some(count) => positive_count(count)?,
                None => 1,
            };
            let mut ordered = zset.ordered();
            if name == "zpopmax" {
                ordered.reverse();
            }
            let popped: Vec<(Bytes, f64)> = ordered
                .into_iter()
                .take(count)
                .map(|(member, value)| (member.clone(), value))
                .collect();
            let mut out = Vec::with_capacity(popped.len() * 2);
            for (member, value) in &popped {
                zset.scores.remove(member);
                out.push(bulk(member));
                out.push(Reply::Double(*value));
            }
            if !popped.is_empty() {
                zset.prepare();
                save(ctx, key, record, &zset, (notify::ZSET, name))?;
            }
            Reply::Array(out)
        }
        other => unreachable!("{other} is not a sorted set command"),
    };
    Ok(reply)
}
