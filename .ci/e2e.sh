#!/usr/bin/env bash
# Real clients against a real `mandate serve --demo`: the official MCP TypeScript SDK clients
# (@modelcontextprotocol/sdk 1.x and @modelcontextprotocol/client 2.x), the official Python SDK
# (mcp) and the official MCP Inspector's web UI (@modelcontextprotocol/inspector), with Debian's
# Chromium (driven by playwright-core, or Playwright for Python) as the person who signs in and
# consents (and, for the Inspector, as the developer who clicks through its UI); then the browser
# story (e2e/browser-story.test.mjs): the person clicks every page (sign-in, consent, step-up,
# account pages, revoke, sign-out) and forms posted from other origins are refused, at 1280 px and
# at 375 px. Node 22 and the npm packages are installed locally (pinned in e2e/package-lock.json),
# never globally; the Python packages go into a venv under target/ (pinned in
# e2e/python/requirements.txt; needs python3 with venv); Chromium comes from apt when missing (no
# browser downloads).
# Usage: .ci/e2e.sh [path-to-mandate-binary] [suite...]   (default: target/debug/mandate, all
# suites; a suite is a path as listed below, e.g. e2e/browser-story.test.mjs@375x812)
# Output: target/e2e/ (server logs, transcript, screenshots of every page Chromium showed).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
bin="$(realpath "${1:-target/debug/mandate}")"
shift || true
[ -x "$bin" ] || { echo "no mandate binary at $bin; run cargo build -p mandate first" >&2; exit 1; }

# What apt must provide: Chromium, and python3 with venv.
chromium="${MANDATE_E2E_CHROMIUM:-/usr/bin/chromium}"
missing=()
[ -x "$chromium" ] || missing+=(chromium)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get install -y)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# package.json holds vite (an Inspector dependency) at 8.3.8; see its description.
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)
export PATH="$root/e2e/node_modules/.bin:$PATH"

# The Python SDK in a venv of its own, rebuilt when e2e/python/requirements.txt changes.
venv="$root/target/e2e-venv"
want="$(sha256sum e2e/python/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r e2e/python/requirements.txt
  echo "$want" >"$venv/.requirements.sha256"
fi
echo "node $(node --version), $("$venv/bin/python" --version), $("$chromium" --version 2>/dev/null | head -n1)"

out="$root/target/e2e"
rm -rf "$out"
mkdir -p "$out/screenshots"
tmp="$(mktemp -d)"
server=""
name=""
stop_server() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server" 2>/dev/null || true
  fi
  server=""
  # Keep what the server printed, without the demo password.
  if [ -f "$tmp/$name.stdout" ]; then
    sed 's/^\(demo user: demo \/ password: \).*/\1<redacted>/' "$tmp/$name.stdout" >"$out/$name.server.stdout"
  fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT

# A fresh `mandate serve --demo` (its own SQLite file) on a free loopback port; sets base and password.
start_server() {
  local port
  port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
  base="http://127.0.0.1:$port"
  mkdir -p "$tmp/$name"
  MANDATE_DATABASE="sqlite://$tmp/$name/mandate.db" RUST_LOG="${RUST_LOG:-info}" \
    "$bin" serve --demo --listen "127.0.0.1:$port" --public-url "$base" >"$tmp/$name.stdout" 2>"$out/$name.server.log" &
  server=$!
  # Ready when it says so; the demo password is printed before that.
  for _ in $(seq 300); do
    grep -q '^mandate is serving' "$tmp/$name.stdout" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { echo "mandate exited before serving; its log:" >&2; cat "$out/$name.server.log" >&2; return 1; }
    sleep 0.1
  done
  grep -q '^mandate is serving' "$tmp/$name.stdout" || { echo "mandate did not start within 30 s" >&2; return 1; }
  password="$(sed -n 's/^demo user: demo \/ password: //p' "$tmp/$name.stdout" | head -n1)"
  [ -n "$password" ] || { echo "mandate printed no demo password" >&2; return 1; }
  echo "mandate serving $base (log: target/e2e/$name.server.log)"
}

# Each suite in turn, each against a server of its own (one suite at a time on a small machine);
# all run, any failure fails. The browser story runs once per window size (`suite@WIDTHxHEIGHT`).
suites=(e2e/ts-sdk-flow.test.mjs e2e/ts-client-v2-flow.test.mjs e2e/python/sdk_flow.py e2e/inspector.test.mjs
  e2e/browser-story.test.mjs@1280x800 e2e/browser-story.test.mjs@375x812)
[ "$#" -eq 0 ] || suites=("$@")
status=0
for entry in "${suites[@]}"; do
  suite="${entry%@*}"
  viewport=""
  [ "$entry" = "$suite" ] || viewport="${entry#*@}"
  name="$(basename "${suite%%.*}")${viewport:+-${viewport%x*}}"
  case "$suite" in
    *.mjs) run=(node --test-reporter=spec "$suite") ;;
    *.py) run=("$venv/bin/python" "$suite") ;;
  esac
  echo
  echo "-- $entry"
  if start_server; then
    MANDATE_E2E_BASE="$base" MANDATE_E2E_PASSWORD="$password" MANDATE_E2E_OUT="$out" MANDATE_E2E_CHROMIUM="$chromium" \
      MANDATE_E2E_VIEWPORT="$viewport" timeout --kill-after=10 300 "${run[@]}" 2>&1 | tee -a "$out/transcript.log" || status=1
  else
    status=1
  fi
  stop_server
done
exit "$status"
