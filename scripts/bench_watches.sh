#!/usr/bin/env bash
# Benchmarks watches and the namespace on a fresh 3-node cluster, clients
# spread over all three nodes, and checks each figure against its target:
#
#   fanout     1,000 subscribers (over the three nodes) each follow the
#              keyspace events of their own keys while 16 clients write
#              random ones: events delivered per second, and the time
#              from a write's acknowledgement to its event on another
#              node, target p99 < 20 ms
#   catchup    a watcher 100,000 changes behind reads the change feed
#              (CHANGES.READ, 10,000 a page) on another node until it
#              has caught up: target >= 100,000 changes/s
#   namespace  ZNODE.CREATE / GET / SET / CHILDREN at 64 clients beside
#              SET and GET of plain keys in the same run: target each
#              within 1.5x of its plain counterpart (create and set
#              against SET, get and children against GET)
#
#   scripts/bench_watches.sh [--seconds 10]
#
# Exits non-zero if a target is missed. LOCKSTEP_BIN runs another lockstep
# build (see scripts/cluster.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=10
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-cluster.sh
. "$repo/scripts/bench-cluster.sh"
bench() {
  local name=$1; shift
  "$CARGO_TARGET_DIR/release/lockstep-bench" --endpoints "$endpoints" --pids "$pids" \
    --seconds "$seconds" --label "$name" "$@"
}

echo "lockstep: 3 nodes ($(${LOCKSTEP_BIN:-$CARGO_TARGET_DIR/release/lockstep} --version)), leader $leader, ${seconds}s per workload, cores: $(nproc)"
bench fanout --workload fanout --clients 16 --subscribers 1000 | tee "$work/fanout.txt"
bench catchup --workload catchup --behind 100000 --page 10000 --passes 3 | tee "$work/catchup.txt"
for w in put znode-create get znode-get znode-set znode-children; do
  bench "$w" --workload "$w" --clients 64 --keys 10000 --json "$work/$w.json" >/dev/null
done

python3 - "$work" <<'PY'
import json, re, sys
work = sys.argv[1]
rows, ok = [], True
def target(name, figure, met, goal):
    global ok
    ok = ok and met
    rows.append(f"{name:<15} {figure:<62} {goal:<22} {'met' if met else 'NOT MET'}")
fan = open(f"{work}/fanout.txt").read()
p99 = float(re.search(r"p99 ([0-9.]+) ms", fan).group(1))
rate = float(re.search(r"([0-9]+) events delivered/s", fan).group(1))
writes = float(re.search(r"([0-9]+) writes/s", fan).group(1))
target("fanout", f"{writes:.0f} writes/s, {rate:.0f} events/s, ack -> other node p99 {p99:.2f} ms", p99 < 20, "p99 < 20 ms")
rates = [float(r) for r in re.findall(r"([0-9]+) changes/s", open(f"{work}/catchup.txt").read())]
rates.sort()
target("catchup", f"median of 3: {rates[1]:.0f} changes/s (all: {', '.join(f'{r:.0f}' for r in rates)})", rates[1] >= 100_000, ">= 100,000/s")
def load(name):
    return json.load(open(f"{work}/{name}.json"))[0]
for zn, plain in [("znode-create", "put"), ("znode-get", "get"), ("znode-set", "put"), ("znode-children", "get")]:
    z, p = load(zn), load(plain)
    ratio = p["ops_per_sec"] / max(z["ops_per_sec"], 1)
    target(zn, f"{z['ops_per_sec']:.0f}/s p99 {z['latency']['p99_ms']:.1f} ms vs {plain} {p['ops_per_sec']:.0f}/s p99 {p['latency']['p99_ms']:.1f} ms ({ratio:.2f}x)",
           ratio <= 1.5 and z["errors"] == 0, "within 1.5x")
print()
print("\n".join(rows))
print("PASS" if ok else "NOT MET")
sys.exit(0 if ok else 1)
PY
