#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, then runs unit, store
# contract, engine, simulation, end-to-end (real processes over TCP) and
# fault tests.
#
# Every cargo command here (and in soak.sh) selects the same packages and
# features, so RocksDB's C++ is compiled once: another selection would
# unify dependency features differently and build it again.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
"$repo/scripts/setup.sh" --tests
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}
# shellcheck source=scripts/build-flags.sh
. "$repo/scripts/build-flags.sh"
if [ ! -d "$CARGO_TARGET_DIR/debug/build" ]; then
  echo "first build: compiles RocksDB's C++ from source (about 15-20 minutes on two cores)"
fi
# End-to-end tests start the lockstep and lockstep-unsafe binaries: build
# them (and everything else) first.
cargo build "${test_build_flags[@]}"
cargo test "${test_build_flags[@]}" -- --test-threads="${LOCKSTEP_TEST_THREADS:-2}"
