#!/usr/bin/env bash
# Installs what medic's tests, benchmarks and demo need and are missing.
# Uses apt-get when it can (root or passwordless sudo); otherwise prints the
# exact command and fails, so a bare machine never runs a weaker test suite.
set -euo pipefail

# binary -> Debian package
declare -A pkg=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [redis-benchmark]=redis-tools
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [chromium]=chromium
  [curl]=curl
  [wrk]=wrk
)

missing=()
for bin in "${!pkg[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("${pkg[$bin]}")
done
if ! command -v go >/dev/null 2>&1; then
  echo "deps: go is not on PATH; install Go 1.26 (https://go.dev/dl/)" >&2
  exit 1
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all prerequisites present"
  exit 0
fi
# unique, sorted
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing ${missing[*]}; install them with your package manager (Debian: $cmd)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "deps: missing ${missing[*]}; run: sudo apt-get update && sudo $cmd" >&2
    exit 1
  fi
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo $cmd
# Debian's packages start services we do not want competing for ports:
# stopped now, and disabled so that they do not start again at the next
# boot.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo systemctl stop "$svc" >/dev/null 2>&1 || true
done
echo "deps: done"
