#!/usr/bin/env bash
# mandate against its peers, one command (bench/peers/README.md): installs Node 22 and the peer
# servers locally (pinned in bench/peers/package-lock.json, never globally), builds mandate and
# the driver, and runs the driver (target/<profile>/mandate-peers) with the arguments given.
# Usage: bench/peers/run.sh [--debug] [mandate-peers flags]
#   bench/peers/run.sh                          # the full run: 5 rounds × 10 s per target and scenario
#   bench/peers/run.sh --debug --smoke          # CI: debug build, 1 round of 1 s (about a minute)
#   bench/peers/run.sh --rounds 3 --scenarios refresh,code --no-postgres
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
if [ "${1:-}" = "--debug" ]; then
  profile=debug
  shift
fi

if [ ! -x bench/peers/node_modules/.bin/node ] \
  || [ bench/peers/package-lock.json -nt bench/peers/node_modules/.package-lock.json ]; then
  (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ "$profile" = release ]; then
  cargo build --release --locked -p mandate -p mandate-bench
else
  cargo build --locked -p mandate -p mandate-bench
fi

args=("$@")
given_mandate=false
for a in "${args[@]}"; do
  case "$a" in --mandate | --mandate=*) given_mandate=true ;; esac
done
if [ "$given_mandate" = false ]; then
  args=(--mandate "target/$profile/mandate" "${args[@]}")
fi
exec "target/$profile/mandate-peers" "${args[@]}"
