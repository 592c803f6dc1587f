#!/usr/bin/env bash
# Benchmarks the coordination primitives on a fresh 3-node cluster, clients
# spread over all three nodes, and checks each figure against its target:
#
#   handover   16 candidates campaign in one election, each leader resigns
#              at once: leaderships/s, and the hand-over (resignation sent
#              -> next leader's campaign answered), target p50 < 5 ms
#   heartbeat  SVC.HEARTBEAT over 1,000 registered instances, 32 clients:
#              target >= 5,000/s across the cluster
#   observe    one leader changes its value every 20 ms, 15 observers
#              follow with ELECT.OBSERVE AFTER: change answered on the
#              writer's node -> observer on another node answered,
#              target p99 < 20 ms
#   keepalive  10,000 leases kept alive by 100 connections, each renewing
#              its 100 leases in one LEASE.KEEPALIVE every second: target
#              the leader under 10% of a core, under 50 log entries/s;
#              then, once those leases have expired, every node idle
#              below 2% of a core
#
#   scripts/bench_coordination.sh [--seconds 20]
#
# Exits non-zero if a target is missed. LOCKSTEP_BIN runs another lockstep
# build (see scripts/cluster.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=20
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
    --seconds "$seconds" --label "$name" --json "$work/$name.json" "$@"
}

echo "lockstep: 3 nodes ($(${LOCKSTEP_BIN:-$CARGO_TARGET_DIR/release/lockstep} --version)), leader $leader, ${seconds}s per workload, cores: $(nproc)"
bench handover --workload handover --clients 16 --wait-ms 10000
bench heartbeat --workload heartbeat --clients 32 --keys 1000
bench observe --workload observe --clients 16 --interval-ms 20 --wait-ms 10000
# Granting 10,000 leases happens in the warm-up. Afterwards: idle CPU once
# the leases have expired (the 1,000 instances still have checks pending).
bench keepalive --workload keepalive --clients 100 --leases-per-client 100 \
  --ttl-ms 10000 --interval-ms 1000 --warmup 8 --idle-delay 15 --idle-seconds 10

python3 - "$work" "$leader" <<'PY'
import json, sys
work, leader = sys.argv[1], sys.argv[2]
def load(name):
    return json.load(open(f"{work}/{name}.json"))[0]
rows, ok = [], True
def target(name, figure, met, goal):
    global ok
    ok = ok and met
    rows.append(f"{name:<10} {figure:<58} {goal:<26} {'met' if met else 'NOT MET'}")
h = load("handover")
target("handover", f"{h['ops_per_sec']:.0f} leaderships/s, hand-over p50 {h['wait']['p50_ms']:.2f} p99 {h['wait']['p99_ms']:.2f} ms",
       h["wait"]["p50_ms"] < 5 and h["errors"] == 0 and h["exclusion_violations"] == 0, "p50 < 5 ms")
b = load("heartbeat")
target("heartbeat", f"{b['ops_per_sec']:.0f}/s, p50 {b['latency']['p50_ms']:.2f} p99 {b['latency']['p99_ms']:.2f} ms",
       b["ops_per_sec"] >= 5000 and b["errors"] == 0, ">= 5000/s")
o = load("observe")
target("observe", f"p50 {o['wait']['p50_ms']:.2f} p99 {o['wait']['p99_ms']:.2f} max {o['wait']['max_ms']:.1f} ms",
       o["wait"]["p99_ms"] < 20 and o["errors"] == 0, "p99 < 20 ms")
k = load("keepalive")
share = next(p["busy_core_share"] for p in k["processes"] if p["name"] == leader)
entries = k["entries_per_sec"] or 0
target("keepalive", f"leader {share * 100:.1f}% of a core, {entries:.1f} entries/s, {k['ops_per_sec'] * 100:.0f} renewals/s",
       share < 0.10 and entries < 50 and k["errors"] == 0, "< 10% core, < 50 entries/s")
idle = max(p["idle_core_share"] or 0 for p in k["processes"])
target("idle", f"highest node {idle * 100:.1f}% of a core, 15 s after the last workload", idle < 0.02, "< 2% core")
print()
print("\n".join(rows))
print("PASS" if ok else "NOT MET")
sys.exit(0 if ok else 1)
PY
