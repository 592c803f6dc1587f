//! Records that hold parked requests or lease attachments: a lock, an
//! election, a service, a barrier. When a command of another family
//! replaces or deletes one (DEL, SET over it, FLUSHALL, a TTL running out,
//! the key of a lease that ended), whatever it held is ended first: each
//! parked request gets its reply (nil), each lease attachment is dropped.
//! The family's own updates go around this (`Context::remove_own`).

use lockstep_store::StoreError;

use crate::context::Context;
use crate::record::{Record, ValueType};
use crate::{barrier, election, locks, registry};

pub fn replaced(ctx: &mut Context<'_>, key: &[u8], old: &Record) -> Result<(), StoreError> {
    match old.value_type {
        ValueType::Lock => locks::discard(ctx, key, old),
        ValueType::Election => election::discard(ctx, key, old),
        ValueType::Service => registry::discard(ctx, key, old),
        ValueType::Barrier => barrier::discard(ctx, key, old),
        _ => Ok(()),
    }
}
