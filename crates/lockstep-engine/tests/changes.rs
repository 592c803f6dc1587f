//! Keyspace notifications and the change feed, at the engine: which
//! messages an entry publishes under `notify-keyspace-events`, and what
//! CHANGES.READ returns, pages, keeps and refuses.

mod common;

use bytes::Bytes;
use common::{bulk, err, field, int, Replica};
use lockstep_engine::{Event, Reply};

/// The (channel, message) pairs an entry published.
fn published(applied: &lockstep_engine::Applied) -> Vec<(String, String)> {
    applied
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Publish {
                channel, message, ..
            } => Some((
                String::from_utf8_lossy(channel).into_owned(),
                String::from_utf8_lossy(message).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// The keyevent messages only: `event key` each.
fn keyevents(applied: &lockstep_engine::Applied) -> Vec<String> {
    published(applied)
        .into_iter()
        .filter_map(|(channel, key)| {
            channel
                .strip_prefix("__keyevent@0__:")
                .map(|event| format!("{event} {key}"))
        })
        .collect()
}

/// `(index, key, event)` of each change a CHANGES.READ reply holds.
fn changes(reply: &Reply) -> Vec<(i64, String, String)> {
    let Reply::Array(items) = field(reply, "changes") else {
        panic!("changes is an array: {reply:?}")
    };
    items
        .iter()
        .map(|change| {
            let text = |name| match field(change, name) {
                Reply::Bulk(data) => String::from_utf8_lossy(data).into_owned(),
                other => panic!("{name}: {other:?}"),
            };
            (int(field(change, "index")), text("key"), text("event"))
        })
        .collect()
}

#[test]
fn nothing_is_published_until_the_setting_asks_and_then_exactly_its_classes() {
    let mut r = Replica::new();
    assert!(published(&r.apply_command(1, "SET a 1")).is_empty());
    assert_eq!(
        r.write(1, "CONFIG.GET notify-keyspace-events"),
        Reply::Map(vec![(bulk("notify-keyspace-events"), bulk(""))])
    );
    let refused = r.write(1, "CONFIG.SET notify-keyspace-events KEq");
    assert!(
        err(&refused).contains("Invalid event class character"),
        "{refused:?}"
    );
    assert_eq!(
        r.write(1, "CONFIG.SET notify-keyspace-events Kg$"),
        Reply::ok()
    );
    assert_eq!(
        r.write(1, "CONFIG.GET notify-keyspace-events"),
        Reply::Map(vec![(bulk("notify-keyspace-events"), bulk("g$K"))])
    );
    assert_eq!(
        published(&r.apply_command(1, "SET b 1 PX 100")),
        vec![
            ("__keyspace@0__:b".to_string(), "set".to_string()),
            ("__keyspace@0__:b".to_string(), "expire".to_string())
        ]
    );
    // Hashes are not asked for.
    assert!(published(&r.apply_command(1, "HSET h f v")).is_empty());
    assert_eq!(
        r.write(1, "CONFIG.SET notify-keyspace-events AE"),
        Reply::ok()
    );
    assert_eq!(keyevents(&r.apply_command(1, "HSET h g v")), ["hset h"]);
}

#[test]
fn the_leaders_sweep_announces_each_expired_key_once() {
    let mut r = Replica::new();
    r.write(1, "CONFIG.SET notify-keyspace-events Ex");
    r.write(1_000, "SET a 1 PX 100");
    r.write(1_000, "SET b 1 PX 100");
    r.write(1_000, "SET c 1 PX 5000");
    let swept = r.sweep(1_200);
    let mut expired = keyevents(&swept);
    expired.sort();
    assert_eq!(expired, ["expired a", "expired b"]);
    assert!(keyevents(&r.sweep(1_300)).is_empty(), "once, not again");
    // A write over a key whose TTL passed but that no sweep removed yet
    // expires it first, as Redis does on lookup.
    r.write(2_000, "CONFIG.SET notify-keyspace-events AEn");
    assert_eq!(
        keyevents(&r.apply_command(6_000, "SET c 2")),
        ["expired c", "new c", "set c"]
    );
}

#[test]
fn transactions_scripts_and_served_blocked_pops_announce_in_order() {
    let mut r = Replica::new();
    r.write(1, "CONFIG.SET notify-keyspace-events KEA");
    let exec = r.apply_command(1, "EXEC 0 3 3 SET a 1 2 INCR a 2 DEL a");
    assert_eq!(keyevents(&exec), ["set a", "incrby a", "del a"]);
    let script = r.apply_command(
        1,
        "EVAL redis.call('rpush',KEYS[1],'x');redis.call('lpop',KEYS[1]) 1 l",
    );
    assert_eq!(keyevents(&script), ["rpush l", "lpop l", "del l"]);
    // A client parked in BLMOVE is served by the next push: the push, then
    // the move's push and pop, as Redis serves it.
    assert!(
        r.apply_command(1, "PARK w1 BLMOVE src dst LEFT RIGHT 0")
            .parked
    );
    let served = r.apply_command(2, "LPUSH src item");
    assert_eq!(
        keyevents(&served),
        ["lpush src", "rpush dst", "lpop src", "del src"]
    );
}

#[test]
fn lockstep_types_announce_in_the_module_class() {
    let mut r = Replica::new();
    r.write(1, "CONFIG.SET notify-keyspace-events Edg");
    assert_eq!(
        keyevents(&r.apply_command(1, "LOCK.ACQUIRE res a 1000")),
        ["lock res"]
    );
    assert_eq!(
        keyevents(&r.apply_command(2, "LOCK.RELEASE res a")),
        ["del res"]
    );
}

#[test]
fn the_feed_pages_from_an_index_without_splitting_one() {
    let mut r = Replica::new();
    r.write(1, "SET app/a 1"); // index 1
    r.write(1, "MSET app/b 1 other 1 app/c 1"); // index 2: three changes
    r.write(1, "DEL app/a"); // index 3
    let all = r.read(1, "CHANGES.READ app/ FROM 0");
    assert_eq!(
        changes(&all),
        [
            (1, "app/a".into(), "set".into()),
            (2, "app/b".into(), "set".into()),
            (2, "app/c".into(), "set".into()),
            (3, "app/a".into(), "del".into()),
        ]
    );
    assert_eq!(
        int(field(&all, "next")),
        4,
        "resume after the applied index"
    );
    // COUNT 2 stops after index 2 whole, never inside it.
    let first = r.read(1, "CHANGES.READ app/* FROM 1 COUNT 2");
    assert_eq!(changes(&first).len(), 3);
    assert_eq!(int(field(&first, "next")), 3);
    let rest = r.read(1, "CHANGES.READ app/* FROM 3 COUNT 2");
    assert_eq!(changes(&rest), [(3, "app/a".into(), "del".into())]);
    // Nothing new: an empty page that still says how far it read.
    let empty = r.read(1, "CHANGES.READ app/ FROM 4");
    assert!(changes(&empty).is_empty());
    assert_eq!(int(field(&empty, "next")), 4);
    // Values before and after.
    r.write(1, "SET app/c 2"); // index 4
    let valued = r.read(1, "CHANGES.READ app/c FROM 4 WITHVALUES");
    let Reply::Array(items) = field(&valued, "changes") else {
        panic!()
    };
    assert_eq!(field(&items[0], "before"), &bulk("1"));
    assert_eq!(field(&items[0], "after"), &bulk("2"));
    for bad in [
        "CHANGES.READ app/ FROM -1",
        "CHANGES.READ app/ FROM x",
        "CHANGES.READ app/ SINCE 1",
        "CHANGES.READ app/ FROM 1 COUNT 0",
        "CHANGES.READ app/ FROM 1 BLOCK -5",
        "CHANGES.READ app/ FROM 1 SIDEWAYS",
    ] {
        assert!(r.read(1, bad).is_error(), "{bad}");
    }
}

#[test]
fn the_window_raises_the_floor_and_a_read_below_it_is_refused() {
    let mut r = Replica::new();
    assert_eq!(r.write(1, "CONFIG.SET changes-max-kept 10"), Reply::ok()); // 1
    for n in 0..20 {
        r.write(1, &format!("SET k{n} v")); // 2..=21
    }
    let info = r.read(1, "CHANGES.INFO");
    assert_eq!(int(field(&info, "changes")), 10);
    let floor = int(field(&info, "floor"));
    assert_eq!(floor, 12, "the ten newest entries' changes are kept");
    let refused = r.read(1, "CHANGES.READ * FROM 5");
    let text = err(&refused);
    assert!(text.starts_with("COMPACTED"), "{text}");
    assert!(text.contains("12"), "names the floor: {text}");
    let kept = r.read(1, &format!("CHANGES.READ * FROM {floor}"));
    assert_eq!(changes(&kept).len(), 10);
    assert_eq!(changes(&kept)[0].0, floor);
    // The floor is kept state: a replica opened on the store agrees.
    let reopened = lockstep_engine::Engine::open(&r.store).unwrap();
    let again = reopened
        .read(&r.store, r.index, 1, &[Bytes::from_static(b"CHANGES.INFO")])
        .unwrap();
    assert_eq!(field(&again, "floor"), &Reply::Integer(floor));
}

#[test]
fn the_feed_is_also_a_read_only_stream() {
    let mut r = Replica::new();
    r.write(1, "MSET a 1 b 2"); // index 1: ids 1-0, 1-1
    r.write(1, "DEL a"); // index 2: id 2-0
    let Reply::Array(all) = r.read(1, "XRANGE __changes__ - +") else {
        panic!()
    };
    let ids: Vec<Reply> = all
        .iter()
        .map(|entry| match entry {
            Reply::Array(parts) => parts[0].clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [bulk("1-0"), bulk("1-1"), bulk("2-0")]);
    let Reply::Array(one) = r.read(1, "XRANGE __changes__ 1-1 1 COUNT 5") else {
        panic!()
    };
    assert_eq!(one.len(), 1, "an index alone ends at its last change");
    let after = r.read(1, "XREAD COUNT 10 STREAMS __changes__ 1-0");
    let Reply::Map(streams) = &after else {
        panic!("{after:?}")
    };
    let Reply::Array(entries) = &streams[0].1 else {
        panic!()
    };
    assert_eq!(entries.len(), 2, "strictly after the id");
    assert_eq!(r.read(1, "XREAD STREAMS __changes__ 2-0"), Reply::NilArray);
    for bad in [
        "XRANGE mystream - +",
        "XRANGE __changes__ x +",
        "XREAD STREAMS __changes__",
        "XREAD COUNT 0 STREAMS __changes__ 0",
    ] {
        assert!(r.read(1, bad).is_error(), "{bad}");
    }
}
