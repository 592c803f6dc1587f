#!/usr/bin/env bash
# Long differential runs: the same random command sequence to a lockstep
# node and to a real redis-server, replies compared (see
# integration-tests/tests/differential.rs for what may differ).
#
#   scripts/differential.sh [--commands N] [--seed S] [--seeds K]
#
# --seeds K runs K sequences from S on. A failure prints its seed and the
# commands that led to the first different reply.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
commands=100000
seed=1
seeds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --commands) commands=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cd "$repo"
"$repo/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}
# shellcheck source=scripts/build-flags.sh
. "$repo/scripts/build-flags.sh"
cargo build "${test_build_flags[@]}"
for ((s = seed; s < seed + seeds; s++)); do
  LOCKSTEP_DIFF_SEED=$s LOCKSTEP_DIFF_COMMANDS=$commands \
    cargo test "${test_build_flags[@]}" -- replies_match_redis --nocapture 2>&1 \
    | grep -E '^differential:|^Error|lockstep:|redis:|last commands|^  '
done
