#!/bin/sh
# bench/lb.sh: certificate swap under continuous TLS handshakes, HAProxy's
# runtime API (certnode haproxy:) against an nginx reload (certnode
# reload:). Both run on loopback, each with 4 workers opening a new TLS
# connection in a loop; prints failed handshakes, the slowest handshake
# and the time until the new certificate is served, for each of REPS runs.
# Needs /usr/sbin/haproxy and /usr/sbin/nginx (scripts/deps.sh).
set -eu
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
REPS=${REPS:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
LB_BENCH_OUT=$out go test -count="$REPS" -run 'TestHAProxyHotSwap$|TestNginxReloadUnderLoad$' ./internal/install >/dev/null
sort "$out"
