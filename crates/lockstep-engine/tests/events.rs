//! PUBLISH produces events for the node to deliver; a script stopped by a
//! limit publishes nothing.

use bytes::Bytes;
use lockstep_engine::{Engine, Event, LogEntry, Payload, Reply, RequestId};
use lockstep_store::MemStore;

fn apply(store: &MemStore, index: u64, argv: &[&str]) -> lockstep_engine::Applied {
    let entry = LogEntry {
        request: RequestId {
            origin: 1,
            seq: index,
        },
        settled_below: 0,
        ct: 1000,
        payload: Payload::Command(
            argv.iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect(),
        ),
    };
    Engine::new().apply(store, index, &entry.encode()).unwrap()
}

fn publish(channel: &str, message: &str, sharded: bool) -> Event {
    Event::Publish {
        channel: Bytes::copy_from_slice(channel.as_bytes()),
        message: Bytes::copy_from_slice(message.as_bytes()),
        sharded,
    }
}

#[test]
fn publish_from_commands_scripts_and_transactions() {
    let store = MemStore::in_memory();
    let outcome = apply(&store, 1, &["PUBLISH", "ch", "hello"]);
    assert_eq!(outcome.events, vec![publish("ch", "hello", false)]);
    assert!(outcome.reply_counts_deliveries);

    let outcome = apply(&store, 2, &["SPUBLISH", "shard", "x"]);
    assert_eq!(outcome.events, vec![publish("shard", "x", true)]);

    let script = "redis.call('publish', 'a', '1') redis.call('publish', 'b', '2') return 0";
    let outcome = apply(&store, 3, &["EVAL", script, "0"]);
    assert_eq!(
        outcome.events,
        vec![publish("a", "1", false), publish("b", "2", false)]
    );
    assert!(
        !outcome.reply_counts_deliveries,
        "a script's reply is its own"
    );
    assert_eq!(outcome.reply, Some(Reply::Integer(0)));

    let runaway = "redis.call('publish', 'a', 'lost') while true do end";
    let outcome = apply(&store, 4, &["EVAL", runaway, "0"]);
    assert!(
        outcome.events.is_empty(),
        "an aborted script publishes nothing"
    );
}
