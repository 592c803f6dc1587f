"""redis-py's Lock, unmodified, against a lockstep cluster.

Usage: redis_py_lock.py PORT [PORT ...]  (client ports of the nodes)
Exits non-zero on the first failed check.
"""
import sys
import threading
import time

import redis
from redis.exceptions import LockError, LockNotOwnedError

ports = [int(p) for p in sys.argv[1:]]
clients = [redis.Redis(port=p, socket_timeout=10) for p in ports]
first, second = clients[0], clients[-1]


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


# Non-blocking acquire; a second client on another node cannot take it.
lock = first.lock("resource", timeout=5)
check(lock.acquire(blocking=False), "non-blocking acquire")
check(lock.owned() and lock.locked(), "owned and locked")
rival = second.lock("resource", timeout=5)
check(not rival.acquire(blocking=False), "a rival on another node is refused")

# Release by a non-owner raises LockNotOwnedError (the release script ran).
intruder = second.lock("resource", timeout=5)
intruder.local.token = b"not-the-owner"
try:
    intruder.release()
    check(False, "release by a non-owner raises")
except LockNotOwnedError:
    check(True, "release by a non-owner raises LockNotOwnedError")
check(first.get("resource") == lock.local.token, "the lock survived the bad release")

# Extend and reacquire run their scripts on every node alike.
check(lock.extend(10), "extend adds time")
ttl = second.pttl("resource")
check(10_000 < ttl <= 15_000, f"extended ttl visible on another node ({ttl} ms)")
check(lock.reacquire(), "reacquire resets the ttl")
ttl = second.pttl("resource")
check(4_000 < ttl <= 5_000, f"reacquired ttl ({ttl} ms)")

# Blocking acquire waits until the owner releases.
acquired_at = []


def waiter():
    blocking = second.lock("resource", timeout=5, blocking_timeout=10, sleep=0.05)
    if blocking.acquire():
        acquired_at.append(time.monotonic())
        blocking.release()


thread = threading.Thread(target=waiter)
thread.start()
time.sleep(0.5)
released_at = time.monotonic()
lock.release()
thread.join()
check(len(acquired_at) == 1 and acquired_at[0] >= released_at, "blocking acquire after release")

# Expiry: a lock with a short timeout frees itself.
short = first.lock("short", timeout=0.5)
check(short.acquire(blocking=False), "acquire a short lock")
time.sleep(1.0)
taker = second.lock("short", timeout=5)
check(taker.acquire(blocking=False), "the expired lock is free again")
try:
    short.release()
    check(False, "releasing an expired lock raises")
except LockNotOwnedError:
    check(True, "releasing an expired lock raises LockNotOwnedError")
try:
    short.extend(1)
    check(False, "extending a lost lock raises")
except LockError:
    check(True, "extending a lost lock raises")
taker.release()

# Context manager form.
with first.lock("ctx", timeout=5):
    check(second.get("ctx") is not None, "context manager holds the lock")
check(second.get("ctx") is None, "context manager released it")

print("all redis-py lock checks passed")
