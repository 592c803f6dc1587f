#!/usr/bin/env bash
# How a new node catches up by snapshot: fills a fresh 3-node cluster with
# about MB megabytes of values (1 KiB each), adds node 4 (cluster.sh add:
# --join, snapshot, promote) and reports the time to a caught-up voter and
# the peak memory (VmHWM) of the leader and the new node.
#
#   scripts/bench_catchup.sh [MB, default 200]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
mb=${1:-200}
. "$repo/scripts/bench-cluster.sh"
keys=$((mb * 1024))
redis-benchmark -p 7001 -c 50 -n "$keys" -r 1000000000 -d 1024 -t set -q >/dev/null
leader=${leader#node}
hwm() { awk '/^VmHWM/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
rss() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
leader_pid=$(cat "$LOCKSTEP_CLUSTER_DIR/node$leader/pid")
size=$(redis-cli -p 7001 dbsize)
echo "keyspace: $size keys of 1 KiB; leader node $leader RSS $(rss "$leader_pid") MiB, peak $(hwm "$leader_pid") MiB before"
started=$(date +%s.%N)
"$repo/scripts/cluster.sh" add 4 >/dev/null
ended=$(date +%s.%N)
new_pid=$(cat "$LOCKSTEP_CLUSTER_DIR/node4/pid")
echo "node 4 caught up and promoted in $(awk -v a="$started" -v b="$ended" 'BEGIN {printf "%.1f", b - a}') s"
echo "peak memory: leader $(hwm "$leader_pid") MiB, node 4 $(hwm "$new_pid") MiB (RSS now $(rss "$new_pid") MiB)"
echo "node 4 keys: $(redis-cli -p 7004 dbsize)"
