"""The change feed through redis-py's stream API (XRANGE, XREAD with
BLOCK), RESP2 and RESP3, reading on one node while another writes.

usage: feed_stream.py reader-port writer-port
"""

import sys
import threading
import time

import redis


def main():
    reader_port, writer_port = int(sys.argv[1]), int(sys.argv[2])
    writer = redis.Redis(port=writer_port)
    for protocol in (2, 3):
        reader = redis.Redis(port=reader_port, protocol=protocol)
        # Start after everything so far.
        latest = reader.xread({"__changes__": "$"}, count=1)
        assert latest in ([], {}, None), latest
        last = reader.execute_command("CHANGES.INFO")
        applied = last[b"applied"] if isinstance(last, dict) else dict(zip(last[::2], last[1::2]))[b"applied"]
        last_id = f"{applied}-4294967295"
        for n in range(5):
            writer.set(f"stream:{protocol}:{n}", n)
        seen = []
        deadline = time.monotonic() + 5
        while len(seen) < 5:
            assert time.monotonic() < deadline, seen
            reply = reader.xread({"__changes__": last_id}, count=2, block=1000)
            entries = reply[b"__changes__"][0] if isinstance(reply, dict) else reply[0][1]
            for entry_id, fields in entries:
                seen.append(fields[b"key"].decode())
                last_id = entry_id
        assert seen == [f"stream:{protocol}:{n}" for n in range(5)], seen
        # XRANGE over the same stretch: the same entries, ids index-n.
        first = last_id.decode() if isinstance(last_id, bytes) else last_id
        index = int(first.split("-")[0])
        ranged = reader.xrange("__changes__", min=f"{index - 4}", max="+")
        assert [f[b"key"].decode() for _, f in ranged] == seen, ranged
        assert all(fields[b"event"] == b"set" for _, fields in ranged)

        # A blocked XREAD returns once a write lands on another node.
        got = []

        def wait():
            got.append(reader.xread({"__changes__": "$"}, block=10000))

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        writer.set(f"stream:{protocol}:late", "x")
        waiter.join(12)
        assert got and got[0], got
    try:
        writer.xadd("__changes__", {"a": "b"})
        raise AssertionError("XADD is not a lockstep command")
    except redis.ResponseError:
        pass
    print("feed stream ok")


if __name__ == "__main__":
    main()
