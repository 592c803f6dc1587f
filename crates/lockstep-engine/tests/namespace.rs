//! The znode namespace at the engine: ZooKeeper's rules for paths,
//! parents, versions, sequential names, ephemerals, containers, TTL nodes
//! and multi, the stat fields, and the events watchers get.

mod common;

use bytes::Bytes;
use common::{bulk, err, field, int, Replica};
use lockstep_engine::{Event, Reply};

fn stat(reply: &Reply, name: &str) -> i64 {
    int(field(reply, name))
}

/// `event path` of every znode event an entry produced.
fn znode_events(applied: &lockstep_engine::Applied) -> Vec<String> {
    applied
        .events
        .iter()
        .filter_map(|event| match event {
            Event::Znode { path, event } => {
                Some(format!("{event} {}", String::from_utf8_lossy(path)))
            }
            _ => None,
        })
        .collect()
}

fn names(reply: &Reply) -> Vec<String> {
    let Reply::Array(items) = reply else {
        panic!("expected names, got {reply:?}")
    };
    items
        .iter()
        .map(|item| match item {
            Reply::Bulk(data) => String::from_utf8_lossy(data).into_owned(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn create_get_set_delete_follow_zookeepers_rules() {
    let mut r = Replica::new();
    assert_eq!(r.write(10, "ZNODE.CREATE /app config"), bulk("/app")); // index 1
    let got = r.read(10, "ZNODE.GET /app");
    assert_eq!(field(&got, "data"), &bulk("config"));
    let s = field(&got, "stat").clone();
    assert_eq!(stat(&s, "czxid"), 1);
    assert_eq!(stat(&s, "mzxid"), 1);
    assert_eq!(stat(&s, "ctime"), 10);
    assert_eq!(stat(&s, "version"), 0);
    assert_eq!(stat(&s, "dataLength"), 6);
    assert_eq!(stat(&s, "ephemeralOwner"), 0);
    // Rules, each with ZooKeeper's error.
    assert!(err(&r.write(11, "ZNODE.CREATE /app again")).starts_with("ZNODEEXISTS"));
    assert!(err(&r.write(11, "ZNODE.CREATE /missing/child x")).starts_with("ZNONODE"));
    assert!(err(&r.write(11, "ZNODE.SET /app x VERSION 5")).starts_with("ZBADVERSION"));
    for bad in ["app", "/app/", "//x", "/a/../b"] {
        assert!(
            err(&r.write(11, &format!("ZNODE.CREATE {bad} x"))).starts_with("ZBADARGUMENTS"),
            "{bad}"
        );
    }
    // A set with the right version bumps it; -1 is any.
    let set = r.write(12, "ZNODE.SET /app v2 VERSION 0"); // index 2
    assert_eq!(stat(&set, "version"), 1);
    assert_eq!(stat(&set, "mtime"), 12);
    assert_eq!(stat(&set, "czxid"), 1);
    assert_eq!(
        stat(&r.write(12, "ZNODE.SET /app v3 VERSION -1"), "version"),
        2
    );
    r.write(13, "ZNODE.CREATE /app/child c");
    assert!(err(&r.write(13, "ZNODE.DELETE /app")).starts_with("ZNOTEMPTY"));
    let parent = r.read(13, "ZNODE.STAT /app");
    assert_eq!(stat(&parent, "numChildren"), 1);
    assert_eq!(stat(&parent, "cversion"), 1);
    assert!(err(&r.write(13, "ZNODE.DELETE /app/child VERSION 3")).starts_with("ZBADVERSION"));
    assert_eq!(
        r.write(13, "ZNODE.DELETE /app/child VERSION 0"),
        Reply::ok()
    );
    let parent = r.read(13, "ZNODE.STAT /app");
    assert_eq!(stat(&parent, "numChildren"), 0);
    assert_eq!(stat(&parent, "cversion"), 2, "creates plus deletes");
    assert_eq!(r.read(13, "ZNODE.EXISTS /app/child"), Reply::Nil);
    // The root and /zookeeper always exist and cannot go.
    assert_eq!(names(&r.read(13, "ZNODE.CHILDREN /")), ["app", "zookeeper"]);
    assert!(err(&r.write(13, "ZNODE.DELETE /")).starts_with("ZBADARGUMENTS"));
    assert!(err(&r.write(13, "ZNODE.DELETE /zookeeper")).starts_with("ZBADARGUMENTS"));
    assert!(matches!(
        r.read(13, "ZNODE.EXISTS /zookeeper"),
        Reply::Map(_)
    ));
}

#[test]
fn sequential_names_count_creates_and_never_rewind() {
    let mut r = Replica::new();
    r.write(1, "ZNODE.CREATE /q x");
    r.write(1, "ZNODE.CREATE /q/a0 x");
    r.write(1, "ZNODE.CREATE /q/a1 x");
    assert_eq!(
        r.write(1, "ZNODE.CREATE /q/ x SEQUENTIAL"),
        bulk("/q/0000000002")
    );
    r.write(1, "ZNODE.DELETE /q/a1");
    assert_eq!(
        r.write(1, "ZNODE.CREATE /q/z x SEQUENTIAL"),
        bulk("/q/z0000000003")
    );
    // Two in one multi get consecutive suffixes.
    let multi = r.write(
        1,
        "ZNODE.MULTI CREATE /q/lock- x SEQUENTIAL CREATE /q/lock- y SEQUENTIAL",
    );
    assert_eq!(
        multi,
        Reply::Array(vec![bulk("/q/lock-0000000004"), bulk("/q/lock-0000000005")])
    );
}

#[test]
fn multi_is_all_or_nothing_and_reports_each_operation() {
    let mut r = Replica::new();
    r.write(1, "ZNODE.CREATE /m x");
    let failed = r.write(
        1,
        "ZNODE.MULTI CREATE /m/a x SET /m y VERSION 0 CHECK /m VERSION 7 DELETE /m",
    );
    let Reply::Array(results) = &failed else {
        panic!("{failed:?}")
    };
    assert_eq!(results[0], Reply::ok());
    assert_eq!(results[1], Reply::ok());
    assert!(err(&results[2]).starts_with("ZBADVERSION"));
    assert!(err(&results[3]).starts_with("ZRUNTIMEINCONSISTENCY"));
    assert_eq!(
        r.read(1, "ZNODE.EXISTS /m/a"),
        Reply::Nil,
        "nothing applied"
    );
    assert_eq!(field(&r.read(1, "ZNODE.GET /m"), "data"), &bulk("x"));
    let ok = r.write(
        1,
        "ZNODE.MULTI CHECK /m VERSION 0 CREATE /m/a x SET /m y DELETE /m/a",
    );
    let Reply::Array(results) = &ok else {
        panic!("{ok:?}")
    };
    assert_eq!(results[0], Reply::ok());
    assert_eq!(results[1], bulk("/m/a"));
    assert_eq!(stat(&results[2], "version"), 1);
    assert_eq!(results[3], Reply::ok());
}

#[test]
fn ephemerals_go_with_their_lease_and_cannot_have_children() {
    let mut r = Replica::new();
    let lease = int(&r.write(1_000, "LEASE.GRANT 1000"));
    r.write(1_000, "ZNODE.CREATE /workers x");
    assert_eq!(
        r.write(
            1_000,
            &format!("ZNODE.CREATE /workers/w1 me EPHEMERAL {lease}")
        ),
        bulk("/workers/w1")
    );
    let s = r.read(1_000, "ZNODE.STAT /workers/w1");
    assert_eq!(stat(&s, "ephemeralOwner"), lease);
    assert!(err(&r.write(1_000, "ZNODE.CREATE /workers/w1/x y"))
        .starts_with("ZNOCHILDRENFOREPHEMERALS"));
    assert!(err(&r.write(1_000, "ZNODE.CREATE /e x EPHEMERAL 999")).starts_with("ZSESSIONEXPIRED"));
    let expired = r.sweep(2_100);
    assert_eq!(
        znode_events(&expired),
        ["NodeDeleted /workers/w1", "NodeChildrenChanged /workers"]
    );
    assert_eq!(r.read(2_100, "ZNODE.EXISTS /workers/w1"), Reply::Nil);
}

#[test]
fn containers_go_with_their_last_child_and_ttl_nodes_by_cluster_time() {
    let mut r = Replica::new();
    r.write(1, "ZNODE.CREATE /locks x CONTAINER");
    r.write(1, "ZNODE.CREATE /locks/one x");
    let gone = r.apply_command(2, "ZNODE.DELETE /locks/one");
    assert_eq!(
        znode_events(&gone),
        [
            "NodeDeleted /locks/one",
            "NodeChildrenChanged /locks",
            "NodeDeleted /locks",
            "NodeChildrenChanged /"
        ]
    );
    assert_eq!(r.read(2, "ZNODE.EXISTS /locks"), Reply::Nil);
    // A TTL node goes TTL after its last change while it has no children.
    r.write(1_000, "ZNODE.CREATE /t x TTL 500");
    assert_eq!(r.engine.next_deadline(), Some(1_500));
    r.write(1_200, "ZNODE.SET /t y");
    assert_eq!(
        r.engine.next_deadline(),
        Some(1_700),
        "a change restarts it"
    );
    r.sweep(1_600);
    assert!(matches!(r.read(1_600, "ZNODE.EXISTS /t"), Reply::Map(_)));
    r.sweep(1_700);
    assert_eq!(r.read(1_700, "ZNODE.EXISTS /t"), Reply::Nil);
    // The deadline set is rebuilt from the records.
    r.write(2_000, "ZNODE.CREATE /t2 x TTL 500");
    let reopened = lockstep_engine::Engine::open(&r.store).unwrap();
    assert_eq!(reopened.next_deadline(), Some(2_500));
}

#[test]
fn a_container_goes_after_the_whole_multi_that_empties_it() {
    let mut r = Replica::new();
    r.write(1, "ZNODE.CREATE /outer x CONTAINER");
    r.write(1, "ZNODE.CREATE /outer/box x CONTAINER");
    r.write(1, "ZNODE.CREATE /outer/box/a x");
    r.write(1, "ZNODE.CREATE /outer/box/b x");
    // ZooKeeper's deleteall: the leaves, then the container itself, in one
    // multi. The container must still be there for its own delete.
    let all = r.write(
        2,
        "ZNODE.MULTI DELETE /outer/box/b DELETE /outer/box/a DELETE /outer/box",
    );
    assert_eq!(
        all,
        Reply::Array(vec![Reply::ok(), Reply::ok(), Reply::ok()]),
        "{all:?}"
    );
    // Its container parent went with it (the last child gone).
    assert_eq!(r.read(2, "ZNODE.EXISTS /outer"), Reply::Nil);
    // Emptied and refilled in one multi: the container stays.
    r.write(3, "ZNODE.CREATE /c x CONTAINER");
    r.write(3, "ZNODE.CREATE /c/old x");
    let swap = r.write(3, "ZNODE.MULTI DELETE /c/old CREATE /c/new x");
    assert_eq!(swap, Reply::Array(vec![Reply::ok(), bulk("/c/new")]));
    assert_eq!(names(&r.read(3, "ZNODE.CHILDREN /c")), ["new"]);
    // A failed multi removes nothing.
    let failed = r.write(3, "ZNODE.MULTI DELETE /c/new DELETE /c/none");
    assert!(matches!(failed, Reply::Array(_)));
    assert_eq!(names(&r.read(3, "ZNODE.CHILDREN /c")), ["new"]);
    // One delete of the last child removes it at once, as before.
    r.write(4, "ZNODE.DELETE /c/new");
    assert_eq!(r.read(4, "ZNODE.EXISTS /c"), Reply::Nil);
}

#[test]
fn system_nodes_exist_and_descendants_count_the_subtree() {
    let mut r = Replica::new();
    assert_eq!(names(&r.read(1, "ZNODE.CHILDREN /")), ["zookeeper"]);
    assert_eq!(
        names(&r.read(1, "ZNODE.CHILDREN /zookeeper")),
        ["config", "quota"]
    );
    assert_eq!(stat(&r.read(1, "ZNODE.STAT /zookeeper"), "numChildren"), 2);
    assert_eq!(stat(&r.read(1, "ZNODE.STAT /"), "numChildren"), 1);
    for path in ["/zookeeper/config", "/zookeeper/quota"] {
        assert!(matches!(
            r.read(1, &format!("ZNODE.STAT {path}")),
            Reply::Map(_)
        ));
        assert!(err(&r.write(1, &format!("ZNODE.DELETE {path}"))).starts_with("ZBADARGUMENTS"));
        assert!(err(&r.write(1, &format!("ZNODE.CREATE {path}/x y"))).starts_with("ZBADARGUMENTS"));
    }
    // /zookeeper/config is read-only by its ACL, as ZooKeeper's.
    let acl = r.read(1, "ZNODE.GETACL /zookeeper/config");
    assert_eq!(
        field(&acl, "acl"),
        &Reply::Array(vec![Reply::Array(vec![
            bulk("r"),
            bulk("world"),
            bulk("anyone")
        ])])
    );
    assert!(
        err(&r.write(1, "ZNODE.SET /zookeeper/config x AS world anyone")).starts_with("ZNOAUTH")
    );
    r.write(2, "ZNODE.CREATE /a x");
    r.write(2, "ZNODE.CREATE /a/b x");
    r.write(2, "ZNODE.CREATE /a/b/c x");
    r.write(2, "ZNODE.CREATE /ab x");
    r.write(2, "ZNODE.CREATE /a/d x");
    let count = |r: &mut Replica, path: &str| {
        stat(
            &r.read(2, &format!("ZNODE.STAT {path} DESCENDANTS")),
            "descendants",
        )
    };
    assert_eq!(count(&mut r, "/a"), 3, "/ab is not below /a");
    assert_eq!(count(&mut r, "/a/b/c"), 0);
    assert_eq!(count(&mut r, "/zookeeper"), 2);
    // Everything but the root: five nodes and the three system nodes.
    assert_eq!(count(&mut r, "/"), 8);
    assert_eq!(stat(&r.read(2, "ZNODE.STAT /"), "numChildren"), 3);
    assert!(err(&r.read(2, "ZNODE.STAT /nothing DESCENDANTS")).starts_with("ZNONODE"));
    // Counting needs READ, as ZooKeeper's getAllChildrenNumber.
    r.write(3, "ZNODE.SETACL /a ACL c world anyone");
    assert!(err(&r.read(3, "ZNODE.STAT /a DESCENDANTS AS world anyone")).starts_with("ZNOAUTH"));
}

#[test]
fn many_children_page_in_order_and_a_create_writes_one_record_per_child() {
    let mut r = Replica::new();
    r.write(1, "ZNODE.CREATE /big x");
    for n in 0..3_000 {
        let applied = r.apply_command(1, &format!("ZNODE.CREATE /big/c{n:05} x"));
        // The node, its child entry, the parent's stat, the change record,
        // the feed's counters, the request record and the cluster time:
        // a constant number of small records, never a list of children.
        let ops = applied.batch.ops();
        assert!(ops.len() <= 12, "{}", ops.len());
        let largest = ops
            .iter()
            .map(|op| match op {
                // Namespace records (the request log's bitmap chunk is
                // its own fixed 512 bytes).
                lockstep_store::StateOp::Put(key, value) if b"zZH".contains(&key[0]) => value.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        assert!(largest < 256, "a record of {largest} bytes");
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let command = match &after {
            Some(a) => format!("ZNODE.CHILDREN /big COUNT 1000 AFTER {a}"),
            None => "ZNODE.CHILDREN /big COUNT 1000".to_string(),
        };
        let page = r.read(1, &command);
        seen.extend(names(field(&page, "children")));
        match field(&page, "next") {
            Reply::Bulk(next) => after = Some(String::from_utf8_lossy(next).into_owned()),
            _ => break,
        }
    }
    let expected: Vec<String> = (0..3_000).map(|n| format!("c{n:05}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(stat(&r.read(1, "ZNODE.STAT /big"), "numChildren"), 3_000);
    // With their data, in the order of the names.
    r.write(1, "ZNODE.SET /big/c00001 one");
    let page = r.read(1, "ZNODE.CHILDREN /big DATA COUNT 2");
    assert_eq!(names(field(&page, "children")), ["c00000", "c00001"]);
    assert_eq!(
        field(&page, "data"),
        &Reply::Array(vec![bulk("x"), bulk("one")])
    );
}

#[test]
fn a_hundred_thousand_children_list_in_one_reply_and_beyond_that_in_pages() {
    let mut r = Replica::new();
    r.write(1, "ZNODE.CREATE /wide x");
    for n in 0..100_001 {
        r.write(1, &format!("ZNODE.CREATE /wide/{n:06} x"));
    }
    // One more than a reply may list: the plain form says to page.
    let refused = r.read(1, "ZNODE.CHILDREN /wide");
    assert!(err(&refused).contains("COUNT"), "{refused:?}");
    r.write(1, "ZNODE.DELETE /wide/100000");
    assert_eq!(names(&r.read(1, "ZNODE.CHILDREN /wide")).len(), 100_000);
    let last = r.read(1, "ZNODE.CHILDREN /wide COUNT 10 AFTER 099995");
    assert_eq!(names(field(&last, "children")).len(), 4);
    assert_eq!(field(&last, "next"), &Reply::Nil);
}

#[test]
fn every_change_is_a_watch_event_and_in_the_feed() {
    let mut r = Replica::new();
    let created = r.apply_command(1, "ZNODE.CREATE /w x");
    assert_eq!(
        znode_events(&created),
        ["NodeCreated /w", "NodeChildrenChanged /"]
    );
    let set = r.apply_command(1, "ZNODE.SET /w y");
    assert_eq!(znode_events(&set), ["NodeDataChanged /w"]);
    let feed = r.read(1, "CHANGES.READ /w FROM 0 WITHVALUES");
    let Reply::Array(changes) = field(&feed, "changes") else {
        panic!()
    };
    assert_eq!(changes.len(), 2);
    assert_eq!(field(&changes[0], "event"), &bulk("znode.create"));
    assert_eq!(field(&changes[1], "event"), &bulk("znode.set"));
    assert_eq!(field(&changes[1], "before"), &bulk("x"));
    assert_eq!(field(&changes[1], "after"), &bulk("y"));
    assert_eq!(field(&changes[1], "type"), &bulk("znode"));
    // A failed multi leaves no event behind.
    let failed = r.apply_command(1, "ZNODE.MULTI SET /w z DELETE /nothing");
    assert!(znode_events(&failed).is_empty());
    // Bad input never reaches the log.
    for bad in [
        "ZNODE.CREATE /x",
        "ZNODE.CREATE /x d EPHEMERAL",
        "ZNODE.CREATE /x d EPHEMERAL 1 TTL 5",
        "ZNODE.CREATE /x d TTL 0",
        "ZNODE.SET /x d VERSION -2",
        "ZNODE.MULTI FROB /x",
        "ZNODE.CHILDREN /x COUNT 0",
        "ZNODE.GET /x WATCH extra",
    ] {
        let argv: Vec<Bytes> = bad
            .split_whitespace()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        assert!(lockstep_engine::parse(&argv).is_err(), "{bad}");
    }
}
