#!/usr/bin/env bash
# Long fault-injection runs against real lockstep processes: a workload of
# registers, locks and a queue under each nemesis in turn, then a verdict
# table (linearizability, fencing tokens, queue, replica convergence,
# election and recovery times). Exits non-zero if any run fails.
#
#   scripts/soak.sh [--minutes N] [--nemesis kill,kill-all,pause,partition,membership]
#                   [--nodes 3|5] [--seed S]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
minutes=10
nemesis=kill,kill-all,pause,partition,membership
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --nemesis) nemesis=$2; shift 2 ;;
    --nodes|--seed) extra+=("$1" "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cd "$repo"
"$repo/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}
# The same build as scripts/test.sh: another package selection would pick
# other features and rebuild RocksDB from source.
. "$repo/scripts/build-flags.sh"
cargo build "${test_build_flags[@]}"
exec "$CARGO_TARGET_DIR/debug/soak" --seconds $((minutes * 60)) --nemesis "$nemesis" "${extra[@]}"
