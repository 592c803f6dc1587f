#!/usr/bin/env bash
# Runs a three-node lockstep cluster on loopback.
#
#   scripts/cluster.sh start|stop|status|kill N|restart N|clean
#
# Client ports 7001-7003, peer ports 17001-17003. Data, logs and pids live
# under $LOCKSTEP_CLUSTER_DIR (default: .cluster in the repository). `stop`
# keeps the data, so a later `start` recovers it; `clean` removes it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${LOCKSTEP_CLUSTER_DIR:-$repo/.cluster}
nodes=(1 2 3)
profile=${LOCKSTEP_PROFILE:-release}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}
# LOCKSTEP_BIN runs another build (for example an older one to compare
# against); the script then builds nothing.
bin=${LOCKSTEP_BIN:-$CARGO_TARGET_DIR/$profile/lockstep}

client_port() { echo $((7000 + $1)); }
peer_port() { echo $((17000 + $1)); }
peers=$(IFS=,; for n in "${nodes[@]}"; do printf '%s=127.0.0.1:%s,' "$n" "$(peer_port "$n")"; done)
peers=${peers%,}
clients=$(for n in "${nodes[@]}"; do printf '%s=127.0.0.1:%s,' "$n" "$(client_port "$n")"; done)
clients=${clients%,}

build() {
  "$repo/scripts/setup.sh"
  [ -z "${LOCKSTEP_BIN:-}" ] || return 0
  if [ ! -x "$bin" ]; then
    echo "building lockstep ($profile): the first build compiles RocksDB's C++ from source and takes about 20 minutes on two cores"
  fi
  if [ "$profile" = release ]; then
    cargo build --release -p lockstep --manifest-path "$repo/Cargo.toml"
  else
    cargo build -p lockstep --manifest-path "$repo/Cargo.toml"
  fi
}

pid_of() {
  local file=$dir/node$1/pid
  [ -f "$file" ] || return 1
  local pid
  pid=$(cat "$file")
  # Only a process we started: the pid must still run our binary.
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--id $1 "; then
    echo "$pid"
  else
    return 1
  fi
}

start_node() {
  local n=$1
  if pid_of "$n" >/dev/null; then
    echo "node $n already running (pid $(pid_of "$n"))"
    return
  fi
  mkdir -p "$dir/node$n"
  "$bin" --id "$n" \
    --listen "127.0.0.1:$(client_port "$n")" \
    --peer-listen "127.0.0.1:$(peer_port "$n")" \
    --peers "$peers" --client-addrs "$clients" \
    --data-dir "$dir/node$n/data" ${LOCKSTEP_EXTRA_ARGS:-} \
    >> "$dir/node$n/node.log" 2>&1 &
  echo $! > "$dir/node$n/pid"
  echo "node $n started (pid $!, port $(client_port "$n"), log $dir/node$n/node.log)"
}

stop_node() {
  local n=$1 signal=${2:-TERM}
  local pid
  if pid=$(pid_of "$n"); then
    kill -"$signal" "$pid"
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid"
    fi
    echo "node $n stopped ($signal)"
  fi
  rm -f "$dir/node$n/pid"
}

wait_ready() {
  for _ in $(seq 100); do
    for n in "${nodes[@]}"; do
      if redis-cli -p "$(client_port "$n")" info raft 2>/dev/null | grep -q '^raft_role:leader'; then
        echo "cluster ready: leader is node $n"
        return 0
      fi
    done
    sleep 0.2
  done
  echo "no leader elected yet; see the logs under $dir" >&2
  return 1
}

status() {
  for n in "${nodes[@]}"; do
    if pid=$(pid_of "$n"); then
      role=$(redis-cli -p "$(client_port "$n")" info raft 2>/dev/null | tr -d '\r' | awk -F: '/^raft_role|^raft_term|^raft_applied_index/ {printf "%s=%s ", $1, $2}')
      echo "node $n: running (pid $pid, port $(client_port "$n")) $role"
    else
      echo "node $n: stopped"
    fi
  done
}

case ${1:-} in
  start)
    build
    for n in "${nodes[@]}"; do start_node "$n"; done
    wait_ready
    ;;
  stop)
    for n in "${nodes[@]}"; do stop_node "$n"; done
    ;;
  status)
    status
    ;;
  kill)
    stop_node "${2:?usage: cluster.sh kill N}" KILL
    ;;
  restart)
    stop_node "${2:?usage: cluster.sh restart N}"
    start_node "$2"
    ;;
  clean)
    for n in "${nodes[@]}"; do stop_node "$n"; done
    rm -rf "$dir"
    echo "removed $dir"
    ;;
  *)
    echo "usage: $0 start|stop|status|kill N|restart N|clean" >&2
    exit 2
    ;;
esac
