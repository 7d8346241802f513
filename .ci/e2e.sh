#!/usr/bin/env bash
# Real clients against a real `mandate serve --demo`: the official MCP TypeScript SDK clients
# (@modelcontextprotocol/sdk 1.x and @modelcontextprotocol/client 2.x), the official Python SDK
# (mcp) and the official MCP Inspector's web UI (@modelcontextprotocol/inspector), with Debian's
# Chromium (driven by playwright-core, or Playwright for Python) as the person who signs in and
# consents (and, for the Inspector, as the developer who clicks through its UI); then the browser
# story (e2e/browser-story.test.mjs): the person clicks every page (sign-in, consent, step-up,
# account pages, revoke, sign-out) and forms posted from other origins are refused, at 1280 px and
# at 375 px; then the gateway (e2e/gateway.test.mjs): mandate serving real third-party MCP servers
# behind OAuth (@modelcontextprotocol/server-everything over stdio and, behind a recording proxy,
# over Streamable HTTP, the latter with upstream_identity; a FastMCP server over stdio), from a
# configuration file this script writes, with a second person added by `mandate users add`; then
# the gateway on several instances (e2e/gateway-instances.test.mjs): two `mandate serve` on one
# SQLite database behind the suite's round-robin load balancer (e2e/lib/balancer.mjs); then
# federated sign-in (e2e/federated.test.mjs): panva's oidc-provider (OpenID Certified, run by
# e2e/lib/oidc-provider.mjs) as the identity provider of three mandates (one with the password
# form, one with providers only, one whose provider creates nobody: create_people = false), and
# Chromium as the people who sign in there; then connected accounts
# (e2e/connected-account.test.mjs): the demo's Example Accounts (a second, local mandate
# that `serve --demo` starts as a third-party OAuth provider) behind /mcp/example, an agent on the
# TypeScript SDK whose tool calls run with the person's own Example Accounts token, and Chromium
# as the person who connects, disconnects and connects again across the two origins; then
# `mandate doctor` on real servers (e2e/doctor.test.mjs) and the examples (e2e/examples.test.mjs:
# examples/ts-sdk by JWT and by introspection, examples/fastmcp-jwt by introspection, each signed
# in to by the TypeScript SDK client, then revoked by the person); last, mandate's own inspector
# (e2e/builtin-inspector.test.mjs: /inspector clicked through by its operator). Node 22
# and the npm packages are installed locally (pinned in e2e/package-lock.json), never globally;
# the Python packages go into a venv under target/ (pinned in e2e/python/requirements.txt; needs
# python3 with venv); Chromium comes from apt when missing (no browser downloads).
# Usage: .ci/e2e.sh [path-to-mandate-binary] [suite...]   (default: target/debug/mandate, all
# suites; a suite is a path as listed below, e.g. e2e/browser-story.test.mjs@375x812)
# Output: target/e2e/ (server logs, transcript, screenshots of every page Chromium showed).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
bin="$(realpath "${1:-target/debug/mandate}")"
shift || true
[ -x "$bin" ] || { echo "no mandate binary at $bin; run cargo build -p mandate first" >&2; exit 1; }

# Chromium, Node 22 and the npm packages, the Python venv (.ci/tools.sh).
. .ci/tools.sh
echo "node $(node --version), $("$venv/bin/python" --version), $("$chromium" --version 2>/dev/null | head -n1)"

out="$root/target/e2e"
rm -rf "$out"
mkdir -p "$out/screenshots"
tmp="$(mktemp -d)"
server=""
server2=""
server3=""
name=""
public_url=""
backends=()
upstreams=()
stop_pid() {
  local pid="$1"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}
stop_server() {
  stop_pid "$server3"
  stop_pid "$server2"
  stop_pid "$server"
  server=""
  server2=""
  server3=""
  # Keep what the servers printed, without the demo password.
  local f
  for f in "$name" "$name-2" "$name-3"; do
    if [ -f "$tmp/$f.stdout" ]; then
      sed -e 's/^\(demo user: demo \/ password: \).*/\1<redacted>/' \
        -e 's/\(sign in there as demo \/ password: \).*/\1<redacted>/' "$tmp/$f.stdout" >"$out/$f.server.stdout"
    fi
  done
}
trap 'stop_server; stop_upstreams; rm -rf "$tmp"' EXIT

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

random_secret() {
  node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))'
}

# Waits up to 30 s for a line matching `pattern` in `file`, while process `pid` lives.
wait_for_line() {
  local file="$1" pattern="$2" pid="$3" what="$4"
  for _ in $(seq 300); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$what exited before it was ready; its output:" >&2; cat "$file" >&2; return 1; }
    sleep 0.1
  done
  echo "$what was not ready within 30 s" >&2
  return 1
}

# A fresh `mandate serve --demo` (its own SQLite file) on a free loopback port; sets base (its
# public URL: public_url when set, else its own address), backends and password.
# Optional: a configuration file (--config), then VAR=VALUE pairs for mandate's environment.
start_server() {
  local port config="${1:-}"
  shift || true
  port="${listen_port:-$(free_port)}"
  base="${public_url:-http://127.0.0.1:$port}"
  backends=("http://127.0.0.1:$port")
  mkdir -p "$tmp/$name"
  env "$@" MANDATE_DATABASE="sqlite://$tmp/$name/mandate.db" RUST_LOG="${RUST_LOG:-info}" \
    "$bin" serve --demo ${config:+--config "$config"} --listen "127.0.0.1:$port" --public-url "$base" >"$tmp/$name.stdout" 2>"$out/$name.server.log" &
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
  echo "mandate serving $base on 127.0.0.1:$port (log: target/e2e/$name.server.log)"
}

# A second instance beside the running one: `mandate serve` on the same database (and so the same
# key file, <db>.key) and configuration, on a free loopback port of its own, with the same public
# URL; without --demo (it would set a new demo password). Appends to backends.
start_another_instance() {
  local port config="${1:-}"
  shift || true
  port="$(free_port)"
  env "$@" MANDATE_DATABASE="sqlite://$tmp/$name/mandate.db" RUST_LOG="${RUST_LOG:-info}" \
    "$bin" serve ${config:+--config "$config"} --listen "127.0.0.1:$port" --public-url "$base" >"$tmp/$name-2.stdout" 2>"$out/$name-2.server.log" &
  server2=$!
  for _ in $(seq 300); do
    grep -q '^mandate is serving' "$tmp/$name-2.stdout" 2>/dev/null && break
    kill -0 "$server2" 2>/dev/null || { echo "the second mandate exited before serving; its log:" >&2; cat "$out/$name-2.server.log" >&2; return 1; }
    sleep 0.1
  done
  grep -q '^mandate is serving' "$tmp/$name-2.stdout" || { echo "the second mandate did not start within 30 s" >&2; return 1; }
  [ -f "$tmp/$name/mandate.db.key" ] || { echo "no key file next to the database" >&2; return 1; }
  backends+=("http://127.0.0.1:$port")
  echo "a second mandate serving $base on 127.0.0.1:$port, same database (log: target/e2e/$name-2.server.log)"
}

stop_upstreams() {
  local pid
  for pid in "${upstreams[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${upstreams[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  upstreams=()
}

# The gateway suite's world, before its mandate starts: server-everything over Streamable HTTP on a
# free loopback port (by itself it listens on every interface: e2e/lib/loopback-only.mjs holds it
# to 127.0.0.1), the recording proxy in front of it (its record stays in $tmp: it holds whatever
# mandate sent upstream), and mandate's configuration naming the three resources (with
# `instances`, for e2e/gateway-instances.test.mjs: the two server-everything ones). Sets config,
# server_env (for mandate) and suite_env (for the suite).
start_gateway_world() {
  local dir="$tmp/$name" port proxy key node_bin everything which="${1:-}"
  mkdir -p "$dir"
  node_bin="$(node -p process.execPath)"
  everything="$root/e2e/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
  port="$(free_port)"
  PORT="$port" "$node_bin" --import "$root/e2e/lib/loopback-only.mjs" "$everything" streamableHttp \
    >"$out/$name.everything-http.log" 2>&1 &
  upstreams+=($!)
  wait_for_line "$out/$name.everything-http.log" "listening on port $port" "$!" "server-everything (Streamable HTTP)" || return 1
  "$node_bin" "$root/e2e/lib/recording-proxy.mjs" "http://127.0.0.1:$port" "$dir/upstream-requests.jsonl" \
    >"$dir/proxy.stdout" 2>"$out/$name.proxy.log" &
  upstreams+=($!)
  wait_for_line "$dir/proxy.stdout" '^recording proxy listening on ' "$!" "the recording proxy" || return 1
  proxy="$(sed -n 's/^recording proxy listening on //p' "$dir/proxy.stdout")"
  key="$(random_secret)"
  cat >"$dir/mandate.toml" <<TOML
# Written by .ci/e2e.sh for $suite.
[[resources]]
name = "everything"
title = "Everything"
command = "$node_bin"
args = ["$everything", "stdio"]
env = { E2E_GATEWAY_MARKER = "from-the-gateway-config" }
isolation = "session"

[[resources]]
name = "everything-http"
title = "Everything over HTTP"
upstream_url = "$proxy/mcp"
upstream_headers = { "X-Upstream-Key" = "env:E2E_UPSTREAM_KEY" }
upstream_identity = true
TOML
  [ "$which" = instances ] || cat >>"$dir/mandate.toml" <<TOML

[[resources]]
name = "notes"
title = "Notes"
command = "$venv/bin/python"
args = ["$root/e2e/python/fastmcp_notes.py"]
isolation = "session"
TOML
  cp "$dir/mandate.toml" "$out/$name.mandate.toml"
  echo "upstreams: server-everything http://127.0.0.1:$port/mcp behind the recording proxy $proxy (configuration: target/e2e/$name.mandate.toml)"
  config="$dir/mandate.toml"
  server_env=("E2E_UPSTREAM_KEY=$key")
  suite_env=("MANDATE_E2E_UPSTREAM_KEY=$key" "MANDATE_E2E_PROXY_RECORD=$dir/upstream-requests.jsonl"
    "MANDATE_E2E_UPSTREAM_URL=http://127.0.0.1:$port/mcp" "MANDATE_E2E_PROXIED_UPSTREAM_URL=$proxy/mcp"
    "MANDATE_E2E_PYTHON=$venv/bin/python")
}

# Another `mandate serve --demo` beside the running one, number N (2 or 3), with a database of its
# own and the configuration file given, on 127.0.0.1:$listen_portN (its public URL too); then
# VAR=VALUE pairs for its environment. Sets baseN, serverN and passwordN (its demo password).
start_another_server() {
  local n="$1" config="$2"
  shift 2
  local port_var="listen_port$n"
  local port="${!port_var}"
  mkdir -p "$tmp/$name-$n"
  env "$@" MANDATE_DATABASE="sqlite://$tmp/$name-$n/mandate.db" RUST_LOG="${RUST_LOG:-info}" \
    "$bin" serve --demo --config "$config" --listen "127.0.0.1:$port" >"$tmp/$name-$n.stdout" 2>"$out/$name-$n.server.log" &
  local pid=$!
  printf -v "server$n" '%s' "$pid"
  printf -v "base$n" '%s' "http://127.0.0.1:$port"
  wait_for_line "$tmp/$name-$n.stdout" '^mandate is serving' "$pid" "mandate number $n" || { cat "$out/$name-$n.server.log" >&2; return 1; }
  printf -v "password$n" '%s' "$(sed -n 's/^demo user: demo \/ password: //p' "$tmp/$name-$n.stdout" | head -n1)"
  echo "mandate number $n serving http://127.0.0.1:$port, its own database (log: target/e2e/$name-$n.server.log)"
}

# The federated sign-in suite's world, before its mandates start: three loopback ports chosen for
# them (listen_port: the one with the password form; listen_port2: providers only; listen_port3:
# the password form, and a provider that creates nobody), oidc-provider
# (e2e/lib/oidc-provider.mjs) on a free port with one client, "mandate", whose redirect URIs are
# the three mandates' callbacks and whose secret is random and reaches mandate only through its
# environment; and the three configuration files. Its events (no secrets in them) go to
# target/e2e/$name.idp-events.jsonl. Its ID tokens carry only `sub` and the protocol claims
# (OpenID Connect Core 5.4; the rest is at userinfo); MANDATE_E2E_IDP_CLAIMS_IN_ID_TOKEN=1 puts
# the e-mail and profile claims in them too (a diagnosis aid, not what CI runs).
# Sets config, config2, server_env and suite_env.
start_federation_world() {
  local dir="$tmp/$name" secret issuer node_bin claims=()
  mkdir -p "$dir"
  node_bin="$(node -p process.execPath)"
  listen_port="$(free_port)"
  listen_port2="$(free_port)"
  while [ "$listen_port2" = "$listen_port" ]; do listen_port2="$(free_port)"; done
  listen_port3="$(free_port)"
  while [ "$listen_port3" = "$listen_port" ] || [ "$listen_port3" = "$listen_port2" ]; do listen_port3="$(free_port)"; done
  secret="$(random_secret)"
  [ "${MANDATE_E2E_IDP_CLAIMS_IN_ID_TOKEN:-}" != 1 ] || claims=(--claims-in-id-token)
  IDP_CLIENT_SECRET="$secret" "$node_bin" "$root/e2e/lib/oidc-provider.mjs" \
    --redirect-uri "http://127.0.0.1:$listen_port/upstream/idp/callback" \
    --redirect-uri "http://127.0.0.1:$listen_port2/upstream/idp/callback" \
    --redirect-uri "http://127.0.0.1:$listen_port3/upstream/idp/callback" \
    --events "$out/$name.idp-events.jsonl" "${claims[@]}" >"$out/$name.idp.log" 2>&1 &
  upstreams+=($!)
  wait_for_line "$out/$name.idp.log" '^oidc-provider issuer ' "$!" "oidc-provider" || return 1
  issuer="$(sed -n 's/^oidc-provider issuer //p' "$out/$name.idp.log")"
  local password_login
  for password_login in true false; do
    cat >"$dir/mandate-password-$password_login.toml" <<TOML
# Written by .ci/e2e.sh for $suite.
password_login = $password_login

[[providers]]
name = "idp"
title = "Example ID"
issuer = "$issuer"
client_id = "mandate"
client_secret_env = "IDP_CLIENT_SECRET"
scopes = ["openid", "email", "profile"]
sign_in = true
TOML
    cp "$dir/mandate-password-$password_login.toml" "$out/$name.mandate-password-$password_login.toml"
  done
  cat >"$dir/mandate-create-people-false.toml" <<TOML
# Written by .ci/e2e.sh for $suite.
[[providers]]
name = "idp"
title = "Example ID"
issuer = "$issuer"
client_id = "mandate"
client_secret_env = "IDP_CLIENT_SECRET"
scopes = ["openid", "email", "profile"]
sign_in = true
create_people = false
TOML
  cp "$dir/mandate-create-people-false.toml" "$out/$name.mandate-create-people-false.toml"
  echo "oidc-provider $issuer (log: target/e2e/$name.idp.log; configurations: target/e2e/$name.mandate-*.toml)"
  config="$dir/mandate-password-true.toml"
  config2="$dir/mandate-password-false.toml"
  config3="$dir/mandate-create-people-false.toml"
  server_env=("IDP_CLIENT_SECRET=$secret")
  suite_env=("MANDATE_E2E_IDP_ISSUER=$issuer" "MANDATE_E2E_IDP_EVENTS=$out/$name.idp-events.jsonl")
}

# A [[resources]] entry for an example server on 127.0.0.1:PORT (its `hello` tool needs notes.read).
example_resource() {
  cat <<TOML
[[resources]]
uri = "http://127.0.0.1:$1/mcp"
name = "$2"
default_scopes = ["notes.read"]
scopes = [{ name = "notes.read", description = "Greet people", tools = ["hello"] }]

TOML
}

# The doctor suite's world: mandate configured as the authorization server of the FastMCP example
# (examples/fastmcp-jwt), whose resource (its URL, its scope) is a [[resources]] entry; the
# example itself starts once mandate serves (start_fastmcp_example).
start_doctor_world() {
  fastmcp_port="$(free_port)"
  config="$tmp/$name.toml"
  example_resource "$fastmcp_port" "Notes (FastMCP example)" >"$config"
}

start_fastmcp_example() {
  MANDATE_ISSUER="$base" PORT="$fastmcp_port" "$venv/bin/python" "$root/examples/fastmcp-jwt/server.py" \
    >"$out/$name.fastmcp.log" 2>&1 &
  upstreams+=($!)
  wait_for_line "$out/$name.fastmcp.log" "Uvicorn running on" "$!" "the FastMCP example" || return 1
  suite_env+=("MANDATE_E2E_FASTMCP_URL=http://127.0.0.1:$fastmcp_port/mcp" "MANDATE_E2E_BIN=$bin")
}

# The examples suite's world (e2e/examples.test.mjs), before mandate starts: ports for the
# TypeScript SDK example (JWT and introspection) and the FastMCP example (introspection), and
# mandate's configuration naming the three as resources.
start_examples_world() {
  ts_jwt_port="$(free_port)"
  ts_introspection_port="$(free_port)"
  fastmcp_introspection_port="$(free_port)"
  config="$tmp/$name.toml"
  local p
  for p in "$ts_jwt_port" "$ts_introspection_port" "$fastmcp_introspection_port"; do
    example_resource "$p" "Notes on port $p" >>"$config"
  done
  # The suite also has mandate's own inspector connect to one of them.
  server_env+=("MANDATE_INSPECTOR_OPERATORS=[demo]")
}

# Once mandate runs: a confidential client per introspecting server (`mandate clients add
# --confidential --resource`), then the three servers. The TypeScript example uses the SDK, express,
# jose and zod installed for the suites (e2e/node_modules, pinned).
start_examples() {
  local db="sqlite://$tmp/$name/mandate.db" ts="$root/examples/ts-sdk" id secret p
  ln -sfn "$root/e2e/node_modules" "$ts/node_modules"
  MANDATE_ISSUER="$base" PORT="$ts_jwt_port" node "$ts/server.mjs" >"$out/$name.ts-jwt.log" 2>&1 &
  upstreams+=($!)
  wait_for_line "$out/$name.ts-jwt.log" "serving" "$!" "the TypeScript SDK example (JWT)" || return 1
  for p in "$ts_introspection_port" "$fastmcp_introspection_port"; do
    "$bin" clients add --database "$db" --config "$config" --name "Notes on port $p" --confidential --redirect-uri https://notes.invalid/unused \
      --resource "http://127.0.0.1:$p/mcp" >"$tmp/$name.client-$p" 2>>"$out/$name.clients-add.log" \
      || { echo "mandate clients add failed:" >&2; cat "$out/$name.clients-add.log" >&2; return 1; }
  done
  id="$(sed -n 's/^client_id: //p' "$tmp/$name.client-$ts_introspection_port")"
  secret="$(sed -n 's/^client_secret: //p' "$tmp/$name.client-$ts_introspection_port")"
  MANDATE_ISSUER="$base" PORT="$ts_introspection_port" MANDATE_CLIENT_ID="$id" MANDATE_CLIENT_SECRET="$secret" \
    node "$ts/server.mjs" >"$out/$name.ts-introspection.log" 2>&1 &
  upstreams+=($!)
  wait_for_line "$out/$name.ts-introspection.log" "serving" "$!" "the TypeScript SDK example (introspection)" || return 1
  id="$(sed -n 's/^client_id: //p' "$tmp/$name.client-$fastmcp_introspection_port")"
  secret="$(sed -n 's/^client_secret: //p' "$tmp/$name.client-$fastmcp_introspection_port")"
  MANDATE_ISSUER="$base" PORT="$fastmcp_introspection_port" MANDATE_CLIENT_ID="$id" MANDATE_CLIENT_SECRET="$secret" \
    "$venv/bin/python" "$root/examples/fastmcp-jwt/server.py" >"$out/$name.fastmcp-introspection.log" 2>&1 &
  upstreams+=($!)
  wait_for_line "$out/$name.fastmcp-introspection.log" "Uvicorn running on" "$!" "the FastMCP example (introspection)" || return 1
  suite_env+=("MANDATE_E2E_TS_JWT_URL=http://127.0.0.1:$ts_jwt_port/mcp"
    "MANDATE_E2E_TS_INTROSPECTION_URL=http://127.0.0.1:$ts_introspection_port/mcp"
    "MANDATE_E2E_FASTMCP_INTROSPECTION_URL=http://127.0.0.1:$fastmcp_introspection_port/mcp")
}

# Example Accounts, which `serve --demo` starts beside the running server: its address and its
# own demo password, from the start banner, for the suite.
read_example_accounts() {
  local line url password
  line="$(grep -m1 'Example Accounts (a second, local OAuth server): ' "$tmp/$name.stdout" || true)"
  url="$(printf '%s\n' "$line" | sed -n 's/^.*Example Accounts (a second, local OAuth server): \(http:\/\/[^ ]*\) .*$/\1/p')"
  password="$(printf '%s\n' "$line" | sed -n 's/^.*sign in there as demo \/ password: //p')"
  [ -n "$url" ] && [ -n "$password" ] || { echo "mandate printed no Example Accounts line (address and password)" >&2; return 1; }
  suite_env+=("MANDATE_E2E_EXAMPLE_URL=$url" "MANDATE_E2E_EXAMPLE_PASSWORD=$password")
  echo "Example Accounts serving $url"
}

# A second person on the running server's database (`mandate users add NAME --password-stdin`).
add_second_person() {
  local password
  password="$(random_secret)"
  printf '%s\n' "$password" | MANDATE_DATABASE="sqlite://$tmp/$name/mandate.db" "$bin" users add grace --password-stdin \
    >>"$out/$name.users-add.log" 2>&1 || { echo "mandate users add failed:" >&2; cat "$out/$name.users-add.log" >&2; return 1; }
  suite_env+=("MANDATE_E2E_SECOND_USER=grace" "MANDATE_E2E_SECOND_PASSWORD=$password")
}

# Each suite in turn, each against a server of its own (one suite at a time on a small machine);
# all run, any failure fails. The browser story runs once per window size (`suite@WIDTHxHEIGHT`).
suites=(e2e/ts-sdk-flow.test.mjs e2e/ts-client-v2-flow.test.mjs e2e/python/sdk_flow.py e2e/inspector.test.mjs
  e2e/browser-story.test.mjs@1280x800 e2e/browser-story.test.mjs@375x812 e2e/gateway.test.mjs
  e2e/gateway-instances.test.mjs e2e/federated.test.mjs e2e/connected-account.test.mjs e2e/doctor.test.mjs
  e2e/examples.test.mjs e2e/builtin-inspector.test.mjs)
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
  # The gateway suite brings its upstreams, a configuration file and a second person; the
  # several-instances suite the upstreams, a configuration file and a second instance, both
  # instances with the public URL of the load balancer the suite runs (e2e/lib/balancer.mjs) on
  # a port chosen here.
  config=""
  server_env=()
  suite_env=()
  public_url=""
  listen_port=""
  listen_port2=""
  listen_port3=""
  config2=""
  config3=""
  ready=true
  case "$suite" in
    e2e/gateway.test.mjs) start_gateway_world || ready=false ;;
    e2e/gateway-instances.test.mjs)
      start_gateway_world instances || ready=false
      public_url="http://127.0.0.1:$(free_port)"
      ;;
    e2e/federated.test.mjs) start_federation_world || ready=false ;;
    e2e/doctor.test.mjs) start_doctor_world ;;
    e2e/examples.test.mjs) start_examples_world ;;
    e2e/builtin-inspector.test.mjs) server_env+=("MANDATE_INSPECTOR_OPERATORS=[demo]") ;;
  esac
  if $ready && start_server "$config" "${server_env[@]}"; then
    case "$suite" in
      e2e/gateway.test.mjs) add_second_person || ready=false ;;
      e2e/gateway-instances.test.mjs)
        if start_another_instance "$config" "${server_env[@]}"; then
          suite_env+=("MANDATE_E2E_BACKENDS=${backends[*]}")
        else
          ready=false
        fi
        ;;
      e2e/federated.test.mjs)
        # The suite reads and adds people with the admin commands (`mandate users`) on the first
        # and third mandates' databases.
        if start_another_server 2 "$config2" "${server_env[@]}" && start_another_server 3 "$config3" "${server_env[@]}" \
          && [ -n "$password3" ]; then
          suite_env+=("MANDATE_E2E_BASE_2=$base2" "MANDATE_E2E_BASE_3=$base3" "MANDATE_E2E_PASSWORD_3=$password3"
            "MANDATE_E2E_BIN=$bin" "MANDATE_E2E_DATABASE=sqlite://$tmp/$name/mandate.db"
            "MANDATE_E2E_DATABASE_3=sqlite://$tmp/$name-3/mandate.db")
        else
          ready=false
        fi
        ;;
      e2e/connected-account.test.mjs) read_example_accounts || ready=false ;;
      e2e/doctor.test.mjs) start_fastmcp_example || ready=false ;;
      e2e/examples.test.mjs) start_examples || ready=false ;;
    esac
  else
    ready=false
  fi
  if $ready; then
    env "${suite_env[@]}" MANDATE_E2E_BASE="$base" MANDATE_E2E_PASSWORD="$password" MANDATE_E2E_OUT="$out" \
      MANDATE_E2E_CHROMIUM="$chromium" MANDATE_E2E_VIEWPORT="$viewport" \
      timeout --kill-after=10 300 "${run[@]}" 2>&1 | tee -a "$out/transcript.log" || status=1
  else
    status=1
  fi
  stop_server
  # The stdio servers mandate started (their process groups) end with it: none may outlive it.
  case "$suite" in
    e2e/gateway*.test.mjs)
      sleep 1
      if left="$(pgrep -af 'fastmcp_notes\.py|server-everything/dist/index\.js stdio')"; then
        echo "upstream processes outlived mandate:" >&2
        echo "$left" >&2
        status=1
      fi
      ;;
  esac
  stop_upstreams
done
exit "$status"
