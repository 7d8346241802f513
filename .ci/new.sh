#!/usr/bin/env bash
# `mandate new` and `mandate dev` as developers use them (e2e/dev.test.mjs): a project in each
# language (Python/FastMCP, TypeScript/the official SDK, Rust/rmcp + mandate-guard), its own test,
# then the server under `mandate dev` with the official TypeScript SDK client signing in through
# Chromium, and a saved change served without a restart by hand. The Python project runs on the
# e2e venv (FastMCP from e2e/python/requirements.txt); the TypeScript project installs its
# dependencies from npm (cached in ~/.npm); the Rust project builds against this checkout's crates
# into target/, beside the workspace (the profiles match, so most dependencies are reused).
# Usage: .ci/new.sh [path-to-mandate-binary]   Output: target/e2e/dev.transcript.log, screenshots.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/debug/mandate}")"
[ -x "$bin" ] || { echo "no mandate binary at $bin; run cargo build -p mandate first" >&2; exit 1; }
. .ci/tools.sh
out="$PWD/target/e2e"
mkdir -p "$out/screenshots"
echo "node $(node --version), $("$venv/bin/python" --version), $(cargo --version)"
CARGO_TARGET_DIR="$PWD/target" MANDATE_E2E_BIN="$bin" MANDATE_E2E_PYTHON="$venv/bin/python" \
  MANDATE_E2E_OUT="$out" MANDATE_E2E_CHROMIUM="$chromium" \
  timeout --kill-after=10 1800 node --test-reporter=spec e2e/dev.test.mjs 2>&1 | tee "$out/dev.transcript.log"
