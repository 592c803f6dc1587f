#!/usr/bin/env bash
# Runs many seeds of the deterministic simulation (the real replication
# core and engine in one thread, simulated network, clocks and crashes).
# A failure prints its seed; replay it with --seed.
#
#   scripts/simulate.sh [--seeds N] [--first S] [--ms VIRTUAL_MS]
#   scripts/simulate.sh --seed S [--nodes 3|5] [--ms VIRTUAL_MS]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export LOCKSTEP_SIM_SEEDS=1000 LOCKSTEP_SIM_FIRST=1 LOCKSTEP_SIM_MS=60000
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) export LOCKSTEP_SIM_SEEDS=$2; shift 2 ;;
    --first) export LOCKSTEP_SIM_FIRST=$2; shift 2 ;;
    --ms) export LOCKSTEP_SIM_MS=$2; shift 2 ;;
    --seed) export LOCKSTEP_SIM_SEED=$2; shift 2 ;;
    --nodes) export LOCKSTEP_SIM_NODES=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cd "$repo"
"$repo/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}
exec cargo test --release -p lockstep-sim --test seeds -- --nocapture --test-threads=2
