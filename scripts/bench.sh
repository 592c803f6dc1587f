#!/usr/bin/env bash
# lockstep beside a single durable Redis (appendonly yes, appendfsync
# always) on this machine, with the same load generator (lockstep-bench),
# interleaved: each measurement runs on lockstep, then on Redis, and the
# whole set is repeated --runs times. lockstep's clients are spread over
# its three nodes (two thirds of the writes take a follower's forwarding
# hop, as users' do). Prints, per workload and client count, the medians
# of ops/s and p99 for both and their ratio; then single-client latency
# through the leader and through a follower; then the three nodes' CPU
# time per put.
#
#   scripts/bench.sh [--runs 3] [--seconds 10] [--clients "1 16 64"]
#                    [--workloads "put get lock-cycle spin-lock native-lock"]
#
# Workloads: put (a new key each time), get (existing keys, linearizable),
# lock-cycle (SET NX PX, then the EVALSHA compare-and-delete release, a new
# name each cycle), spin-lock (every client on one name, retrying 1 ms after
# a failed attempt; LOCKSTEP_BENCH_RETRY_MS changes it, redis-py's Lock
# sleeps 100 ms), native-lock (LOCK.ACQUIRE ... WAIT on one name: hand-overs
# per second; Redis has no such command, so its column is its spin-lock).
# Raw passes (JSON) go to $LOCKSTEP_BENCH_OUT (default: a new temporary
# directory, kept and printed at the end).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=3
seconds=10
client_counts="1 16 64"
workloads="put get lock-cycle spin-lock native-lock"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --clients) client_counts=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
retry_ms=${LOCKSTEP_BENCH_RETRY_MS:-1}

. "$repo/scripts/bench-cluster.sh"
out=${LOCKSTEP_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
redis_port=6390
redis-server --port $redis_port --dir "$work" --appendonly yes --appendfsync always \
  --save "" --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for _ in $(seq 50); do redis-cli -p $redis_port ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_pid=$(cat "$work/redis.pid")
trap 'kill "$redis_pid" 2>/dev/null || true; cleanup' EXIT

bench=$CARGO_TARGET_DIR/release/lockstep-bench
follower=""
for n in 1 2 3; do
  [ "node$n" != "$leader" ] && [ -z "$follower" ] && follower=127.0.0.1:$((7000 + n))
done
leader_addr=127.0.0.1:$((7000 + ${leader#node}))

# run SYSTEM WORKLOAD CLIENTS ENDPOINTS PIDS TAG RUN [ROW]: one pass, kept
# as TAG-SYSTEM-ROW-cCLIENTS-rRUN.json (ROW: the table row, default the
# workload).
run() {
  local system=$1 workload=$2 clients=$3 endpoints=$4 pids=$5 tag=$6 n=$7 row=${8:-$2}
  "$bench" --endpoints "$endpoints" --clients "$clients" --workload "$workload" \
    --seconds "$seconds" --warmup 1 --retry-ms "$retry_ms" --pids "$pids" \
    --label "$system" --json "$out/$tag-$system-$row-c$clients-r$n.json" >/dev/null
}

echo "lockstep (3 nodes, clients spread) vs Redis (appendfsync always); $runs interleaved runs of ${seconds} s each"
for n in $(seq "$runs"); do
  for workload in $workloads; do
    for clients in $client_counts; do
      run lockstep "$workload" "$clients" "$endpoints" "$pids" table "$n"
      redis_workload=$workload
      [ "$workload" = native-lock ] && redis_workload=spin-lock
      redis-cli -p $redis_port flushall >/dev/null
      run redis "$redis_workload" "$clients" "127.0.0.1:$redis_port" "redis=$redis_pid" table "$n" "$workload"
    done
  done
  for via in leader follower; do
    addr=$leader_addr
    [ $via = follower ] && addr=$follower
    for workload in put get; do
      run lockstep "$workload" 1 "$addr" "$pids" "single-$via" "$n"
    done
  done
done

python3 - "$out" "$runs" "$workloads" "$client_counts" <<'EOF'
import json, statistics, sys
out, runs, workloads, counts = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()

def passes(tag, system, workload, clients):
    found = []
    for n in range(1, runs + 1):
        with open(f"{out}/{tag}-{system}-{workload}-c{clients}-r{n}.json") as f:
            found.extend(json.load(f))
    return found

def med(values):
    return statistics.median(values) if values else float("nan")

print(f"\n{'workload':<13}{'clients':>8}{'lockstep ops/s (p99 ms)':>26}{'Redis ops/s (p99 ms)':>24}{'ratio':>8}   notes")
for workload in workloads:
    for clients in counts:
        ls = passes("table", "lockstep", workload, clients)
        rd = passes("table", "redis", workload, clients)
        l_ops, r_ops = med([p["ops_per_sec"] for p in ls]), med([p["ops_per_sec"] for p in rd])
        l_p99 = med([p["latency"]["p99_ms"] for p in ls])
        r_p99 = med([p["latency"]["p99_ms"] for p in rd])
        notes = []
        errors = sum(p["errors"] for p in ls) + sum(p["errors"] for p in rd)
        if errors:
            notes.append(f"{errors} errors")
        violations = sum(p["exclusion_violations"] for p in ls + rd)
        if workload in ("lock-cycle", "spin-lock", "native-lock"):
            notes.append(f"exclusion violations {violations}")
        if workload in ("spin-lock", "native-lock"):
            waits = [p["wait"]["max_ms"] for p in ls if p.get("wait")]
            if waits:
                notes.append(f"lockstep max wait {max(waits):.0f} ms")
        if workload == "native-lock":
            notes.append("Redis column: its spin lock")
        cpu = [p["server_us_per_op"] for p in ls if p.get("server_us_per_op")]
        redis_cpu = [p["server_us_per_op"] for p in rd if p.get("server_us_per_op")]
        if cpu and redis_cpu:
            notes.append(f"CPU/op: 3 nodes {med(cpu):.0f} us, Redis {med(redis_cpu):.0f} us")
        print(f"{workload:<13}{clients:>8}{l_ops:>16,.0f} ({l_p99:>6.2f}){r_ops:>15,.0f} ({r_p99:>5.2f}){l_ops / r_ops:>8.2f}   {'; '.join(notes)}")

print(f"\nsingle client, lockstep, medians of {runs} runs (ms)")
for via in ("leader", "follower"):
    for workload in ("put", "get"):
        ps = passes(f"single-{via}", "lockstep", workload, 1)
        print(f"  {workload} via the {via:<9} p50 {med([p['latency']['p50_ms'] for p in ps]):.3f}  p99 {med([p['latency']['p99_ms'] for p in ps]):.3f}  ({med([p['ops_per_sec'] for p in ps]):,.0f} ops/s)")
EOF
echo "raw passes: $out"
