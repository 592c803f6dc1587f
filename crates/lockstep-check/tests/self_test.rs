//! The checker against the definition, and against anomalies it must see.

use lockstep_check::register::{Command, Register, Reply};
use lockstep_check::{brute_force, linearizable, linearizable_per_key, Operation, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Op = Operation<Command, Reply>;

const MS: u64 = 1_000_000;
const STEPS: u64 = 1_000_000;

fn random_command(rng: &mut StdRng, next_value: &mut u64) -> Command {
    *next_value += 1;
    let value = *next_value;
    let some_value = rng.gen_range(1..=value);
    let ttl_ms = if rng.gen_bool(0.3) {
        Some(rng.gen_range(1..20))
    } else {
        None
    };
    match rng.gen_range(0..6) {
        0 | 1 => Command::Read,
        2 => Command::Write { value, ttl_ms },
        3 => Command::SetIfAbsent { value, ttl_ms },
        4 => Command::CompareAndSet {
            expected: some_value,
            value,
        },
        _ => {
            if rng.gen_bool(0.8) {
                Command::CompareAndDelete {
                    expected: some_value,
                }
            } else {
                Command::Delete
            }
        }
    }
}

/// A history some real execution could give: each operation takes effect
/// at a random instant inside its window, in instant order, and replies as
/// a sequential Redis key would (written out here, apart from the model).
/// A value with a TTL expires at the earliest allowed instant or never.
fn valid_history(rng: &mut StdRng, size: usize) -> Vec<Op> {
    let mut next_value = 0;
    let mut planned: Vec<(u64, u64, u64, Command)> = (0..size)
        .map(|_| {
            let call = rng.gen_range(0..40) * MS;
            let ret = call + rng.gen_range(0..15) * MS;
            let at = rng.gen_range(call..=ret);
            (at, call, ret, random_command(rng, &mut next_value))
        })
        .collect();
    planned.sort_by_key(|entry| entry.0);
    let expires = rng.gen_bool(0.5);
    let mut value: Option<u64> = None;
    let mut expires_at: Option<u64> = None;
    let mut ops = Vec::new();
    for (client, (at, call, ret, command)) in planned.into_iter().enumerate() {
        if expires && expires_at.is_some_and(|when| at >= when) {
            value = None;
            expires_at = None;
        }
        // The reply, and the new (value, ttl) if the command wrote.
        let (reply, change) = match &command {
            Command::Read => (Reply::Value(value), None),
            Command::Write { value: new, ttl_ms } => {
                (Reply::Done(true), Some((Some(*new), *ttl_ms)))
            }
            Command::SetIfAbsent { value: new, ttl_ms } => match value {
                None => (Reply::Done(true), Some((Some(*new), *ttl_ms))),
                Some(_) => (Reply::Done(false), None),
            },
            Command::CompareAndSet {
                expected,
                value: new,
            } => {
                if value == Some(*expected) {
                    (Reply::Done(true), Some((Some(*new), None)))
                } else {
                    (Reply::Done(false), None)
                }
            }
            Command::CompareAndDelete { expected } => {
                if value == Some(*expected) {
                    (Reply::Done(true), Some((None, None)))
                } else {
                    (Reply::Done(false), None)
                }
            }
            Command::Delete => (Reply::Done(value.is_some()), Some((None, None))),
        };
        if let Some((new, ttl_ms)) = change {
            value = new;
            expires_at = ttl_ms.map(|ttl| call + ttl * MS);
        }
        if rng.gen_bool(0.1) && !matches!(command, Command::Read) {
            ops.push(Operation::unknown(client as u64, call, command));
        } else {
            ops.push(Operation::returned(
                client as u64,
                call,
                ret,
                command,
                reply,
            ));
        }
    }
    ops
}

/// Changes one reply at random, which may or may not break the history.
fn mutate(rng: &mut StdRng, ops: &mut [Op]) {
    let at = rng.gen_range(0..ops.len());
    if let lockstep_check::Outcome::Returned { output, .. } = &mut ops[at].outcome {
        *output = match output {
            Reply::Value(Some(_)) if rng.gen_bool(0.5) => Reply::Value(None),
            Reply::Value(_) => Reply::Value(Some(rng.gen_range(1..8))),
            Reply::Done(done) => Reply::Done(!*done),
        };
    }
}

#[test]
fn the_search_agrees_with_brute_force_on_thousands_of_small_histories() {
    let model = Register { clock_slack_ns: 0 };
    let mut rng = StdRng::seed_from_u64(20_261_124);
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..4000 {
        let size = rng.gen_range(1..=7);
        let mut ops = valid_history(&mut rng, size);
        let generated_valid = linearizable(&model, &ops, STEPS);
        assert!(
            generated_valid.is_linearizable(),
            "round {round}: a generated valid history was rejected: {ops:#?}"
        );
        assert!(
            brute_force(&model, &ops),
            "round {round}: brute force rejected {ops:#?}"
        );
        if rng.gen_bool(0.6) {
            mutate(&mut rng, &mut ops);
        }
        let expected = brute_force(&model, &ops);
        let verdict = linearizable(&model, &ops, STEPS);
        assert_eq!(
            verdict.is_linearizable(),
            expected,
            "round {round}: search says {verdict:?}, brute force says {expected}: {ops:#?}"
        );
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    // Both kinds must be well represented, or the test proves little.
    assert!(
        valid > 1000 && invalid > 1000,
        "valid {valid}, invalid {invalid}"
    );
}

fn read(client: u64, call: u64, ret: u64, value: Option<u64>) -> Op {
    Operation::returned(client, call, ret, Command::Read, Reply::Value(value))
}

fn write(client: u64, call: u64, ret: u64, value: u64) -> Op {
    Operation::returned(
        client,
        call,
        ret,
        Command::Write {
            value,
            ttl_ms: None,
        },
        Reply::Done(true),
    )
}

#[test]
fn a_stale_read_is_caught() {
    let model = Register::default();
    let history = [
        write(1, 0, 10, 1),
        write(1, 20, 30, 2),
        // Called after the second write returned, yet sees the first.
        read(2, 40, 50, Some(1)),
    ];
    assert!(!linearizable(&model, &history, STEPS).is_linearizable());
    // Concurrent with the second write, the same read is fine.
    let history = [
        write(1, 0, 10, 1),
        write(1, 20, 45, 2),
        read(2, 40, 50, Some(1)),
    ];
    assert!(linearizable(&model, &history, STEPS).is_linearizable());
}

#[test]
fn a_lost_write_is_caught() {
    let model = Register::default();
    let history = [write(1, 0, 10, 7), read(2, 20, 30, None)];
    assert!(!linearizable(&model, &history, STEPS).is_linearizable());
    // With an unknown outcome the write may never have happened.
    let history = [
        Operation::unknown(
            1,
            0,
            Command::Write {
                value: 7,
                ttl_ms: None,
            },
        ),
        read(2, 20, 30, None),
        read(2, 40, 50, Some(7)),
    ];
    assert!(linearizable(&model, &history, STEPS).is_linearizable());
}

#[test]
fn a_double_grant_of_a_lock_is_caught() {
    let model = Register::default();
    let acquire = |client, call, ret, value, granted| {
        Operation::returned(
            client,
            call,
            ret,
            Command::SetIfAbsent {
                value,
                ttl_ms: Some(30_000),
            },
            Reply::Done(granted),
        )
    };
    let history = [
        acquire(1, 0, MS, 1, true),
        acquire(2, 2 * MS, 3 * MS, 2, true),
    ];
    assert!(!linearizable(&model, &history, STEPS).is_linearizable());
    // After the TTL (never before) the second grant is legal.
    let history = [
        acquire(1, 0, MS, 1, true),
        acquire(2, 31_000 * MS, 31_001 * MS, 2, true),
    ];
    assert!(linearizable(&model, &history, STEPS).is_linearizable());
}

#[test]
fn keys_are_checked_apart_and_the_failing_one_is_named() {
    let model = Register::default();
    // Key 1 is fine; key 2 reads a value nobody wrote.
    let history = [
        (1, write(1, 0, 10, 1)),
        (2, write(1, 0, 10, 5)),
        (1, read(2, 20, 30, Some(1))),
        (2, read(2, 20, 30, Some(4))),
    ];
    let mut parts: std::collections::BTreeMap<u64, Vec<Op>> = Default::default();
    for (key, op) in history {
        parts.entry(key).or_default().push(op);
    }
    let verdict = linearizable_per_key(&model, parts, STEPS);
    assert_eq!(
        verdict,
        Verdict::Violation {
            key: "2".into(),
            operations: 2
        }
    );
}

#[test]
fn a_long_concurrent_history_is_checked_quickly() {
    // 8 clients, 2000 operations on one key, all valid.
    let model = Register::default();
    let mut rng = StdRng::seed_from_u64(7);
    let mut ops = Vec::new();
    let mut value = None;
    let mut now = 0u64;
    for index in 0..2000u64 {
        now += rng.gen_range(1..5) * MS;
        let client = index % 8;
        // Overlapping windows around the instant the operation applies.
        let call = now - rng.gen_range(0..3) * MS;
        let ret = now + rng.gen_range(0..3) * MS;
        if rng.gen_bool(0.5) {
            ops.push(read(client, call, ret, value));
        } else {
            ops.push(write(client, call, ret, index + 1));
            value = Some(index + 1);
        }
    }
    let started = std::time::Instant::now();
    assert!(linearizable(&model, &ops, 10_000_000).is_linearizable());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
