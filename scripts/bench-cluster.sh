# Sourced by the benchmark scripts: installs what is missing, builds the
# release lockstep and lockstep-bench, starts a fresh 3-node cluster in a
# temporary directory (removed on exit) and sets
#   work     the temporary directory
#   pids     node1=<pid>,node2=<pid>,node3=<pid> (for lockstep-bench --pids)
#   leader   the leading node's name (node1..node3)
#   endpoints  the three client addresses
# `repo` must be set by the caller.

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}
work=$(mktemp -d)
export LOCKSTEP_CLUSTER_DIR=$work/cluster
cleanup() {
  "$repo/scripts/cluster.sh" clean >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$repo/scripts/setup.sh"
# shellcheck source=scripts/build-flags.sh
. "$repo/scripts/build-flags.sh"
cargo build "${release_build_flags[@]}" --manifest-path "$repo/Cargo.toml" >&2
"$repo/scripts/cluster.sh" start >/dev/null
pids=""
leader=""
for n in 1 2 3; do
  pids="$pids${pids:+,}node$n=$(cat "$LOCKSTEP_CLUSTER_DIR/node$n/pid")"
  role=$(redis-cli -p $((7000 + n)) info raft | tr -d '\r' | awk -F: '/^raft_role/ {print $2}')
  [ "$role" = leader ] && leader=node$n
done
endpoints=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
