//! The change feed: every keyspace event (the same events as keyspace
//! notifications, see `notify`), kept as replicated history at the log
//! index that made it, for a window of changes and bytes.
//!
//! Records: `H index:u64 n:u32` -> change (one per event, `n` counts the
//! events of one entry from 0); `mhf` -> the floor, the lowest index from
//! which every change is still kept; `mhc` / `mhb` -> how many changes and
//! bytes are kept. All of them are keyspace records, so every node has the
//! same history and the same floor at every index, and a snapshot carries
//! both.
//!
//! The window is kept by the entry that adds changes: it removes the oldest
//! entries' changes whole (an index's changes are all kept or all gone)
//! and raises the floor past them. A reader starts at its index or at the
//! floor, never below it, so the removed records (RocksDB tombstones) are
//! never walked; the cost of a read or of keeping the window does not grow
//! with how much history came and went.

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::args::{integer, is};
use crate::codec::{Reader, Writer};
use crate::context::Context;
use crate::glob::glob_match;
use crate::layout::prefix_end;
use crate::limits::{self, Limit};
use crate::Reply;

pub const CHANGE: u8 = b'H';
const META_FLOOR: &[u8] = b"mhf";
const META_COUNT: &[u8] = b"mhc";
const META_BYTES: &[u8] = b"mhb";
const FORMAT: u8 = 1;

/// Most changes one CHANGES.READ page holds (COUNT's ceiling and default
/// is 100).
pub const MAX_PAGE: usize = 10_000;
const DEFAULT_PAGE: usize = 100;
/// Most changes one read looks at: a reader whose prefix matches little of
/// a long stretch gets an empty page with the index reached, not a scan
/// of the whole window.
pub const MAX_SCANNED: usize = 100_000;

pub fn change_key(index: u64, n: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(13);
    out.push(CHANGE);
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
    out
}

fn index_start(index: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(CHANGE);
    out.extend_from_slice(&index.to_be_bytes());
    out
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub index: u64,
    pub key: Bytes,
    pub event: Bytes,
    /// The key's type after the change (`none` once it is gone; `znode`
    /// for a node of the namespace).
    pub kind: Bytes,
    /// A string's value before and after the change (other types: none).
    pub before: Option<Bytes>,
    pub after: Option<Bytes>,
}

fn put_value(out: &mut Vec<u8>, value: &Option<Bytes>) {
    match value {
        Some(value) => {
            out.put_u8(1);
            out.put_bytes(value);
        }
        None => out.put_u8(0),
    }
}

fn value(reader: &mut Reader<'_>) -> Result<Option<Bytes>, StoreError> {
    Ok(match reader.u8()? {
        0 => None,
        _ => Some(reader.bytes()?),
    })
}

impl Change {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.key.len() + self.event.len() + 16);
        out.put_u8(FORMAT);
        out.put_bytes(&self.key);
        out.put_bytes(&self.event);
        out.put_bytes(&self.kind);
        put_value(&mut out, &self.before);
        put_value(&mut out, &self.after);
        out
    }

    pub fn decode(index: u64, data: &[u8]) -> Result<Change, StoreError> {
        let mut reader = Reader::new(data, "change record");
        if reader.u8()? != FORMAT {
            return Err(StoreError::corrupt("change record", "unknown format"));
        }
        let key = reader.bytes()?;
        let event = reader.bytes()?;
        let kind = reader.bytes()?;
        let before = value(&mut reader)?;
        let after = value(&mut reader)?;
        reader.finish()?;
        Ok(Change {
            index,
            key,
            event,
            kind,
            before,
            after,
        })
    }

    fn reply(&self, with_values: bool) -> Reply {
        let mut fields = vec![
            (Reply::bulk("index"), Reply::Integer(self.index as i64)),
            (Reply::bulk("key"), Reply::Bulk(self.key.clone())),
            (Reply::bulk("event"), Reply::Bulk(self.event.clone())),
            (Reply::bulk("type"), Reply::Bulk(self.kind.clone())),
        ];
        if with_values {
            let shown = |value: &Option<Bytes>| value.clone().map_or(Reply::Nil, Reply::Bulk);
            fields.push((Reply::bulk("before"), shown(&self.before)));
            fields.push((Reply::bulk("after"), shown(&self.after)));
        }
        Reply::Map(fields)
    }
}

fn meta(ctx: &Context<'_>, key: &[u8]) -> Result<u64, StoreError> {
    Ok(ctx
        .raw_get(key)?
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// The floor: changes at this index and later are all kept (0 until the
/// window first removed some).
pub fn floor(ctx: &Context<'_>) -> Result<u64, StoreError> {
    meta(ctx, META_FLOOR)
}

/// Counts this entry's new changes and removes the oldest entries'
/// changes beyond the window.
pub fn settle(ctx: &mut Context<'_>, added: u64, added_bytes: u64) -> Result<(), StoreError> {
    if added == 0 {
        return Ok(());
    }
    let mut count = meta(ctx, META_COUNT)? + added;
    let mut bytes = meta(ctx, META_BYTES)? + added_bytes;
    let max_count = limits::get(ctx, Limit::ChangesKept)?;
    let max_bytes = limits::get(ctx, Limit::ChangesBytes)?;
    let mut floor = floor(ctx)?;
    while count > max_count || bytes > max_bytes {
        // The oldest kept index, and all of its changes.
        let mut oldest = None;
        ctx.raw_scan(&index_start(floor), &[CHANGE + 1], &mut |key, _| {
            oldest = key
                .get(1..9)
                .map(|i| u64::from_be_bytes(i.try_into().expect("8")));
            false
        })?;
        let Some(oldest) = oldest else {
            break;
        };
        if oldest >= ctx.index {
            // Never this entry's own changes: the window holds at least one
            // entry's worth.
            break;
        }
        let mut doomed = Vec::new();
        ctx.raw_scan(
            &index_start(oldest),
            &index_start(oldest + 1),
            &mut |key, value| {
                doomed.push((key.to_vec(), value.len() as u64));
                true
            },
        )?;
        for (key, size) in doomed {
            count -= 1;
            bytes = bytes.saturating_sub(size + key.len() as u64);
            ctx.raw_delete(key);
        }
        floor = oldest + 1;
    }
    ctx.raw_put(META_COUNT.to_vec(), count.to_be_bytes().to_vec());
    ctx.raw_put(META_BYTES.to_vec(), bytes.to_be_bytes().to_vec());
    ctx.raw_put(META_FLOOR.to_vec(), floor.to_be_bytes().to_vec());
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangesCommand {
    /// `CHANGES.READ pattern FROM index [COUNT n] [WITHVALUES] [BLOCK ms]`
    /// (BLOCK is the node's: the engine answers at once).
    Read {
        pattern: Bytes,
        from: u64,
        count: usize,
        with_values: bool,
    },
    /// `CHANGES.INFO`.
    Info,
    /// `XRANGE __changes__ start end [COUNT n]`: the feed as a read-only
    /// stream whose entry IDs are `index-n`.
    XRange {
        start: (u64, u32),
        end: (u64, u32),
        count: usize,
    },
    /// `XREAD [COUNT n] [BLOCK ms] STREAMS __changes__ id` (BLOCK is the
    /// node's): the entries after `id`.
    XRead { after: (u64, u32), count: usize },
}

/// The name of the change feed as a stream.
pub const STREAM: &[u8] = b"__changes__";

fn stream_only(key: &[u8]) -> Result<(), Reply> {
    if key == STREAM {
        Ok(())
    } else {
        Err(Reply::error(
            "ERR the only stream is the change feed, __changes__ (read-only: XRANGE, XREAD)",
        ))
    }
}

/// A stream ID `index-n`, `index` (n = `low`), `-` or `+`.
fn stream_id(arg: &[u8], low: bool) -> Result<(u64, u32), Reply> {
    let invalid = || Reply::error("ERR Invalid stream ID specified as stream command argument");
    match arg {
        b"-" => return Ok((0, 0)),
        b"+" => return Ok((u64::MAX, u32::MAX)),
        _ => {}
    }
    let text = std::str::from_utf8(arg).map_err(|_| invalid())?;
    let (index, n) = match text.split_once('-') {
        Some((index, n)) => (index, Some(n)),
        None => (text, None),
    };
    let index: u64 = index.parse().map_err(|_| invalid())?;
    let n = match n {
        Some(n) => n.parse().map_err(|_| invalid())?,
        None if low => 0,
        None => u32::MAX,
    };
    Ok((index, n))
}

fn bad_index() -> Reply {
    Reply::error("ERR FROM must be a log index (a non-negative integer)")
}

fn stream_count(arg: &[u8]) -> Result<usize, Reply> {
    integer(arg)
        .ok()
        .filter(|n| *n > 0)
        .map(|n| (n as usize).min(MAX_PAGE))
        .ok_or_else(|| Reply::error("ERR COUNT must be a positive integer"))
}

pub fn parse(name: &str, args: &[Bytes]) -> Result<ChangesCommand, Reply> {
    if name == "changes.info" {
        return Ok(ChangesCommand::Info);
    }
    if name == "xrange" {
        stream_only(&args[0])?;
        let start = stream_id(&args[1], true)?;
        let end = stream_id(&args[2], false)?;
        let count = match &args[3..] {
            [] => MAX_PAGE,
            [option, n] if is(option, "count") => stream_count(n)?,
            _ => return Err(Reply::syntax_error()),
        };
        return Ok(ChangesCommand::XRange { start, end, count });
    }
    if name == "xread" {
        let mut count = MAX_PAGE;
        let mut rest = args.iter();
        loop {
            let Some(option) = rest.next() else {
                return Err(Reply::syntax_error());
            };
            if is(option, "count") {
                count = stream_count(rest.next().ok_or_else(Reply::syntax_error)?)?;
            } else if is(option, "block") {
                let ms = rest.next().ok_or_else(Reply::syntax_error)?;
                if integer(ms).ok().filter(|ms| *ms >= 0).is_none() {
                    return Err(Reply::error(
                        "ERR timeout is not an integer or out of range",
                    ));
                }
            } else if is(option, "streams") {
                break;
            } else {
                return Err(Reply::syntax_error());
            }
        }
        let streams: Vec<&Bytes> = rest.collect();
        if streams.len() != 2 {
            return Err(Reply::error(
                "ERR Unbalanced 'xread' list of streams: for each stream key an ID or '$' must be specified.",
            ));
        }
        stream_only(streams[0])?;
        // `$` (only what comes next) reaches the engine resolved by the node.
        let after = stream_id(streams[1], false)?;
        return Ok(ChangesCommand::XRead { after, count });
    }
    if args.len() < 3 || !is(&args[1], "from") {
        return Err(Reply::error(
            "ERR syntax: CHANGES.READ pattern FROM index [COUNT n] [WITHVALUES] [BLOCK ms]",
        ));
    }
    let from = integer(&args[2])
        .ok()
        .and_then(|from| u64::try_from(from).ok())
        .ok_or_else(bad_index)?;
    let mut count = DEFAULT_PAGE;
    let mut with_values = false;
    let mut rest = args[3..].iter();
    while let Some(option) = rest.next() {
        if is(option, "count") {
            let value = rest.next().ok_or_else(Reply::syntax_error)?;
            count = integer(value)
                .ok()
                .filter(|n| (1..=MAX_PAGE as i64).contains(n))
                .ok_or_else(|| {
                    Reply::error(format!("ERR COUNT must be between 1 and {MAX_PAGE}"))
                })? as usize;
        } else if is(option, "withvalues") {
            with_values = true;
        } else if is(option, "block") {
            let value = rest.next().ok_or_else(Reply::syntax_error)?;
            if integer(value).ok().filter(|ms| *ms >= 0).is_none() {
                return Err(Reply::error(
                    "ERR timeout is not an integer or out of range",
                ));
            }
        } else {
            return Err(Reply::syntax_error());
        }
    }
    Ok(ChangesCommand::Read {
        pattern: args[0].clone(),
        from,
        count,
        with_values,
    })
}

/// Whether `pattern` is a plain prefix (`app/` or `app/*`) rather than a
/// glob: then the read compares bytes, which is all most watchers need.
fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let special = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b'\\');
    match pattern.split_last() {
        Some((b'*', head)) if !head.iter().any(special) => key.starts_with(head),
        _ if !pattern.iter().any(special) => key.starts_with(pattern),
        _ => glob_match(pattern, key),
    }
}

pub fn execute(ctx: &mut Context<'_>, command: ChangesCommand) -> Result<Reply, StoreError> {
    let floor = floor(ctx)?;
    // The newest index this state has applied (a read's view).
    let applied = ctx.applied.max(ctx.index);
    Ok(match command {
        ChangesCommand::Info => Reply::Map(vec![
            (Reply::bulk("floor"), Reply::Integer(floor as i64)),
            (Reply::bulk("applied"), Reply::Integer(applied as i64)),
            (
                Reply::bulk("changes"),
                Reply::Integer(meta(ctx, META_COUNT)? as i64),
            ),
            (
                Reply::bulk("bytes"),
                Reply::Integer(meta(ctx, META_BYTES)? as i64),
            ),
            (
                Reply::bulk("max-changes"),
                Reply::Integer(limits::get(ctx, Limit::ChangesKept)? as i64),
            ),
            (
                Reply::bulk("max-bytes"),
                Reply::Integer(limits::get(ctx, Limit::ChangesBytes)? as i64),
            ),
        ]),
        ChangesCommand::XRange { start, end, count } => {
            if start.0 < floor && floor > 0 {
                return Ok(compacted(floor, start.0));
            }
            let entries = stream_entries(ctx, start, end, count)?;
            Reply::Array(entries)
        }
        ChangesCommand::XRead { after, count } => {
            let start = match after.1.checked_add(1) {
                Some(n) => (after.0, n),
                None => (after.0.saturating_add(1), 0),
            };
            if start.0 < floor && floor > 0 {
                return Ok(compacted(floor, start.0));
            }
            let entries = stream_entries(ctx, start, (u64::MAX, u32::MAX), count)?;
            if entries.is_empty() {
                Reply::NilArray
            } else {
                Reply::Map(vec![(
                    Reply::Bulk(Bytes::from_static(STREAM)),
                    Reply::Array(entries),
                )])
            }
        }
        ChangesCommand::Read {
            pattern,
            from,
            count,
            with_values,
        } => {
            if from < floor {
                return Ok(compacted(floor, from));
            }
            let page = read(ctx, &pattern, from, count)?;
            let next = page.next.unwrap_or(applied + 1).max(from);
            Reply::Map(vec![
                (Reply::bulk("next"), Reply::Integer(next as i64)),
                (Reply::bulk("floor"), Reply::Integer(floor as i64)),
                (
                    Reply::bulk("changes"),
                    Reply::Array(
                        page.changes
                            .iter()
                            .map(|change| change.reply(with_values))
                            .collect(),
                    ),
                ),
            ])
        }
    })
}

fn compacted(floor: u64, from: u64) -> Reply {
    Reply::error(format!(
        "COMPACTED changes before index {floor} are no longer kept (FROM {from}); \
         read the current state and follow the feed from index {floor}"
    ))
}

/// Stream entries `[id, [key, k, event, e, type, t]]` from `start` to
/// `end` (inclusive), at most `count`.
fn stream_entries(
    ctx: &Context<'_>,
    start: (u64, u32),
    end: (u64, u32),
    count: usize,
) -> Result<Vec<Reply>, StoreError> {
    let mut from = index_start(start.0);
    from.extend_from_slice(&start.1.to_be_bytes());
    let mut entries = Vec::new();
    let mut failure = None;
    ctx.raw_scan(&from, &prefix_end(&[CHANGE]), &mut |key, data| {
        let index = u64::from_be_bytes(key[1..9].try_into().expect("8 bytes"));
        let n = u32::from_be_bytes(key[9..13].try_into().expect("4 bytes"));
        if (index, n) > end || entries.len() >= count {
            return false;
        }
        match Change::decode(index, data) {
            Ok(change) => {
                entries.push(Reply::Array(vec![
                    Reply::Bulk(Bytes::from(format!("{index}-{n}"))),
                    Reply::Array(vec![
                        Reply::bulk("key"),
                        Reply::Bulk(change.key),
                        Reply::bulk("event"),
                        Reply::Bulk(change.event),
                        Reply::bulk("type"),
                        Reply::Bulk(change.kind),
                    ]),
                ]));
                true
            }
            Err(err) => {
                failure = Some(err);
                false
            }
        }
    })?;
    match failure {
        Some(err) => Err(err),
        None => Ok(entries),
    }
}

pub struct Page {
    pub changes: Vec<Change>,
    /// Where the next read starts if this one stopped early (page full or
    /// scan bound); `None` when it read everything applied.
    pub next: Option<u64>,
}

/// Changes at `from` and later whose key matches `pattern`: at most
/// `count` (an index's changes are never split, so a page may hold more),
/// looking at no more than [`MAX_SCANNED`].
pub fn read(
    ctx: &Context<'_>,
    pattern: &[u8],
    from: u64,
    count: usize,
) -> Result<Page, StoreError> {
    let mut changes = Vec::new();
    let mut next = None;
    let mut scanned = 0usize;
    let mut failure = None;
    ctx.raw_scan(
        &index_start(from),
        &prefix_end(&[CHANGE]),
        &mut |key, data| {
            let index = u64::from_be_bytes(key[1..9].try_into().expect("8 bytes"));
            let last = changes.last().map(|change: &Change| change.index);
            if (changes.len() >= count || scanned >= MAX_SCANNED) && last != Some(index) {
                next = Some(index);
                return false;
            }
            scanned += 1;
            match Change::decode(index, data) {
                Ok(change) => {
                    if matches(pattern, &change.key) {
                        changes.push(change);
                    }
                    true
                }
                Err(err) => {
                    failure = Some(err);
                    false
                }
            }
        },
    )?;
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(Page { changes, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_and_truncation_is_an_error() {
        let change = Change {
            index: 7,
            key: Bytes::from_static(b"k"),
            event: Bytes::from_static(b"set"),
            kind: Bytes::from_static(b"string"),
            before: None,
            after: Some(Bytes::from_static(b"v")),
        };
        let data = change.encode();
        assert_eq!(Change::decode(7, &data).unwrap(), change);
        for cut in 0..data.len() {
            assert!(Change::decode(7, &data[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn prefixes_and_globs_match() {
        assert!(matches(b"app/", b"app/x"));
        assert!(matches(b"app/*", b"app/x"));
        assert!(!matches(b"app/*", b"ap"));
        assert!(matches(b"", b"anything"));
        assert!(matches(b"*", b"anything"));
        assert!(matches(b"a?c", b"abc"));
        assert!(!matches(b"a?c", b"abcd"));
    }
}
