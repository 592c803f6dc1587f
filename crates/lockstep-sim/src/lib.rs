//! A deterministic simulation of a lockstep cluster.
//!
//! N nodes run the real replication core ([`lockstep_raft::Core`]) and
//! engine in one thread, on in-memory stores that lose unsynced writes when
//! a node crashes. The network drops, delays, duplicates and reorders
//! frames and can be cut (also one way); each node's clock has its own
//! offset and drift; voters (the leader too) are removed and added back
//! (raft-rs membership changes, one at a time). Simulated clients issue register, lock and queue
//! commands and record what they saw. One seed drives every choice, so a
//! seed replays the same run; the trace digest shows it.
//!
//! Invariants are checked at every step (one leader per term, the same
//! entry at the same index everywhere, applied index and cluster time
//! never going back, at most one holder per lock), log matching every few
//! hundred steps, and the histories at the end (linearizability, fencing
//! tokens, queue).
//!
//! This crate must not touch sockets, threads, real clocks or disks: that
//! would make runs unrepeatable.

mod clients;
mod invariants;
mod network;
mod time;
mod world;

pub use world::{run, Outcome, SimConfig};
