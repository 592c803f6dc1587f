#!/usr/bin/env bash
# Runs kazoo's own test suite (the modules of its core and recipes) against
# lockstep: kazoo's harness starts a three-server "ZooKeeper" with
# `java ... QuorumPeerMain zoo.cfg`, and integration-tests/kazoo/java, first
# on PATH, starts a lockstep node from each zoo.cfg instead.
#
#   scripts/kazoo_suite.sh [--reference] [pytest args...]
#
# (default: the modules below). --reference runs the same tests against
# Debian's ZooKeeper 3.8 instead (the harness's own `java`, with the
# package's jars and the Netty ones its zoo.cfg needs), to tell which
# failures are lockstep's. Prints pytest's summary; the JUnit XML is kept
# in $LOCKSTEP_KAZOO_OUT (default: a new temporary directory).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
reference=no
if [ "${1:-}" = --reference ]; then
  reference=yes
  shift
fi
"$repo/scripts/setup.sh" --tests >/dev/null
if [ "$reference" = no ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/lockstep-target}
  # shellcheck source=scripts/build-flags.sh
  . "$repo/scripts/build-flags.sh"
  cargo build "${release_build_flags[@]}" --manifest-path "$repo/Cargo.toml" 2>&1 | grep -E "^error" -A5 || true
  export LOCKSTEP_BIN=$CARGO_TARGET_DIR/release/lockstep
fi
# kazoo's test extras (its harness imports pyjks and pyOpenSSL).
test_deps="pytest>=7 pytest-timeout objgraph pyjks pyopenssl>=23,<24 cryptography<42"
python3 -m pip install --quiet --disable-pip-version-check $test_deps 2>/dev/null \
  || python3 -m pip install --quiet --user --break-system-packages $test_deps
tests=$(python3 -c 'import kazoo.tests, os; print(os.path.dirname(kazoo.tests.__file__))')
out=${LOCKSTEP_KAZOO_OUT:-$(mktemp -d)}
if [ "$reference" = yes ]; then
  jars=/usr/share/java
  export ZOOKEEPER_CLASSPATH=$jars/zookeeper.jar:$jars/netty-codec.jar:$jars/netty-resolver.jar:$jars/slf4j-simple.jar
  export ZOOKEEPER_VERSION=3.8.0
else
  export PATH="$repo/integration-tests/kazoo:$PATH"
  export ZOOKEEPER_VERSION=3.8.4 ZOOKEEPER_PATH=/nonexistent
fi
modules=(client connection lock election barrier queue counter party partitioner watchers cache lease)
if [ $# -eq 0 ]; then
  set -- $(for m in "${modules[@]}"; do echo "$tests/test_$m.py"; done)
fi
cd "$out"
python3 -m pytest -q -p no:cacheprovider --timeout 120 --junitxml="$out/kazoo.xml" -o junit_family=xunit1 "$@" || true
echo "results: $out/kazoo.xml"
