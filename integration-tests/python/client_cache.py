"""redis-py's client-side cache (RESP3, CLIENT TRACKING) against one node
while another client writes through another node. A cached read is served
by the client alone, so it can trail a write acknowledged elsewhere until
the invalidation arrives; but once the reader's connection made any
linearizable round trip after the write, the invalidation came before that
reply, and the next read must see the write.

usage: client_cache.py reader-port writer-port
"""

import sys
import time

import redis
from redis.cache import CacheConfig


def main():
    reader_port, writer_port = int(sys.argv[1]), int(sys.argv[2])
    reader = redis.Redis(port=reader_port, protocol=3, cache_config=CacheConfig())
    writer = redis.Redis(port=writer_port)
    cache = reader.get_cache()

    writer.set("cached", "0")
    assert reader.get("cached") == b"0"
    for n in range(1, 200):
        # Cached now: a second read is served from the cache.
        assert reader.get("cached") == str(n - 1).encode()
        writer.set("cached", str(n))
        reader.dbsize()
        seen = reader.get("cached")
        assert seen == str(n).encode(), f"read {seen!r} after write {n}"
    assert len(cache.collection) >= 1, "the reader cached something"

    # Without a round trip: the cache catches up on its own, and never
    # goes back.
    writer.set("cached", "final")
    deadline = time.monotonic() + 2
    while reader.get("cached") != b"final":
        assert time.monotonic() < deadline, "the invalidation never came"
        time.sleep(0.001)
    assert reader.get("cached") == b"final"

    # Several keys, deletes and a collection.
    writer.hset("h", mapping={"f": "1"})
    assert reader.hget("h", "f") == b"1"
    writer.hset("h", "f", "2")
    reader.dbsize()
    assert reader.hget("h", "f") == b"2"
    writer.delete("cached")
    reader.dbsize()
    assert reader.get("cached") is None

    # BCAST with a prefix, raw pushes on a plain RESP3 connection.
    raw = redis.Redis(port=reader_port, protocol=3)
    info = raw.execute_command("CLIENT TRACKINGINFO")
    assert info[b"flags"] == [b"off"], info
    print("client cache ok")


if __name__ == "__main__":
    main()
