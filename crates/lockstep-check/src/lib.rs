//! Verdicts on recorded histories of a running lockstep cluster.
//!
//! A history is what clients saw: each operation's call time, its return
//! time and output, or nothing at all when the outcome is unknown (a
//! timeout, a dropped connection, `-TRYAGAIN`). Such an operation may have
//! taken effect at any point after its call, or never.
//!
//! - [`linearizable`] searches for a linearization with Wing & Gong's
//!   algorithm and Lowe's memoization; [`linearizable_per_key`] checks each
//!   key on its own first (linearizability is compositional).
//! - [`register`] models one Redis key: GET, SET (with PX), SET NX, compare
//!   and set, compare and delete, DEL, and expiry that may never come early.
//! - [`fencing`] checks that fencing tokens are unique and grow in real
//!   time; [`queue`] that no acknowledged item is lost or delivered twice.
//! - [`leadership`] that an election's leaderships never overlap in real
//!   time and that a superseded token's writes are refused.
//! - [`brute_force`] is the definition itself, tried order by order, for
//!   small histories: the self-tests hold the fast search against it.
//!
//! This crate only judges histories: it must not talk to a cluster, read
//! clocks or know how a history was produced.

mod brute;
pub mod fencing;
mod history;
pub mod leadership;
pub mod queue;
pub mod register;
mod wgl;

pub use brute::brute_force;
pub use history::{Model, Operation, Outcome};
pub use wgl::{linearizable, linearizable_per_key, Verdict};
