# Shared by .ci/e2e.sh and .ci/new.sh (sourced from the repository root): what the real-client
# suites need, installed locally and cached. Chromium and python3-venv from apt when missing;
# Node 22 and the npm packages into e2e/node_modules (pinned in e2e/package-lock.json), on PATH;
# the Python packages into target/e2e-venv (pinned in e2e/python/requirements.txt, rebuilt when
# that file changes). Sets: chromium, venv.

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
want_npm="$(sha256sum e2e/package-lock.json | cut -d' ' -f1)"
if [ "$(cat e2e/node_modules/.lock.sha256 2>/dev/null)" != "$want_npm" ]; then
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want_npm" >e2e/node_modules/.lock.sha256
fi
export PATH="$PWD/e2e/node_modules/.bin:$PATH"

venv="$PWD/target/e2e-venv"
want="$(sha256sum e2e/python/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r e2e/python/requirements.txt
  echo "$want" >"$venv/.requirements.sha256"
fi
