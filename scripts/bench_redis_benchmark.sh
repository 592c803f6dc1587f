#!/usr/bin/env bash
# Benchmarks a 3-node lockstep cluster beside a single durable Redis
# (appendonly yes, appendfsync always) on this machine, same workloads, same
# client: redis-benchmark with 50 clients. Prints ops/s and p50/p99 latency
# side by side with the lockstep/Redis throughput ratio. The lock workloads
# compare a plain DEL release with the EVALSHA compare-and-delete release.
#
#   scripts/bench_redis_benchmark.sh [requests per workload, default 100000]
#
# LOCKSTEP_BENCH_NODE picks the lockstep node clients talk to: "leader"
# (default) or "follower" (every write then takes the forwarding hop).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
requests=${1:-100000}
clients=${LOCKSTEP_BENCH_CLIENTS:-50}
target=${LOCKSTEP_BENCH_NODE:-leader}
redis_port=6390
work=$(mktemp -d)
export LOCKSTEP_CLUSTER_DIR=$work/cluster

cleanup() {
  "$repo/scripts/cluster.sh" clean >/dev/null 2>&1 || true
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || { sleep 1; rm -rf "$work"; }
}
trap cleanup EXIT

"$repo/scripts/cluster.sh" start >/dev/null
port=""
for n in 1 2 3; do
  role=$(redis-cli -p $((7000 + n)) info raft | tr -d '\r' | awk -F: '/^raft_role/ {print $2}')
  if [ "$target" = leader ] && [ "$role" = leader ]; then port=$((7000 + n)); fi
  if [ "$target" = follower ] && [ "$role" = follower ]; then port=$((7000 + n)); fi
done
[ -n "$port" ] || { echo "no $target found" >&2; exit 1; }

redis-server --port $redis_port --dir "$work" --appendonly yes --appendfsync always \
  --save "" --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for _ in $(seq 50); do redis-cli -p $redis_port ping >/dev/null 2>&1 && break; sleep 0.1; done

lockstep_pids=$(cat "$LOCKSTEP_CLUSTER_DIR"/node*/pid)
redis_pid=$(cat "$work/redis.pid")

# CPU time (user + system, in clock ticks) used so far by the given pids.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# Prints "rps p50 p99 cpu" for one workload against one port, where cpu is
# the server processes' CPU time per request in microseconds (for lockstep,
# all three nodes together).
measure() {
  local port=$1; shift
  local pids=$lockstep_pids
  [ "$port" = "$redis_port" ] && pids=$redis_pid
  local before after result
  # shellcheck disable=SC2086
  before=$(cpu_ticks $pids)
  result=$(redis-benchmark -p "$port" -c "$clients" -n "$requests" -r 100000 --csv "$@" 2>/dev/null \
    | tail -n 1 | tr -d '"' | awk -F, '{print $2, $5, $7}')
  # shellcheck disable=SC2086
  after=$(cpu_ticks $pids)
  echo "$result $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN { printf "%.0f", t * 1e6 / hz / n }')"
}

# The compare-and-delete release every Lua-based lock client sends.
release='if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end'
sha=$(redis-cli -p "$port" SCRIPT LOAD "$release")
redis-cli -p "$redis_port" SCRIPT LOAD "$release" >/dev/null

workloads=(
  "SET|-t set -d 16"
  "GET|-t get -d 16"
  "lock acquire (SET NX PX)|SET lock:__rand_int__ token NX PX 30000"
  "lock release (DEL)|DEL lock:__rand_int__"
  "lock acquire again|SET lock:__rand_int__ token NX PX 30000"
  "lock release (EVALSHA)|EVALSHA $sha 1 lock:__rand_int__ token"
)
native_workloads=(
  "LOCK.TRY|LOCK.TRY nlock:__rand_int__ owner 30000"
  "LOCK.RELEASE|LOCK.RELEASE nlock:__rand_int__ owner"
)

echo "lockstep: 3 nodes, clients on the $target (port $port); redis: appendfsync always"
echo "requests per workload: $requests, clients: $clients, cores: $(nproc)"
echo "cpu: server CPU time per request in microseconds (lockstep: the three nodes together)"
printf '%-26s %12s %9s %9s %5s   %12s %9s %9s %5s   %7s\n' workload "lockstep/s" p50ms p99ms cpu "redis/s" p50ms p99ms cpu ratio
for spec in "${workloads[@]}"; do
  name=${spec%%|*}
  args=${spec#*|}
  # shellcheck disable=SC2086
  read -r l_rps l_p50 l_p99 l_cpu <<< "$(measure "$port" $args)"
  # shellcheck disable=SC2086
  read -r r_rps r_p50 r_p99 r_cpu <<< "$(measure "$redis_port" $args)"
  ratio=$(awk -v a="$l_rps" -v b="$r_rps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  printf '%-26s %12s %9s %9s %5s   %12s %9s %9s %5s   %7s\n' "$name" "$l_rps" "$l_p50" "$l_p99" "$l_cpu" "$r_rps" "$r_p50" "$r_p99" "$r_cpu" "$ratio"
done

echo
echo "native locks, uncontended (lockstep only)"
for spec in "${native_workloads[@]}"; do
  name=${spec%%|*}
  args=${spec#*|}
  # shellcheck disable=SC2086
  read -r l_rps l_p50 l_p99 l_cpu <<< "$(measure "$port" $args)"
  printf '%-26s %12s %9s %9s %5s\n' "$name" "$l_rps" "$l_p50" "$l_p99" "$l_cpu"
done

echo
echo "native locks, contended: 64 clients on one lock, spread over the 3 nodes"
python3 "$repo/scripts/lock_contention.py" 7001,7002,7003 64 10
