#!/usr/bin/env bash
# Fuzzes lockstep's parsers and decoders with cargo fuzz (libFuzzer, nightly
# toolchain): RESP framing, command parsing and execution, script limits,
# peer frames, stored records. Each target runs for the given minutes on
# the committed corpus in fuzz/corpus/<target>, which then keeps what the
# run found, minimised. Crashes land in fuzz/artifacts/<target>.
#
#   scripts/fuzz.sh [--minutes N] [target ...]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
minutes=10
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(resp_frames commands scripts peer_frames stored_records)

"$repo/scripts/setup.sh"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}/fuzz
# Known false leak reports (see the file).
export LSAN_OPTIONS="suppressions=$repo/fuzz/lsan-suppressions.txt"

cd "$repo/fuzz"
for target in "${targets[@]}"; do
  echo "== $target: $minutes min"
  # Scripts may run to their instruction budget: allow slow inputs.
  cargo +nightly fuzz run "$target" -- \
    -max_total_time=$((minutes * 60)) -timeout=60 -rss_limit_mb=4096 -print_final_stats=1
  cargo +nightly fuzz cmin "$target"
done
