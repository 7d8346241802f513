#!/usr/bin/env bash
# The official MCP conformance suite against mandate's client (`mandate conformance-client`:
# headless login, loopback http allowed, memory-only credentials). The suite needs Node >= 22, which
# is installed locally from npm (pinned in conformance/package-lock.json), never globally.
# Usage: .ci/conformance.sh [path-to-mandate-binary]   (default: target/debug/mandate)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/debug/mandate}")"
[ -x "$bin" ] || { echo "no mandate binary at $bin; run cargo build -p mandate first" >&2; exit 1; }

(cd conformance && npm ci --no-audit --no-fund --loglevel=error)
export PATH="$PWD/conformance/node_modules/.bin:$PATH"
echo "node $(node --version), conformance $(conformance --version)"

# No expected-failures file: every scenario must pass.
for suite in auth draft; do
  conformance client --command "$bin conformance-client" --suite "$suite" -o target/conformance-"$suite" \
    | tee target/conformance-"$suite".log | sed -n '/=== SUITE SUMMARY ===/,$p'
  # the runner's exit status is the verdict; pipefail carries it
done
