#!/usr/bin/env bash
# Runs one workload for several passes against a fresh 3-node cluster and
# reports each pass's throughput and latency, then every node's CPU while
# idle after it. Costs that grow with history show here: a later pass
# slower than the first, or nodes that keep working once the load stops.
#
#   scripts/bench_passes.sh [--passes 5] [--seconds 20] [--clients 16]
#                           [--workload lock-cycle] [--idle 10]
#
# Targets: every node below 2% of a core from 5 s after a pass ends; the
# last pass within 10% of the first. Exits non-zero if either is missed.
# LOCKSTEP_BIN runs another lockstep build (see scripts/cluster.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
passes=5
seconds=20
clients=16
workload=lock-cycle
idle=10
while [ $# -gt 0 ]; do
  case "$1" in
    --passes) passes=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --workload) workload=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-cluster.sh
. "$repo/scripts/bench-cluster.sh"
echo "lockstep: 3 nodes ($(${LOCKSTEP_BIN:-$CARGO_TARGET_DIR/release/lockstep} --version)), $clients clients over all nodes, $workload, $passes passes of ${seconds}s, cores: $(nproc)"
"$CARGO_TARGET_DIR/release/lockstep-bench" \
  --endpoints "$endpoints" \
  --clients "$clients" --workload "$workload" --seconds "$seconds" --warmup 1 \
  --passes "$passes" --idle-delay 5 --idle-seconds "$idle" --pids "$pids" \
  --json "$work/passes.json" | tee "$work/passes.txt"

python3 - "$work/passes.json" <<'PY'
import json, sys
passes = json.load(open(sys.argv[1]))
first, last = passes[0]["ops_per_sec"], passes[-1]["ops_per_sec"]
worst_idle = max(p["idle_core_share"] or 0 for pass_ in passes for p in pass_["processes"])
ratio = last / first if first else 0
print(f"last pass / first pass throughput: {ratio:.2f} (target >= 0.90)")
print(f"highest idle CPU of any node after any pass: {worst_idle * 100:.1f}% of a core (target < 2%)")
ok = ratio >= 0.9 and worst_idle < 0.02
print("PASS" if ok else "NOT MET")
sys.exit(0 if ok else 1)
PY
