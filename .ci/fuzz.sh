#!/usr/bin/env bash
# Fuzzing (docs/SECURITY.md, "Fuzzing"): builds every cargo-fuzz target once, then runs each for
# SECONDS (default 30) in turn, starting from its seed corpus under fuzz/corpus/<target>/. Fails on
# the first crash (a panic, an assertion of the target's properties, an abort, a timeout or an
# out-of-memory), leaving the input in fuzz/artifacts/<target>/. Prints executions per target.
#
#   .ci/fuzz.sh [SECONDS] [TARGET...]
#
# FUZZ_RUNS=N also stops each target after N executions (the long run: FUZZ_RUNS=10000000).
# Needs the nightly toolchain and cargo-fuzz (installed here when missing). Inputs found during the
# run go to a scratch corpus, so the committed seeds stay as they are. Built without a sanitizer:
# the workspace forbids unsafe code, and debug assertions (overflow checks) stay on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Built outside the clone and kept between runs (a cold nightly build of the dependencies takes
# many minutes on a small machine); MANDATE_FUZZ_TARGET_DIR overrides the place.
target_dir="${MANDATE_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mandate/fuzz-target}"
mkdir -p "$target_dir"
cargo +nightly fuzz build --sanitizer none --target-dir "$target_dir"

# The config_toml target writes its input to a temporary file on every execution: in memory that
# is about six times as fast as on this machine's disk (6,500 executions a second, not 1,100).
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  echo "== fuzz $t (${seconds}s)"
  if ! cargo +nightly fuzz run --sanitizer none --target-dir "$target_dir" "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $t crashed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  summary+=("$(printf '%-26s %12s executions  %8s/s  0 crashes' "$t" "${execs:-?}" "${rate:-?}")")
done
echo
echo "== fuzz summary (${seconds}s each)"
printf '%s\n' "${summary[@]}"
