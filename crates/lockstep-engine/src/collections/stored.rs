//! How hashes, lists, sets and sorted sets are kept: the whole collection in
//! one value record, as length-prefixed items. Collections in a
//! coordination service are small (lock owners, waiters, members), and one
//! record keeps TTL, TYPE, DEL, SCAN and snapshots the same for every type.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use lockstep_store::StoreError;

use crate::context::Context;
use crate::notify;
use crate::record::{Record, ValueType};
use crate::Reply;

/// A command-level failure (a reply) or a storage failure (fatal).
pub enum Failure {
    Reply(Reply),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

impl From<Reply> for Failure {
    fn from(reply: Reply) -> Self {
        Failure::Reply(reply)
    }
}

pub type Outcome<T> = Result<T, Failure>;

pub trait Collection: Default {
    const TYPE: ValueType;
    fn decode(items: Vec<Bytes>) -> Result<Self, StoreError>;
    fn items(&self) -> Vec<&[u8]>;
    fn is_empty(&self) -> bool;
}

fn corrupt(detail: &str) -> StoreError {
    StoreError::Corrupt {
        what: "collection",
        detail: detail.to_string(),
    }
}

fn encode_items(items: &[&[u8]]) -> Vec<u8> {
    let size: usize = items.iter().map(|item| item.len() + 4).sum();
    let mut out = Vec::with_capacity(size + 4);
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for item in items {
        out.extend_from_slice(&(item.len() as u32).to_be_bytes());
        out.extend_from_slice(item);
    }
    out
}

fn decode_items(body: &Bytes) -> Result<Vec<Bytes>, StoreError> {
    let word = |at: usize| -> Result<usize, StoreError> {
        body.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| corrupt("truncated length"))
    };
    let count = word(0)?;
    let mut items = Vec::with_capacity(count.min(body.len() / 4));
    let mut at = 4;
    for _ in 0..count {
        let len = word(at)?;
        at += 4;
        let end = at.checked_add(len).filter(|end| *end <= body.len());
        let end = end.ok_or_else(|| corrupt("truncated item"))?;
        items.push(body.slice(at..end));
        at = end;
    }
    if at != body.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(items)
}

/// The stored items of a collection's record (for OBJECT ENCODING).
pub fn items_of(record: &Record) -> Result<Vec<Bytes>, StoreError> {
    decode_items(&record.body)
}

/// The live collection at `key`: absent is empty, another type is WRONGTYPE.
pub fn load<T: Collection>(ctx: &Context<'_>, key: &[u8]) -> Outcome<(Option<Record>, T)> {
    match ctx.record(key)? {
        None => Ok((None, T::default())),
        Some(record) if record.value_type == T::TYPE => {
            let value = T::decode(decode_items(&record.body)?)?;
            Ok((Some(record), value))
        }
        Some(_) => Err(Failure::Reply(Reply::wrong_type())),
    }
}

/// A command's keyspace event: its notification class and Redis's name.
pub type KeyEvent = (u32, &'static str);

/// Writes a collection back and announces `event`; an empty collection
/// deletes the key (a `del` event after the command's), as in Redis.
pub fn save<T: Collection>(
    ctx: &mut Context<'_>,
    key: &[u8],
    existing: Option<Record>,
    value: &T,
    (class, event): KeyEvent,
) -> Outcome<()> {
    if value.is_empty() {
        if existing.is_some() {
            ctx.remove(key)?;
            ctx.notify(class, event, key)?;
            ctx.notify(notify::GENERIC, "del", key)?;
        }
        return Ok(());
    }
    let body = Bytes::from(encode_items(&value.items()));
    ctx.store_body(key, existing, T::TYPE, body)?;
    ctx.notify(class, event, key)?;
    Ok(())
}

/// Writes the result of a STORE command at `key` in place of whatever was
/// there (no TTL, a new value); an empty result deletes the key.
pub fn save_result<T: Collection>(
    ctx: &mut Context<'_>,
    key: &[u8],
    value: &T,
    (class, event): KeyEvent,
) -> Outcome<()> {
    if value.is_empty() {
        if ctx.remove(key)? {
            ctx.notify(notify::GENERIC, "del", key)?;
        }
        return Ok(());
    }
    let body = Bytes::from(encode_items(&value.items()));
    ctx.store_body(key, None, T::TYPE, body)?;
    ctx.notify(class, event, key)?;
    Ok(())
}

#[derive(Default)]
pub struct Hash(pub BTreeMap<Bytes, Bytes>);

impl Collection for Hash {
    const TYPE: ValueType = ValueType::Hash;
    fn decode(items: Vec<Bytes>) -> Result<Self, StoreError> {
        if !items.len().is_multiple_of(2) {
            return Err(corrupt("odd hash"));
        }
        let mut map = BTreeMap::new();
        let mut items = items.into_iter();
        while let (Some(field), Some(value)) = (items.next(), items.next()) {
            map.insert(field, value);
        }
        Ok(Hash(map))
    }
    fn items(&self) -> Vec<&[u8]> {
        self.0
            .iter()
            .flat_map(|(field, value)| [field.as_ref(), value.as_ref()])
            .collect()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Default)]
pub struct List(pub VecDeque<Bytes>);

impl Collection for List {
    const TYPE: ValueType = ValueType::List;
    fn decode(items: Vec<Bytes>) -> Result<Self, StoreError> {
        Ok(List(items.into()))
    }
    fn items(&self) -> Vec<&[u8]> {
        self.0.iter().map(|item| item.as_ref()).collect()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Default)]
pub struct Set(pub BTreeSet<Bytes>);

impl Collection for Set {
    const TYPE: ValueType = ValueType::Set;
    fn decode(items: Vec<Bytes>) -> Result<Self, StoreError> {
        Ok(Set(items.into_iter().collect()))
    }
    fn items(&self) -> Vec<&[u8]> {
        self.0.iter().map(|item| item.as_ref()).collect()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Member -> score; ordered views sort by (score, member).
#[derive(Default)]
pub struct SortedSet {
    pub scores: BTreeMap<Bytes, f64>,
    encoded_scores: Vec<[u8; 8]>,
}

impl SortedSet {
    pub fn from_scores(scores: BTreeMap<Bytes, f64>) -> Self {
        let mut zset = SortedSet {
            scores,
            encoded_scores: Vec::new(),
        };
        zset.prepare();
        zset
    }

    pub fn ordered(&self) -> Vec<(&Bytes, f64)> {
        let mut entries: Vec<(&Bytes, f64)> = self.scores.iter().map(|(m, s)| (m, *s)).collect();
        entries.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        entries
    }

    /// Must run before `items` after any change to the scores.
    pub fn prepare(&mut self) {
        self.encoded_scores = self.scores.values().map(|s| s.to_be_bytes()).collect();
    }
}

impl Collection for SortedSet {
    const TYPE: ValueType = ValueType::SortedSet;
    fn decode(items: Vec<Bytes>) -> Result<Self, StoreError> {
        if !items.len().is_multiple_of(2) {
            return Err(corrupt("odd sorted set"));
        }
        let mut scores = BTreeMap::new();
        let mut items = items.into_iter();
        while let (Some(member), Some(score)) = (items.next(), items.next()) {
            let bits: [u8; 8] = score.as_ref().try_into().map_err(|_| corrupt("score"))?;
            scores.insert(member, f64::from_be_bytes(bits));
        }
        Ok(SortedSet {
            scores,
            encoded_scores: Vec::new(),
        })
    }
    fn items(&self) -> Vec<&[u8]> {
        assert_eq!(
            self.encoded_scores.len(),
            self.scores.len(),
            "prepare() first"
        );
        self.scores
            .keys()
            .zip(&self.encoded_scores)
            .flat_map(|(member, score)| [member.as_ref(), score.as_slice()])
            .collect()
    }
    fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}
