#!/usr/bin/env bash
# Installs what building and testing lockstep needs, when it is missing:
# clang and libclang (RocksDB's bindings), redis-tools and redis-server (the
# CLI, redis-benchmark and the reference server), python3 with redis-py.
set -euo pipefail

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
ldconfig -p 2>/dev/null | grep -q libclang || need+=(libclang-dev)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# redis-py, for the tests that run real Python lock clients.
if ! python3 -c 'import redis' >/dev/null 2>&1; then
  echo "installing: redis-py"
  if ! python3 -m pip install --quiet --disable-pip-version-check 'redis>=5,<7' 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-redis >/dev/null
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust from your distribution or rustup" >&2
  exit 1
fi
