#!/usr/bin/env bash
# Runs a three-node lockstep cluster on loopback.
#
#   scripts/cluster.sh start|stop|status|kill N|restart N|clean
#   scripts/cluster.sh add N|remove N|transfer N|maintain N
#
# Client ports 7001-7003, peer ports 17001-17003, metrics and health
# (HTTP) 9001-9003, ZooKeeper clients 2181-2183 (node N: 7000+N, 17000+N,
# 9000+N, 2180+N). Data, logs and pids live under $LOCKSTEP_CLUSTER_DIR (default:
# .cluster in the repository). `stop` keeps the data, so a later `start`
# recovers it; `clean` removes it.
#
# `add N` starts node N (4, 5, ...) with --join, waits until it has caught
# up and promotes it to a voter; `remove N` removes node N from the
# membership (through the leader) and stops it. `transfer N` moves
# leadership to node N; `maintain N` restarts node N, first moving
# leadership away if it leads.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${LOCKSTEP_CLUSTER_DIR:-$repo/.cluster}
nodes=(1 2 3)
# Nodes added with `add` (beyond the first three) are remembered here.
extra_nodes() {
  [ -f "$dir/added" ] && sort -un "$dir/added" || true
}
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
    # shellcheck source=scripts/build-flags.sh
    . "$repo/scripts/build-flags.sh"
    cargo build "${release_build_flags[@]}" --manifest-path "$repo/Cargo.toml"
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
  # Peers authenticate with a secret every member shares.
  if [ ! -s "$dir/cluster.secret" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/cluster.secret")
  fi
  local membership=(--peers "$peers" --client-addrs "$clients")
  # LOCKSTEP_TLS_DIR (server.pem, server.key): TLS clients on 7440+N too.
  local tls=()
  if [ -n "${LOCKSTEP_TLS_DIR:-}" ]; then
    tls=(--tls-listen "127.0.0.1:$((7440 + n))" --tls-cert-file "$LOCKSTEP_TLS_DIR/server.pem"
      --tls-key-file "$LOCKSTEP_TLS_DIR/server.key")
  fi
  if [ "$n" -gt 3 ]; then
    # A node beyond the first three joins through any running member.
    local contact
    contact=$(any_member "$n") || { echo "no running member to join through" >&2; return 1; }
    membership=(--join "127.0.0.1:$(client_port "$contact")")
  fi
  # Every known member's ZooKeeper address, for /zookeeper/config.
  local zk_addrs
  zk_addrs=$(for m in $(printf '%s\n' "${nodes[@]}" $(extra_nodes) "$n" | sort -un); do
    printf '%s=127.0.0.1:%s,' "$m" "$((2180 + m))"; done)
  "$bin" --id "$n" \
    --listen "127.0.0.1:$(client_port "$n")" \
    --peer-listen "127.0.0.1:$(peer_port "$n")" \
    "${membership[@]}" \
    --metrics-listen "127.0.0.1:$((9000 + n))" \
    --zk-listen "127.0.0.1:$((2180 + n))" --zk-addrs "${zk_addrs%,}" \
    --cluster-secret-file "$dir/cluster.secret" "${tls[@]}" \
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

# Every node of the membership: the founders and the added, less the removed.
all_nodes() {
  { printf '%s\n' "${nodes[@]}"; extra_nodes; } | sort -un | grep -vxF -f <(removed_nodes; echo 0)
}

removed_nodes() {
  [ -f "$dir/removed" ] && cat "$dir/removed" || true
}

# A running node other than $1 that answers.
any_member() {
  for m in $(all_nodes); do
    [ "$m" = "$1" ] && continue
    if redis-cli -p "$(client_port "$m")" ping 2>/dev/null | grep -q PONG; then
      echo "$m"
      return 0
    fi
  done
  return 1
}

leader() {
  for m in $(all_nodes); do
    if redis-cli -p "$(client_port "$m")" info raft 2>/dev/null | grep -q '^raft_role:leader'; then
      echo "$m"
      return 0
    fi
  done
  return 1
}

# Runs a command on the leader, retrying while there is none.
on_leader() {
  local l
  for _ in $(seq 50); do
    if l=$(leader); then
      redis-cli -p "$(client_port "$l")" "$@"
      return
    fi
    sleep 0.2
  done
  echo "no leader" >&2
  return 1
}

add() {
  local n=$1
  [ "$n" -gt 3 ] || { echo "nodes 1-3 are the founding members; add 4 or more" >&2; exit 2; }
  build
  echo "$n" >> "$dir/added"
  start_node "$n"
  # Promotion is refused until the learner has caught up.
  for _ in $(seq 200); do
    reply=$(on_leader CLUSTER.PROMOTE "$n" 2>&1 || true)
    case $reply in
      OK|*"already a voter"*) echo "node $n is a voter"; return 0 ;;
    esac
    sleep 0.3
  done
  echo "node $n did not catch up: $reply" >&2
  return 1
}

remove() {
  local n=$1 reply
  reply=$(on_leader CLUSTER.REMOVE "$n")
  case $reply in
    OK) echo "node $n removed from the membership" ;;
    *) echo "$reply" >&2; return 1 ;;
  esac
  stop_node "$n"
  # Ids are never reused: a removed node is not started again.
  echo "$n" >> "$dir/removed"
}

transfer() {
  local n=$1
  redis-cli -p "$(client_port "$(any_member 0)")" CLUSTER.TRANSFER "$n"
}

# Restarts node N for maintenance, moving leadership away first.
maintain() {
  local n=$1 l
  if l=$(leader) && [ "$l" = "$n" ]; then
    local to
    to=$(any_member "$n")
    echo "node $n leads: moving leadership to node $to"
    redis-cli -p "$(client_port "$to")" CLUSTER.TRANSFER "$to"
  fi
  stop_node "$n"
  start_node "$n"
}

wait_ready() {
  local n
  for _ in $(seq 100); do
    if n=$(leader); then
      echo "cluster ready: leader is node $n"
      return 0
    fi
    sleep 0.2
  done
  echo "no leader elected yet; see the logs under $dir" >&2
  return 1
}

status() {
  for n in $(all_nodes); do
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
    for n in $(all_nodes); do [ "$n" -gt 3 ] || start_node "$n"; done
    wait_ready
    for n in $(all_nodes); do [ "$n" -le 3 ] || start_node "$n"; done
    ;;
  add)
    mkdir -p "$dir"
    if removed_nodes | grep -qx "${2:-x}"; then
      echo "node $2 was removed; ids are never reused, add another" >&2
      exit 2
    fi
    add "${2:?usage: cluster.sh add N}"
    ;;
  remove)
    remove "${2:?usage: cluster.sh remove N}"
    ;;
  transfer)
    transfer "${2:?usage: cluster.sh transfer N}"
    ;;
  maintain)
    maintain "${2:?usage: cluster.sh maintain N}"
    ;;
  stop)
    for n in $(all_nodes); do stop_node "$n"; done
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
    for n in $(all_nodes); do stop_node "$n"; done
    rm -rf "$dir"
    echo "removed $dir"
    ;;
  *)
    echo "usage: $0 start|stop|status|kill N|restart N|clean|add N|remove N|transfer N|maintain N" >&2
    exit 2
    ;;
esac
