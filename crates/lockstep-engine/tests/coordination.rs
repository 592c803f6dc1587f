//! Leases, elections, the registry and barriers, driven by (command,
//! cluster time) entries and the leader's sweeps, as every replica applies
//! them.

mod common;

use common::{bulk, err, field, int, Replica};
use lockstep_engine::{Engine, Reply, RequestId};

/// Applies a parking command as the server sends it; returns its request.
fn park(r: &mut Replica, ct: u64, wait_id: &str, command: &str) -> RequestId {
    let outcome = r.apply_command(ct, &format!("PARK {wait_id} {command}"));
    assert!(outcome.parked, "{command} should wait: {:?}", outcome.reply);
    outcome.request.expect("a request")
}

#[test]
fn leases_are_granted_renewed_revoked_and_expire_with_their_keys() {
    let mut r = Replica::new();
    let id = int(&r.write(1_000, "LEASE.GRANT 1000 NAME worker-1"));
    assert_eq!(
        id as u64, r.index,
        "a lease id is its granting entry's index"
    );
    let ttl = r.read(1_000, &format!("LEASE.TTL {id}"));
    assert_eq!(field(&ttl, "ttl"), &Reply::Integer(1000));
    assert_eq!(field(&ttl, "name"), &bulk("worker-1"));
    assert_eq!(r.write(1_000, &format!("SET k v LEASE {id}")), Reply::ok());
    assert_eq!(
        err(&r.write(1_000, "SET k2 v LEASE 999")),
        "ERR no such lease"
    );
    let attached = r.read(1_000, &format!("LEASE.TTL {id} ATTACHED"));
    assert_eq!(
        field(&attached, "items"),
        &Reply::Array(vec![Reply::Array(vec![bulk("key"), bulk("k")])])
    );
    // Overwriting without LEASE detaches; writing with it again attaches.
    r.write(1_100, "SET k other");
    assert_eq!(
        field(&r.read(1_100, &format!("LEASE.TTL {id}")), "attached"),
        &Reply::Integer(0)
    );
    r.write(1_100, &format!("SET k v LEASE {id}"));
    // A keepalive restarts the TTL from its entry's time.
    assert_eq!(
        r.write(1_500, &format!("LEASE.KEEPALIVE {id} 424242")),
        Reply::Array(vec![Reply::Integer(1000), Reply::Integer(-2)])
    );
    assert_eq!(r.engine.next_deadline(), Some(2_500));
    r.sweep(2_499);
    assert_eq!(r.read(2_499, "GET k"), bulk("v"));
    r.sweep(2_500);
    assert_eq!(
        r.read(2_500, "EXISTS k"),
        Reply::Integer(0),
        "the key went with its lease"
    );
    assert_eq!(r.read(2_500, &format!("LEASE.TTL {id}")), Reply::Nil);
    assert_eq!(
        r.write(2_600, &format!("LEASE.KEEPALIVE {id}")),
        Reply::Array(vec![Reply::Integer(-2)])
    );
    // Revocation ends a lease and its keys at once.
    let other = int(&r.write(3_000, "LEASE.GRANT 60000"));
    r.write(3_000, &format!("SET a 1 LEASE {other}"));
    r.write(3_000, &format!("SET b 1 LEASE {other}"));
    assert_eq!(
        r.write(3_001, &format!("LEASE.REVOKE {other}")),
        Reply::Integer(1)
    );
    assert_eq!(r.read(3_001, "EXISTS a b"), Reply::Integer(0));
    assert_eq!(
        r.write(3_002, &format!("LEASE.REVOKE {other}")),
        Reply::Integer(0)
    );
    assert!(
        r.engine.deadlines().is_empty(),
        "nothing pending: {:?}",
        r.engine.deadlines()
    );
    // Bad input.
    assert!(err(&r.write(3_003, "LEASE.GRANT 10")).contains("between 100"));
    assert!(err(&r.write(3_003, "LEASE.GRANT x")).contains("not an integer"));
    assert!(err(&r.write(3_003, "LEASE.KEEPALIVE 0")).contains("invalid lease id"));
    assert!(err(&r.write(3_003, "LEASE.GRANT 1000 LOCKDELAY 99999999")).contains("lock-delay"));
}

#[test]
fn lease_list_pages_through_live_leases() {
    let mut r = Replica::new();
    let ids: Vec<i64> = (0..5)
        .map(|_| int(&r.write(1, "LEASE.GRANT 10000")))
        .collect();
    r.write(2, &format!("LEASE.REVOKE {}", ids[1]));
    let Reply::Array(page) = r.read(3, "LEASE.LIST COUNT 2") else {
        panic!()
    };
    let Reply::Bulk(cursor) = &page[0] else {
        panic!()
    };
    let Reply::Array(first) = &page[1] else {
        panic!()
    };
    assert_eq!(first.len(), 2);
    let cursor = String::from_utf8(cursor.to_vec()).unwrap();
    let Reply::Array(rest) = r.read(3, &format!("LEASE.LIST CURSOR {cursor} COUNT 10")) else {
        panic!()
    };
    assert_eq!(rest[0], bulk("0"), "the last page ends the walk");
    let Reply::Array(second) = &rest[1] else {
        panic!()
    };
    assert_eq!(first.len() + second.len(), 4, "every live lease once");
}

#[test]
fn a_lock_held_under_an_expired_lease_waits_out_the_lock_delay() {
    let mut r = Replica::new();
    let lease = int(&r.write(1_000, "LEASE.GRANT 1000 LOCKDELAY 500"));
    let token = int(&r.write(1_000, &format!("LOCK.ACQUIRE res a 60000 LEASE {lease}")));
    let waiter = park(&mut r, 1_001, "w1", "LOCK.ACQUIRE res b 60000 WAIT 10000");
    // The lease expires: a lets go, but b is not granted before the delay.
    let expiry = r.sweep(2_000);
    assert!(expiry.deferred.is_empty(), "{:?}", expiry.deferred);
    assert_eq!(r.engine.next_deadline(), Some(2_500));
    let granted = r.sweep(2_500);
    assert_eq!(granted.deferred.len(), 1);
    assert_eq!(granted.deferred[0].0, waiter);
    assert!(int(&granted.deferred[0].1) > token);
    // A revoked lease (a clean release) has no lock-delay.
    let lease = int(&r.write(3_000, "LEASE.GRANT 60000 LOCKDELAY 5000"));
    r.write(3_000, &format!("LOCK.ACQUIRE other a 60000 LEASE {lease}"));
    let waiter = park(&mut r, 3_001, "w2", "LOCK.ACQUIRE other b 60000 WAIT 10000");
    let revoke = r.apply_command(3_002, &format!("LEASE.REVOKE {lease}"));
    assert_eq!(revoke.deferred.len(), 1, "granted in the revoking entry");
    assert_eq!(revoke.deferred[0].0, waiter);
}

#[test]
fn a_deleted_lock_answers_its_waiters() {
    let mut r = Replica::new();
    r.write(1, "LOCK.ACQUIRE res a 60000");
    let waiter = park(&mut r, 2, "w1", "LOCK.ACQUIRE res b 60000 WAIT 10000");
    let del = r.apply_command(3, "DEL res");
    assert_eq!(
        del.deferred,
        vec![(waiter, Reply::Nil)],
        "exactly one reply"
    );
    assert_eq!(
        r.write(4, "PARK.CANCEL w1"),
        Reply::Integer(0),
        "nothing left to cancel"
    );
    // SET over a lock also ends its waits.
    r.write(5, "LOCK.ACQUIRE res a 60000");
    let waiter = park(&mut r, 6, "w2", "LOCK.ACQUIRE res b 60000 WAIT 10000");
    let set = r.apply_command(7, "SET res plain");
    assert_eq!(set.deferred, vec![(waiter, Reply::Nil)]);
}

#[test]
fn elections_hand_over_in_fifo_order_with_increasing_tokens() {
    let mut r = Replica::new();
    let leases: Vec<i64> = (0..4)
        .map(|_| int(&r.write(100, "LEASE.GRANT 60000")))
        .collect();
    let t1 = int(&r.write(101, &format!("ELECT.CAMPAIGN e v1 {}", leases[0])));
    let w2 = park(
        &mut r,
        102,
        "c2",
        &format!("ELECT.CAMPAIGN e v2 {}", leases[1]),
    );
    let w3 = park(
        &mut r,
        103,
        "c3",
        &format!("ELECT.CAMPAIGN e v3 {} WAIT 60000", leases[2]),
    );
    let leader = r.read(104, "ELECT.LEADER e");
    assert_eq!(field(&leader, "leader"), &bulk("v1"));
    assert_eq!(field(&leader, "token"), &Reply::Integer(t1));
    // Campaigning again while leading resumes (same token).
    assert_eq!(
        r.write(105, &format!("ELECT.CAMPAIGN e v1 {}", leases[0])),
        Reply::Integer(t1)
    );
    assert_eq!(
        r.write(106, &format!("ELECT.PROCLAIM e {t1} v1b")),
        Reply::Integer(1)
    );
    assert_eq!(r.write(106, "ELECT.PROCLAIM e 1 stale"), Reply::Integer(0));
    let resign = r.apply_command(107, &format!("ELECT.RESIGN e {t1}"));
    assert_eq!(resign.reply, Some(Reply::Integer(1)));
    let t2 = r.index as i64;
    assert_eq!(
        resign.deferred,
        vec![(w2, Reply::Integer(t2))],
        "next in line leads"
    );
    assert!(t2 > t1);
    // The leader's lease ending hands over in that entry too.
    let revoke = r.apply_command(108, &format!("LEASE.REVOKE {}", leases[1]));
    let t3 = r.index as i64;
    assert_eq!(revoke.deferred, vec![(w3, Reply::Integer(t3))]);
    // Observers read every transition after the index they saw.
    let first = r.read(109, "ELECT.OBSERVE e AFTER 0");
    assert_eq!(field(&first, "index"), &Reply::Integer(t1));
    assert_eq!(field(&first, "leader"), &bulk("v1"));
    let mut seen = vec![];
    let mut after = 0;
    loop {
        let next = r.read(109, &format!("ELECT.OBSERVE e AFTER {after}"));
        if next == Reply::Nil {
            break;
        }
        after = int(field(&next, "index")) as u64;
        seen.push(field(&next, "leader").clone());
    }
    assert_eq!(seen, vec![bulk("v1"), bulk("v1b"), bulk("v2"), bulk("v3")]);
    // A waiting candidate that times out gets nil; a cancelled one too.
    let w4 = park(
        &mut r,
        110,
        "c4",
        &format!("ELECT.CAMPAIGN e v4 {} WAIT 100", leases[3]),
    );
    let timeout = r.sweep(210);
    assert_eq!(timeout.deferred, vec![(w4, Reply::Nil)]);
    let w5 = park(
        &mut r,
        211,
        "c5",
        &format!("ELECT.CAMPAIGN e v4 {}", leases[3]),
    );
    let cancel = r.apply_command(212, "PARK.CANCEL c5");
    assert_eq!(cancel.deferred, vec![(w5, Reply::Nil)]);
    // Resigning the last leader leaves nobody, which observers see too.
    r.write(213, &format!("ELECT.RESIGN e LEASE {}", leases[2]));
    assert_eq!(r.read(214, "ELECT.LEADER e"), Reply::Nil);
    let none = r.read(214, &format!("ELECT.OBSERVE e AFTER {after}"));
    assert_eq!(field(&none, "leader"), &Reply::Nil);
    assert!(err(&r.write(215, "ELECT.CAMPAIGN e v 77777")).contains("no such lease"));
    assert!(err(&r.read(215, "ELECT.LEADER e extra")).contains("wrong number"));
}

#[test]
fn instances_turn_critical_then_are_removed_and_picks_see_only_healthy_ones() {
    let mut r = Replica::new();
    assert_eq!(
        r.write(
            0,
            "SVC.REGISTER web i1 10.0.0.1:80 TTL 1000 DEREGISTER 2000 META zone a TAGS blue"
        ),
        Reply::Integer(1)
    );
    assert_eq!(
        r.write(
            0,
            "SVC.REGISTER web i2 10.0.0.2:80 TTL 1000 DEREGISTER 2000 WEIGHT 3"
        ),
        Reply::Integer(1)
    );
    let found = r.read(0, "SVC.DISCOVER web");
    let Reply::Array(instances) = field(&found, "instances") else {
        panic!()
    };
    assert_eq!(instances.len(), 2);
    assert_eq!(field(&instances[0], "status"), &bulk("passing"));
    assert_eq!(
        field(&instances[0], "meta"),
        &Reply::Map(vec![(bulk("zone"), bulk("a"))])
    );
    let index = int(field(&found, "index"));
    // i1 heartbeats, i2 does not: i2 turns critical when its check runs out.
    assert_eq!(
        r.write(600, "SVC.HEARTBEAT web i1 LOAD 7 NOTE fine"),
        Reply::Integer(1)
    );
    r.sweep(1_000);
    let found = r.read(1_000, "SVC.DISCOVER web STATUS critical");
    let Reply::Array(critical) = field(&found, "instances") else {
        panic!()
    };
    assert_eq!(critical.len(), 1);
    assert_eq!(field(&critical[0], "instance"), &bulk("i2"));
    assert!(
        int(field(&found, "index")) > index,
        "a transition moves the index"
    );
    // Picks return only passing instances.
    for strategy in [
        "round-robin",
        "random",
        "weighted",
        "least-loaded",
        "sticky user-42",
    ] {
        let picked = r.read(1_001, &format!("SVC.PICK web STRATEGY {strategy}"));
        assert_eq!(field(&picked, "instance"), &bulk("i1"), "{strategy}");
    }
    // i2, critical since 1000, is removed 2000 later; i1 missed its check
    // at 1600 and is critical now.
    r.sweep(3_000);
    let found = r.read(3_000, "SVC.DISCOVER web");
    let Reply::Array(left) = field(&found, "instances") else {
        panic!()
    };
    assert_eq!(left.len(), 1);
    assert_eq!(field(&left[0], "instance"), &bulk("i1"));
    assert_eq!(field(&left[0], "status"), &bulk("critical"));
    assert_eq!(
        r.write(3_001, "SVC.HEARTBEAT web i2"),
        Reply::Integer(0),
        "gone"
    );
    assert_eq!(r.read(3_001, "SVC.PICK web"), Reply::Nil, "nobody healthy");
    assert_eq!(
        r.read(3_001, "SVC.LIST"),
        Reply::Map(vec![(bulk("web"), Reply::Integer(1))])
    );
    // A heartbeat brings it back; missing the next ones removes it.
    assert_eq!(r.write(3_100, "SVC.HEARTBEAT web i1"), Reply::Integer(1));
    assert_eq!(
        field(&r.read(3_100, "SVC.PICK web"), "instance"),
        &bulk("i1")
    );
    r.sweep(4_100);
    r.sweep(6_100);
    assert_eq!(r.read(6_100, "SVC.LIST"), Reply::Map(vec![]));
}

#[test]
fn pick_strategies_spread_and_stick() {
    let mut r = Replica::new();
    for (i, weight) in [1, 1, 8].iter().enumerate() {
        r.write(
            0,
            &format!("SVC.REGISTER api n{i} 10.0.0.{i}:80 WEIGHT {weight}"),
        );
    }
    let turns: Vec<Reply> = (0..6)
        .map(|n| field(&r.read(0, &format!("SVC.PICK api CURSOR {n}")), "instance").clone())
        .collect();
    assert_eq!(turns[..3], turns[3..], "round robin takes turns");
    assert_ne!(turns[0], turns[1]);
    let sticky: Vec<Reply> = (0..5)
        .map(|n| {
            field(
                &r.read(
                    n,
                    &format!("SVC.PICK api STRATEGY sticky session-9 CURSOR {n}"),
                ),
                "instance",
            )
            .clone()
        })
        .collect();
    assert!(sticky.windows(2).all(|w| w[0] == w[1]), "sticky is stable");
    let heavy = (0..200)
        .filter(|n| {
            field(
                &r.read(*n, &format!("SVC.PICK api STRATEGY weighted CURSOR {n}")),
                "instance",
            ) == &bulk("n2")
        })
        .count();
    assert!(heavy > 120, "weight 8 of 10 wins most picks: {heavy}/200");
    r.write(1, "SVC.HEARTBEAT api n0 LOAD 5");
    r.write(1, "SVC.HEARTBEAT api n1 LOAD 1");
    r.write(1, "SVC.HEARTBEAT api n2 LOAD 9");
    assert_eq!(
        field(&r.read(2, "SVC.PICK api STRATEGY least-loaded"), "instance"),
        &bulk("n1")
    );
    // Bad input.
    assert!(err(&r.write(3, "SVC.HEARTBEAT api n0 STATUS sleepy")).contains("invalid status"));
    assert!(err(&r.write(3, "SVC.REGISTER api n9 addr TTL 5")).contains("check TTL"));
    assert!(err(&r.write(3, "SVC.REGISTER api n9 addr LEASE 4242")).contains("no such lease"));
    assert!(err(&r.read(3, "SVC.PICK api STRATEGY fastest")).contains("invalid strategy"));
    assert!(err(&r.write(3, "SVC.REGISTER api n9 addr META k")).contains("syntax"));
}

#[test]
fn an_instance_registered_under_a_lease_leaves_with_it() {
    let mut r = Replica::new();
    let lease = int(&r.write(0, "LEASE.GRANT 1000"));
    r.write(
        0,
        &format!("SVC.REGISTER db primary 10.0.0.9:5432 LEASE {lease}"),
    );
    assert_eq!(
        r.read(0, "SVC.LIST"),
        Reply::Map(vec![(bulk("db"), Reply::Integer(1))])
    );
    r.sweep(1_000);
    let found = r.read(1_000, "SVC.DISCOVER db");
    assert_eq!(field(&found, "instances"), &Reply::Array(vec![]));
    assert_eq!(
        field(&found, "index"),
        &Reply::Integer(0),
        "the service is gone"
    );
}

#[test]
fn barriers_and_double_barriers() {
    let mut r = Replica::new();
    assert_eq!(r.write(0, "BARRIER.SET gate"), Reply::Integer(1));
    assert_eq!(r.write(0, "BARRIER.SET gate"), Reply::Integer(0));
    assert_eq!(r.read(0, "BARRIER.WAIT gate"), Reply::Nil, "still up");
    assert_eq!(r.write(1, "BARRIER.REMOVE gate"), Reply::Integer(1));
    assert_eq!(r.read(1, "BARRIER.WAIT gate"), Reply::Integer(1));
    // Three participants: the third entry answers all three.
    let p1 = park(&mut r, 2, "e1", "BARRIER.ENTER d p1 3");
    let p2 = park(&mut r, 3, "e2", "BARRIER.ENTER d p2 3");
    let third = r.apply_command(4, "BARRIER.ENTER d p3 3");
    assert_eq!(third.reply, Some(Reply::Integer(3)));
    assert_eq!(
        third.deferred,
        vec![(p1, Reply::Integer(3)), (p2, Reply::Integer(3))],
        "all enter together"
    );
    let l1 = park(&mut r, 5, "l1", "BARRIER.LEAVE d p1");
    let l2 = park(&mut r, 6, "l2", "BARRIER.LEAVE d p2");
    let last = r.apply_command(7, "BARRIER.LEAVE d p3");
    assert_eq!(last.reply, Some(Reply::Integer(1)));
    assert_eq!(
        last.deferred,
        vec![(l1, Reply::Integer(1)), (l2, Reply::Integer(1))]
    );
    assert_eq!(
        r.read(8, "EXISTS d"),
        Reply::Integer(0),
        "the barrier resets"
    );
    // An enter that times out withdraws; a participant's lease ending
    // makes it leave.
    let lease = int(&r.write(9, "LEASE.GRANT 60000"));
    let q1 = park(
        &mut r,
        10,
        "e3",
        &format!("BARRIER.ENTER d q1 2 LEASE {lease}"),
    );
    let revoke = r.apply_command(11, &format!("LEASE.REVOKE {lease}"));
    assert_eq!(revoke.deferred, vec![(q1, Reply::Nil)]);
    let q2 = park(&mut r, 12, "e4", "BARRIER.ENTER d q2 2 WAIT 100");
    assert_eq!(r.sweep(112).deferred, vec![(q2, Reply::Nil)]);
    assert_eq!(r.read(113, "EXISTS d"), Reply::Integer(0));
    assert!(err(&r.write(114, "BARRIER.ENTER d q 0")).contains("invalid count"));
    r.write(115, "BARRIER.SET single");
    assert!(err(&r.write(115, "BARRIER.ENTER single p 2")).contains("not a double barrier"));
}

#[test]
fn a_restarted_node_rebuilds_every_pending_deadline() {
    let mut r = Replica::new();
    let lease = int(&r.write(0, "LEASE.GRANT 5000"));
    r.write(0, "SET ttl v PX 7000");
    r.write(0, "SVC.REGISTER web a addr TTL 3000");
    r.write(1, &format!("ELECT.CAMPAIGN e v {lease}"));
    let other = int(&r.write(2, "LEASE.GRANT 9000"));
    park(
        &mut r,
        3,
        "w",
        &format!("ELECT.CAMPAIGN e v {other} WAIT 4000"),
    );
    park(&mut r, 3, "b", "BARRIER.ENTER d p 2 WAIT 2500");
    let reopened = Engine::open(&r.store).unwrap();
    assert_eq!(reopened.deadlines(), r.engine.deadlines());
    assert!(
        r.engine.deadlines().len() >= 6,
        "{:?}",
        r.engine.deadlines()
    );
}

#[test]
fn the_limits_are_replicated_settings_that_bound_every_record() {
    let mut r = Replica::new();
    assert_eq!(
        r.read(1_000, "CONFIG.GET lease-max-alive"),
        Reply::Map(vec![(bulk("lease-max-alive"), bulk("100000"))])
    );
    assert_eq!(
        r.write(1_000, "CONFIG.SET lease-max-alive 2 lease-max-items 1"),
        Reply::ok()
    );
    let first = int(&r.write(1_000, "LEASE.GRANT 60000"));
    int(&r.write(1_000, "LEASE.GRANT 60000"));
    assert_eq!(
        err(&r.write(1_000, "LEASE.GRANT 60000")),
        "ERR 2 leases are alive already (lease-max-alive)"
    );
    r.write(1_000, &format!("SET a 1 LEASE {first}"));
    assert_eq!(
        err(&r.write(1_000, &format!("SET b 1 LEASE {first}"))),
        "ERR lease already holds 1 items (lease-max-items)"
    );
    r.write(
        1_000,
        "CONFIG.SET election-max-candidates 1 svc-max-meta-bytes 4 svc-max-instances 1",
    );
    r.write(
        1_000,
        "CONFIG.SET barrier-max-participants 2 lease-max-items 100",
    );
    let second = first + 1;
    r.write(1_000, &format!("ELECT.CAMPAIGN e one {first}"));
    park(
        &mut r,
        1_000,
        "w1",
        &format!("ELECT.CAMPAIGN e two {second}"),
    );
    let third = int(&{
        r.write(1_000, "CONFIG.SET lease-max-alive 3");
        r.write(1_000, "LEASE.GRANT 60000")
    });
    assert_eq!(
        err(&r
            .apply_command(1_000, &format!("PARK w2 ELECT.CAMPAIGN e three {third}"))
            .reply
            .expect("a reply")),
        "ERR election already has 1 candidates (election-max-candidates)"
    );
    assert_eq!(
        err(&r.write(1_000, "SVC.REGISTER s i1 addr META k toolong")),
        "ERR metadata and tags exceed 4 bytes (svc-max-meta-bytes)"
    );
    assert_eq!(
        r.write(1_000, "SVC.REGISTER s i1 addr META k v"),
        Reply::Integer(1)
    );
    assert_eq!(
        err(&r.write(1_000, "SVC.REGISTER s i2 addr")),
        "ERR service already has 1 instances (svc-max-instances)"
    );
    assert_eq!(
        err(&r.write(1_000, "BARRIER.ENTER b p 3")),
        "ERR count 3 is above barrier-max-participants (2)"
    );
    // Bad settings are refused whole, before the log.
    for (command, expected) in [
        (
            "CONFIG.SET lease-max-alive 0",
            "ERR CONFIG SET failed (possibly related to argument 'lease-max-alive') - argument must be between 1 and 10000000 inclusive",
        ),
        (
            "CONFIG.SET lease-max-alive 5 nosuch 1",
            "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'",
        ),
        (
            "CONFIG.SET lease-max-alive x",
            "ERR CONFIG SET failed (possibly related to argument 'lease-max-alive') - argument must be between 1 and 10000000 inclusive",
        ),
    ] {
        assert_eq!(
            err(&lockstep_engine::parse(&common::argv(command)).expect_err(command)),
            expected
        );
    }
    assert_eq!(
        r.read(1_000, "CONFIG.GET lease-max-*"),
        Reply::Map(vec![
            (bulk("lease-max-alive"), bulk("3")),
            (bulk("lease-max-items"), bulk("100")),
        ])
    );
    // Back to the default: nothing stored.
    r.write(1_000, "CONFIG.SET lease-max-alive 100000");
    assert_eq!(
        r.read(1_000, "CONFIG.GET lease-max-alive"),
        Reply::Map(vec![(bulk("lease-max-alive"), bulk("100000"))])
    );
}
