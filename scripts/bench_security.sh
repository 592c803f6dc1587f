#!/usr/bin/env bash
# What authentication and TLS cost: SET and GET with 50 clients against the
# leader of a 3-node lockstep cluster, three ways in turn (plaintext as the
# unrestricted default user; plaintext as a user whose rules are checked on
# every command; TLS), repeated, medians printed with the cost against
# plaintext. redis-benchmark is the client (it speaks TLS and ACL AUTH).
#
#   scripts/bench_security.sh [requests per run, default 100000] [runs, default 3]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
requests=${1:-100000}
runs=${2:-3}
clients=50
# The certificates live apart: the cluster starts with them.
export LOCKSTEP_TLS_DIR
LOCKSTEP_TLS_DIR=$(mktemp -d)
trap 'rm -rf "$LOCKSTEP_TLS_DIR"' EXIT

# A throwaway CA and a server certificate for 127.0.0.1 and localhost.
cd "$LOCKSTEP_TLS_DIR"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 2 -extfile san.ext -out server.pem 2>/dev/null
cd "$repo"

# Sets its own exit trap (the cluster and its directory); the certificate
# directory goes with it.
. "$repo/scripts/bench-cluster.sh"
trap 'cleanup; rm -rf "$LOCKSTEP_TLS_DIR"' EXIT
leader=${leader#node}
port=$((7000 + leader))
tls_port=$((7440 + leader))
# Rules that must be evaluated for every command (not the unrestricted
# fast path): everything but FLUSHALL, on every key and channel.
redis-cli -p "$port" ACL SETUSER bench on '>bench-password' '~*' '&*' +@all -flushall >/dev/null

rps() { # mode test -> requests per second
  local mode=$1 test=$2 args=(-c "$clients" -n "$requests" -r 100000 -t "$test" --csv)
  case $mode in
    plain) redis-benchmark -p "$port" "${args[@]}" ;;
    acl) redis-benchmark -p "$port" --user bench -a bench-password "${args[@]}" ;;
    tls) redis-benchmark -p "$tls_port" --tls --cacert "$LOCKSTEP_TLS_DIR/ca.pem" --sni localhost "${args[@]}" ;;
  esac 2>/dev/null | awk -F'","' 'NR == 2 {print $2}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

declare -A results
for run in $(seq "$runs"); do
  for test in set get; do
    for mode in plain acl tls; do
      value=$(rps "$mode" "$test")
      results[$mode.$test]+="$value "
      echo "run $run: $test $mode ${value} ops/s" >&2
    done
  done
done

printf '\n%-5s %14s %14s %8s %14s %8s\n' test plaintext "ACL-checked" cost TLS cost
for test in set get; do
  plain=$(tr ' ' '\n' <<< "${results[plain.$test]}" | grep . | median)
  acl=$(tr ' ' '\n' <<< "${results[acl.$test]}" | grep . | median)
  tls=$(tr ' ' '\n' <<< "${results[tls.$test]}" | grep . | median)
  cost() { awk -v base="$plain" -v v="$1" 'BEGIN {printf "%.1f%%", (base - v) * 100 / base}'; }
  printf '%-5s %14s %14s %8s %14s %8s\n' "$test" "$plain" "$acl" "$(cost "$acl")" "$tls" "$(cost "$tls")"
done
echo "(medians of $runs interleaved runs of $requests requests, $clients clients, against the leader)"
