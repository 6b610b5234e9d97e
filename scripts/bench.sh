#!/usr/bin/env bash
# Prints every figure the issues ask for, each next to its goal and, where
# one exists, a baseline measured in the same run. Every benchmark starts
# its own real components (redis-server, prometheus, alertmanager, agents).
#
# Packages run one at a time (-p 1): on 2 cores, benchmarks of two packages
# running side by side would measure each other.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3), load average $(cut -d' ' -f1-3 /proc/loadavg)"
filter() { grep -Ev '^(PASS|ok|\?|goos:|goarch:|cpu:)' || true; }
# Scenario benchmarks: one pass each, they loop and time internally. The
# dispatch benchmark runs bin/medic agent processes: make bench builds it
# first, and the benchmark refuses a binary older than the sources.
# queue's BenchmarkDispatchSlowDevices (1,000 devices at 20 ms, 100 at
# 50 ms; issue 18) is one of them: MEDIC_BENCH_SLOW_CONFIGS=N configs per
# device (default 40).
go test -p 1 -run '^$' -bench . -benchmem -benchtime=1x $(go list ./... | grep -v '/hcl$') 2>&1 | filter
# The HCL benchmarks: several passes, so the match figure is a warm one.
go test -run '^$' -bench . -benchmem -benchtime=5x ./hcl 2>&1 | filter
