"""A redis-py client of lockstep's coordination commands, run as its own
process so the tests can kill it (kill -9: no goodbye, no clean close).

  coordination_client.py ephemeral PORT KEY TTL_MS
      grants a lease, binds it to this connection, writes KEY under it,
      prints "lease <id>", then keeps the connection open
  coordination_client.py candidate PORT ELECTION VALUE TTL_MS
      grants and binds a lease, campaigns (blocking until it leads),
      prints "leader <token> <lease>", then keeps leading
"""
import sys
import time

import redis


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    r = redis.Redis(port=port, socket_timeout=None)
    if mode == "ephemeral":
        key, ttl = sys.argv[3], int(sys.argv[4])
        lease = r.execute_command("LEASE.GRANT", ttl)
        r.execute_command("LEASE.BIND", lease)
        r.execute_command("SET", key, "alive", "LEASE", lease)
        print(f"lease {lease}", flush=True)
    elif mode == "candidate":
        election, value, ttl = sys.argv[3], sys.argv[4], int(sys.argv[5])
        lease = r.execute_command("LEASE.GRANT", ttl)
        r.execute_command("LEASE.BIND", lease)
        print(f"campaigning {lease}", flush=True)
        token = r.execute_command("ELECT.CAMPAIGN", election, value, lease)
        print(f"leader {token} {lease}", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")
    # The connection stays open (and bound) until the process is killed.
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
