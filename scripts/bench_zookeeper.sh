#!/usr/bin/env bash
# lockstep's ZooKeeper front end beside a real three-node ZooKeeper 3.8
# ensemble (Debian's package; forceSync on, as by default) on this
# machine, with the same load generator (lockstep-bench's zk-* workloads,
# the zookeeper-client crate, one session per client, clients spread over
# the three servers), interleaved: each measurement runs on lockstep, then
# on ZooKeeper, and the whole set is repeated --runs times. Prints, per
# workload and client count, the medians of ops/s and p99 for both, their
# ratio, and each side's server CPU time per operation.
#
#   scripts/bench_zookeeper.sh [--runs 3] [--seconds 10] [--clients "1 16 64"]
#                              [--workloads "zk-get zk-set zk-create zk-lock"]
#
# Workloads: zk-get (getData of one of 10,000 nodes), zk-set (setData of
# one of them), zk-create (a persistent sequential create under one shared
# parent), zk-lock (the kazoo / Curator lock recipe, uncontended: create an
# ephemeral sequential child, list the children, delete it).
# ZooKeeper's JVM is warmed with one unmeasured pass of every workload
# first. Raw passes (JSON) go to $LOCKSTEP_BENCH_OUT (default: a new
# temporary directory, kept and printed at the end).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=3
seconds=10
client_counts="1 16 64"
workloads="zk-get zk-set zk-create zk-lock"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --clients) client_counts=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

"$repo/scripts/setup.sh" --tests
. "$repo/scripts/bench-cluster.sh"
out=${LOCKSTEP_BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
lockstep_endpoints=127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183

# A real ensemble: client ports 2291-2293.
zk_pids=""
zk_endpoints=""
for i in 1 2 3; do
  dir=$work/zookeeper$i
  mkdir -p "$dir/data"
  echo "$i" > "$dir/data/myid"
  cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$((2290 + i))
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr
maxClientCnxns=0
server.1=127.0.0.1:2881:3881
server.2=127.0.0.1:2882:3882
server.3=127.0.0.1:2883:3883
CFG
  java -Xmx512m -cp /usr/share/java/zookeeper.jar \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" > "$dir/log" 2>&1 &
  zk_pids="$zk_pids${zk_pids:+,}zookeeper$i=$!"
  zk_endpoints="$zk_endpoints${zk_endpoints:+,}127.0.0.1:$((2290 + i))"
done
stop_zookeeper() {
  for spec in ${zk_pids//,/ }; do kill "${spec#*=}" 2>/dev/null || true; done
}
trap 'stop_zookeeper; cleanup' EXIT
mode() { # port: the server's Mode line, if it answers
  python3 - "$1" <<'PY' 2>/dev/null || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"srvr")
text = b""
while chunk := s.recv(4096):
    text += chunk
print(next((l.split(": ")[1] for l in text.decode().splitlines() if l.startswith("Mode")), ""))
PY
}
for _ in $(seq 120); do
  modes=$(for i in 1 2 3; do mode $((2290 + i)); done | sort | tr '\n' ' ')
  [ "$modes" = "follower follower leader " ] && break
  sleep 0.5
done
[ "$modes" = "follower follower leader " ] || { echo "ZooKeeper did not form an ensemble: $modes" >&2; exit 1; }

bench=$CARGO_TARGET_DIR/release/lockstep-bench
# run SYSTEM WORKLOAD CLIENTS ENDPOINTS PIDS RUN: one pass, kept as
# SYSTEM-WORKLOAD-cCLIENTS-rRUN.json.
run() {
  local system=$1 workload=$2 clients=$3 endpoints=$4 pids=$5 n=$6
  "$bench" --endpoints "$endpoints" --clients "$clients" --workload "$workload" \
    --seconds "$seconds" --warmup 1 --pids "$pids" --label "$system" \
    --json "$out/$system-$workload-c$clients-r$n.json" >/dev/null
}

echo "lockstep (3 nodes) vs ZooKeeper 3.8 (3 servers), ZooKeeper protocol, clients spread; $runs interleaved runs of ${seconds} s each"
for workload in $workloads; do
  "$bench" --endpoints "$zk_endpoints" --clients 16 --workload "$workload" --seconds 5 \
    --warmup 1 >/dev/null
done
for n in $(seq "$runs"); do
  for workload in $workloads; do
    for clients in $client_counts; do
      run lockstep "$workload" "$clients" "$lockstep_endpoints" "$pids" "$n"
      run zookeeper "$workload" "$clients" "$zk_endpoints" "$zk_pids" "$n"
    done
  done
done

python3 - "$out" "$runs" "$workloads" "$client_counts" <<'EOF'
import json, statistics, sys
out, runs, workloads, counts = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()

def passes(system, workload, clients):
    found = []
    for n in range(1, runs + 1):
        with open(f"{out}/{system}-{workload}-c{clients}-r{n}.json") as f:
            found.extend(json.load(f))
    return found

def med(values):
    return statistics.median(values) if values else float("nan")

print(f"\n{'workload':<11}{'clients':>8}{'lockstep ops/s (p99 ms)':>26}{'ZooKeeper ops/s (p99 ms)':>27}{'ratio':>8}   notes")
for workload in workloads:
    for clients in counts:
        ls = passes("lockstep", workload, clients)
        zk = passes("zookeeper", workload, clients)
        l_ops, z_ops = med([p["ops_per_sec"] for p in ls]), med([p["ops_per_sec"] for p in zk])
        l_p99 = med([p["latency"]["p99_ms"] for p in ls])
        z_p99 = med([p["latency"]["p99_ms"] for p in zk])
        notes = []
        errors = sum(p["errors"] for p in ls + zk)
        if errors:
            notes.append(f"{errors} errors")
        l_cpu = [p["server_us_per_op"] for p in ls if p.get("server_us_per_op")]
        z_cpu = [p["server_us_per_op"] for p in zk if p.get("server_us_per_op")]
        if l_cpu and z_cpu:
            notes.append(f"CPU/op: lockstep {med(l_cpu):.0f} us, ZooKeeper {med(z_cpu):.0f} us")
        print(f"{workload:<11}{clients:>8}{l_ops:>16,.0f} ({l_p99:>6.2f}){z_ops:>17,.0f} ({z_p99:>6.2f}){l_ops / z_ops:>8.2f}   {'; '.join(notes)}")
EOF
echo "raw passes: $out"
