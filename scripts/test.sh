#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, then runs unit, store
# contract, engine and end-to-end (real processes over TCP) tests.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
"$repo/scripts/setup.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}
# The fault tests' negative controls run lockstep-unsafe (debug only, with
# switches that break guarantees on purpose). Built first: the workspace
# build that follows rebuilds the plain lockstep binary without them.
cargo build -p lockstep --features unsafe-test-switches --bins
# End-to-end tests start the lockstep binary; build it first.
cargo build --workspace --all-targets
cargo test --workspace --all-targets -- --test-threads="${LOCKSTEP_TEST_THREADS:-2}"
