#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each: a crash
# fails the run. Seed corpora live in each package's testdata/fuzz/.
set -euo pipefail
fuzztime=${1:-15s}
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz: $pkg $target ($fuzztime)"
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"; then
      status=1
    fi
  done
done
exit $status
