"""Contended native locks: N clients (threads) on one lock name, each
looping LOCK.ACQUIRE ... WAIT then LOCK.RELEASE. Prints hand-overs per
second, acquire latency percentiles, how many acquires came back without
the lock (a retry on the wire would be needed), and whether tokens only
increased.

Usage: lock_contention.py PORT[,PORT...] [clients=64] [seconds=10]
Clients are spread over the given ports (nodes).
"""
import sys
import threading
import time

import redis

ports = [int(p) for p in sys.argv[1].split(",")]
clients = int(sys.argv[2]) if len(sys.argv) > 2 else 64
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0

stop = threading.Event()
lock = threading.Lock()
grants = []  # (token, monotonic time)
latencies = []
empty = [0]


def worker(i):
    con = redis.Redis(port=ports[i % len(ports)], socket_timeout=60)
    owner = f"client-{i}"
    while not stop.is_set():
        started = time.monotonic()
        token = con.execute_command("LOCK.ACQUIRE", "contended", owner, 5000, "WAIT", 30000)
        took = time.monotonic() - started
        if token is None:
            with lock:
                empty[0] += 1
            continue
        with lock:
            grants.append((int(token), time.monotonic()))
            latencies.append(took)
        con.execute_command("LOCK.RELEASE", "contended", owner)


threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
for t in threads:
    t.start()
time.sleep(seconds)
stop.set()
for t in threads:
    t.join(timeout=40)

tokens = [token for token, _ in sorted(grants, key=lambda g: g[1])]
increasing = all(a < b for a, b in zip(tokens, tokens[1:]))
latencies.sort()


def pct(p):
    return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0


print(f"clients {clients} on ports {ports}, {seconds:.0f}s")
print(f"hand-overs/s {len(grants) / seconds:.0f}")
print(f"acquire wait ms p50 {pct(0.5):.1f} p99 {pct(0.99):.1f}")
print(f"acquires that came back without the lock: {empty[0]}")
print(f"tokens strictly increasing in grant order: {increasing}")
