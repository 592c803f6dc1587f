"""kazoo (the Python ZooKeeper client, unmodified) against lockstep's
ZooKeeper port. Each scenario takes the nodes' ZooKeeper addresses and
fails with an assertion; the Rust test runs it as its own process.

    python3 zk_client.py SCENARIO HOST:PORT [HOST:PORT ...]
"""
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import EventType


def client(host, **kw):
    zk = KazooClient(hosts=host, timeout=10, **kw)
    zk.start(timeout=15)
    return zk


def wait_for(what, predicate, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def basics(hosts):
    a, b = client(hosts[0]), client(hosts[1 % len(hosts)])
    a.ensure_path("/basics/config")
    first = a.create("/basics/seq-", b"x", sequence=True)
    second = a.create("/basics/seq-", b"y", sequence=True, ephemeral=True)
    assert first == "/basics/seq-0000000001", first
    assert second == "/basics/seq-0000000002", second
    stat = a.set("/basics/config", b"v1")
    assert stat.version == 1
    # Linearizable from another node at once.
    data, stat2 = b.get("/basics/config")
    assert data == b"v1" and stat2 == stat, (data, stat2, stat)
    assert stat2.mzxid > stat2.czxid and stat2.ephemeralOwner == 0
    _, eph = b.get(second)
    assert eph.ephemeralOwner == a.client_id[0], (eph, a.client_id)
    children = sorted(b.get_children("/basics"))
    assert children == ["config", "seq-0000000001", "seq-0000000002"], children
    names, parent = b.get_children("/basics", include_data=True)
    assert parent.numChildren == 3 and parent.cversion == 3, parent
    assert "zookeeper" in a.get_children("/")
    # Null data is not empty data.
    a.create("/basics/null", None)
    assert b.get("/basics/null")[0] is None
    a.set("/basics/null", b"")
    assert b.get("/basics/null")[0] == b""
    a.set("/basics/null", None)
    assert b.get("/basics/null")[0] is None
    a.delete("/basics/null")
    assert a.exists("/basics/nope") is None
    path, created = a.create("/basics/with-stat", b"abc", include_data=True)
    assert path == "/basics/with-stat" and created.dataLength == 3, created
    for call, error in [
        (lambda: a.create("/basics/config"), NodeExistsError),
        (lambda: a.create("/basics/missing/child"), NoNodeError),
        (lambda: a.set("/basics/config", b"v", version=7), BadVersionError),
        (lambda: a.delete("/basics"), NotEmptyError),
        (lambda: a.delete("/basics/nope"), NoNodeError),
        (lambda: a.create(second + "/child"), NoChildrenForEphemeralsError),
        (lambda: a.get("/basics/nope"), NoNodeError),
    ]:
        try:
            call()
        except error:
            pass
        else:
            raise AssertionError("expected %s" % error.__name__)
    t = a.transaction()
    t.check("/basics/config", 1)
    t.create("/basics/t1", b"")
    t.set_data("/basics/config", b"v2")
    t.delete("/basics/with-stat")
    results = t.commit()
    assert results[0] is True and results[1] == "/basics/t1", results
    assert results[2].version == 2 and results[3] is True, results
    t = b.transaction()
    t.create("/basics/t2", b"")
    t.check("/basics/config", 99)
    t.delete("/basics/t1")
    results = t.commit()
    assert [type(r) for r in results] == [
        RolledBackError,
        BadVersionError,
        RuntimeInconsistency,
    ], results
    assert b.exists("/basics/t2") is None and b.exists("/basics/t1") is not None
    b.sync("/basics")
    a.delete("/basics", recursive=True)
    assert b.exists("/basics") is None
    a.stop()
    b.stop()
    print("basics ok")


def watches(hosts):
    a, b = client(hosts[0]), client(hosts[1 % len(hosts)])
    if a.exists("/w"):
        a.delete("/w", recursive=True)
    a.ensure_path("/w")
    a.create("/w/node", b"0")
    events = []
    lock = threading.Lock()

    def record(event):
        with lock:
            events.append((event.type, event.path))

    a.get("/w/node", watch=record)
    a.get_children("/w", watch=record)
    a.exists("/w/later", watch=record)
    b.set("/w/node", b"1")
    b.create("/w/later", b"")
    wait_for("three events", lambda: len(events) >= 3)
    with lock:
        got = sorted(events)
    assert got == sorted(
        [
            (EventType.CHANGED, "/w/node"),
            (EventType.CHILD, "/w"),
            (EventType.CREATED, "/w/later"),
        ]
    ), got
    # One-shot: a second change fires nothing more.
    b.set("/w/node", b"2")
    time.sleep(0.3)
    assert len(events) == 3, events
    # kazoo's recipes built on watches.
    values = []
    a.DataWatch("/w/node", lambda data, stat: values.append(data))
    children = []
    a.ChildrenWatch("/w", lambda names: children.append(sorted(names)))
    b.set("/w/node", b"3")
    b.create("/w/new", b"")
    wait_for("DataWatch", lambda: values and values[-1] == b"3")
    wait_for("ChildrenWatch", lambda: children and "new" in children[-1])
    a.stop()
    b.stop()
    print("watches ok")


def locks(hosts):
    clients = [client(hosts[i % len(hosts)]) for i in range(6)]
    holding = []
    overlaps = []
    cycles = [0]
    guard = threading.Lock()

    def worker(zk, name):
        for _ in range(5):
            lock = zk.Lock("/locks/shared", name)
            with lock:
                with guard:
                    holding.append(name)
                    if len(holding) > 1:
                        overlaps.append(list(holding))
                time.sleep(0.005)
                with guard:
                    holding.remove(name)
                    cycles[0] += 1

    threads = [
        threading.Thread(target=worker, args=(zk, "w%d" % i))
        for i, zk in enumerate(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert cycles[0] == 30 and not overlaps, (cycles, overlaps)
    # Leader election: one leader at a time, each candidate in turn.
    leaders = []

    def campaign(zk, name):
        zk.Election("/election/job", name).run(lambda: leaders.append(name))

    threads = [
        threading.Thread(target=campaign, args=(zk, "c%d" % i))
        for i, zk in enumerate(clients[:3])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(leaders) == ["c0", "c1", "c2"], leaders
    # A semaphore, a barrier and a counter.
    sem = clients[0].Semaphore("/sem", max_leases=2)
    assert sem.acquire(timeout=5)
    counter = clients[1].Counter("/counter")
    counter += 5
    counter -= 2
    assert clients[2].Counter("/counter").value == 3
    sem.release()
    for zk in clients:
        zk.stop()
    print("locks ok")


def ephemerals(hosts):
    a, b = client(hosts[0]), client(hosts[1 % len(hosts)])
    a.create("/eph", b"", ephemeral=True)
    assert b.exists("/eph") is not None
    a.stop()  # closeSession: gone at once, not after the timeout.
    assert b.exists("/eph") is None
    b.stop()
    print("ephemerals ok")


def security(hosts):
    from kazoo.exceptions import InvalidACLError, NoAuthError
    from kazoo.security import (
        OPEN_ACL_UNSAFE,
        READ_ACL_UNSAFE,
        make_acl,
        make_digest_acl,
    )

    owner = client(hosts[0], auth_data=[("digest", "alice:secret")])
    other = client(hosts[1 % len(hosts)])
    acl = make_digest_acl("alice", "secret", all=True)
    owner.create("/sec", b"private", acl=[acl])
    acls, stat = owner.get_acls("/sec")
    assert acls == [acl] and stat.aversion == 0, (acls, stat)
    for call in [
        lambda: other.get_acls("/sec"),  # READ or ADMIN, as ZooKeeper 3.5+
        lambda: other.get("/sec"),
        lambda: other.set("/sec", b"x"),
        lambda: other.create("/sec/child"),
        lambda: other.get_children("/sec"),
    ]:
        try:
            call()
        except NoAuthError:
            pass
        else:
            raise AssertionError("a stranger got through")
    assert other.exists("/sec") is not None  # exists needs no permission
    assert owner.get("/sec")[0] == b"private"
    owner.create("/sec/child")
    # The stranger authenticates later on the same session.
    other.add_auth("digest", "alice:secret")
    assert other.get("/sec")[0] == b"private"
    # READ for everyone, everything for alice; aversion counts changes.
    stat = owner.set_acls("/sec", [READ_ACL_UNSAFE[0], acl])
    assert stat.aversion == 1, stat
    anyone = client(hosts[2 % len(hosts)])
    assert anyone.get("/sec")[0] == b"private"
    try:
        anyone.set("/sec", b"x")
    except NoAuthError:
        pass
    else:
        raise AssertionError("READ must not allow a write")
    try:
        owner.set_acls("/sec", [acl], version=0)
    except BadVersionError:
        pass
    else:
        raise AssertionError("a stale aversion must fail")
    # "auth" stands for the creator's identities; an unknown scheme is refused.
    owner.create("/mine", b"", acl=[make_acl("auth", "", all=True)])
    assert owner.get_acls("/mine")[0][0].id.id.startswith("alice:")
    try:
        owner.create("/bad", b"", acl=[make_acl("nope", "x", all=True)])
    except InvalidACLError:
        pass
    else:
        raise AssertionError("an unknown ACL scheme must be refused")
    # An ip ACL for loopback.
    anyone.create("/local", b"", acl=[make_acl("ip", "127.0.0.0/8", all=True)])
    assert anyone.get("/local")[0] == b""
    owner.create("/open", b"", acl=OPEN_ACL_UNSAFE)
    for zk in (owner, other, anyone):
        zk.stop()
    print("security ok")


def hold_lock(hosts):
    """Holds a kazoo lock, prints its node, waits for a line on stdin."""
    zk = client(hosts[0])
    lock = zk.Lock("/mixed/lock", "kazoo")
    lock.acquire(timeout=10)
    print("held " + sorted(zk.get_children("/mixed/lock"))[0], flush=True)
    sys.stdin.readline()
    lock.release()
    zk.stop()
    print("released", flush=True)


def tls(args):
    """HOST:PORT of the TLS port, then the CA, a client certificate and its
    key: served with the certificate, refused without one."""
    host, ca, cert, key = args
    zk = client(host, use_ssl=True, ca=ca, certfile=cert, keyfile=key)
    zk.ensure_path("/tls")
    path = zk.create("/tls/item-", b"over tls", sequence=True)
    assert zk.get(path)[0] == b"over tls"
    zk.stop()
    stranger = KazooClient(hosts=host, timeout=4, use_ssl=True, ca=ca)
    try:
        stranger.start(timeout=4)
    except Exception:
        pass
    else:
        raise AssertionError("a client without a certificate was served")
    finally:
        stranger.stop()
    print(path)
    print("tls ok", flush=True)


def read_only(hosts):
    """Run against a node whose peers are down: a client that allows it
    gets a read-only session (reads served, writes refused with
    NotReadOnlyCallError, pings answered), one that does not gets none.
    After a line on stdin (the peers are back) the same client must find
    a read-write session by itself."""
    from kazoo.exceptions import NotReadOnlyCallError
    from kazoo.protocol.states import KeeperState

    strict = KazooClient(hosts=hosts[0], timeout=4)
    try:
        strict.start(timeout=5)
    except Exception:
        pass
    else:
        raise AssertionError("a read-write client was served without a quorum")
    finally:
        strict.stop()
    zk = KazooClient(hosts=hosts[0], timeout=6, read_only=True)
    zk.start(timeout=15)
    assert zk.client_state == KeeperState.CONNECTED_RO, zk.client_state
    assert zk.get("/ro/data")[0] == b"before", zk.get("/ro/data")
    assert zk.get_children("/ro") == ["data"], zk.get_children("/ro")
    try:
        zk.create("/ro/new", b"x")
    except NotReadOnlyCallError:
        pass
    else:
        raise AssertionError("a write was served in read-only mode")
    time.sleep(4)  # pings go on: still connected, still read-only
    assert zk.connected and zk.client_state == KeeperState.CONNECTED_RO
    print("read-only ok", flush=True)
    sys.stdin.readline()
    wait_for("a read-write session", lambda: zk.client_state == KeeperState.CONNECTED, 40)
    zk.create("/ro/after", b"rw")
    assert zk.get("/ro/after")[0] == b"rw"
    zk.stop()
    print("read-write ok", flush=True)


SCENARIOS = {
    "tls": tls,
    "read-only": read_only,
    "basics": basics,
    "watches": watches,
    "locks": locks,
    "ephemerals": ephemerals,
    "security": security,
    "hold-lock": hold_lock,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](sys.argv[2:])
