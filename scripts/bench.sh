#!/usr/bin/env bash
# Prints every figure the issues ask for. Each section comes from a Go
# benchmark or a bench program that starts its own real components.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3)"
go test -run '^$' -bench . -benchmem -benchtime=1x ./... 2>&1 | grep -Ev '^(PASS|ok|\?)' || true
