#!/usr/bin/env bash
# The one test command of sockeye: `bash tools/test-all.sh` (CI runs it through .ci/run).
#
# On a fresh Debian machine with only Rust, Node.js and Python installed it:
#   1. installs the interop test dependencies: `npm ci` in tests/interop, and a virtual
#      environment in tests/interop/.venv with tests/interop/requirements.txt; and the browser
#      test's: `npm ci` in web/ (which also provides the page's socket.io-client) and Debian's
#      chromium at /usr/bin/chromium when it is missing (as root, with apt-get); and Debian's
#      nginx when no nginx is found, for the interop suites through nginx;
#   2. checks formatting and lints: `cargo fmt --check`, `cargo clippy --all-targets -D warnings`;
#   3. runs every test: `cargo test --release` (unit, property, simulation, the interop suites
#      in tests/interop.rs, which drive the release binary with socket.io-client and
#      python-socketio, the same suites through nginx with deploy/nginx/sockeye.conf in
#      tests/interop_proxy.rs, and the browser test in tests/browser.rs, which drives the chat
#      page in Chromium);
#      the fault tests in tests/faults.rs need nothing installed (Linux /proc, the prlimit(2)
#      call, and a hard RLIMIT_NOFILE of at least 11000 for the 10 000-connection test);
#      plus the load generator's own checks (tools/sockeye-bench) and the bench summary tests;
#   4. fuzzes: every `cargo fuzz list` target for FUZZ_SECONDS (default 30) seconds each, when
#      fuzz/Cargo.toml exists, installing cargo-fuzz if it is missing (nine targets, the stateful
#      sio_session and chat_handlers included: about 4.5 minutes plus the build).
# Setup failures stop the run at once; check failures are collected, so one failing step does
# not hide the others. It ends with a summary and exits non-zero if anything failed.
#
# Environment:
#   FUZZ_SECONDS=N          seconds per fuzz target (default 30; 0 skips fuzzing, loudly)
#   SOCKEYE_SKIP_INTEROP=1  skip the interop suites inside `cargo test` (loudly), nginx included
#   SOCKEYE_SKIP_BROWSER=1  skip the browser test inside `cargo test` (loudly)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

INTEROP_DIR="$ROOT/tests/interop"
WEB_DIR="$ROOT/web"
CHROMIUM=/usr/bin/chromium
VENV="$INTEROP_DIR/.venv"
FUZZ_SECONDS=${FUZZ_SECONDS:-30}

declare -a SUMMARY=()
declare -a FUZZ_LINES=()
PASSED=0
FAILED=0

say() { printf '\n==> %s\n' "$*"; }

print_summary() {
  printf '\n==================== sockeye test summary ====================\n'
  local line
  for line in "${SUMMARY[@]}"; do printf '%s\n' "$line"; done
  printf '===============================================================\n'
  printf 'steps: %d passed, %d failed\n' "$PASSED" "$FAILED"
}

# step NAME COMMAND...: runs one step, records PASS/FAIL with its duration, never exits.
step() {
  local name=$1
  shift
  say "$name"
  local start=$SECONDS status=0
  "$@" || status=$?
  local took=$((SECONDS - start))
  if [ "$status" -eq 0 ]; then
    SUMMARY+=("$(printf 'PASS  %-42s %5ds' "$name" "$took")")
    PASSED=$((PASSED + 1))
  else
    SUMMARY+=("$(printf 'FAIL  %-42s %5ds  (exit %d)' "$name" "$took" "$status")")
    FAILED=$((FAILED + 1))
  fi
  return "$status"
}

# setup NAME COMMAND...: a step whose failure makes everything after it meaningless.
setup() {
  if ! step "$@"; then
    print_summary
    echo "setup step failed: $1; nothing else was run" >&2
    exit 1
  fi
}

require_tools() {
  local missing=0 tool
  for tool in cargo node npm python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "missing required tool: $tool" >&2
      missing=1
    fi
  done
  [ "$missing" -eq 0 ] || return 1
  cargo --version && node --version && printf 'npm %s\n' "$(npm --version)" && python3 --version
}

npm_ci() {
  (cd "$INTEROP_DIR" && npm ci --no-audit --no-fund)
}

npm_ci_web() {
  (cd "$WEB_DIR" && npm ci --no-audit --no-fund)
}

# The browser test drives Debian's chromium (tests/browser.rs, web/test/).
ensure_chromium() {
  if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "$CHROMIUM is missing; installing Debian's chromium" >&2
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } ||
        [ ! -x "$CHROMIUM" ]; then
        echo "apt-get install chromium failed, or gave no $CHROMIUM" >&2
        return 1
      fi
    else
      echo "$CHROMIUM is missing: install Debian's chromium (apt-get install chromium) as root," >&2
      echo "or set SOCKEYE_SKIP_BROWSER=1 to skip the browser test" >&2
      return 1
    fi
  fi
  "$CHROMIUM" --version
}

# nginx, wherever it is: PATH, else Debian's /usr/sbin (often not on a non-root PATH).
find_nginx() {
  local candidate
  for candidate in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx /usr/local/sbin/nginx; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

# The interop suites also run through nginx (tests/interop_proxy.rs, deploy/nginx/). Only the
# binary is used: the test starts its own nginx as a child with a config in a temporary directory,
# never the system service (which the package starts on port 80 where systemd runs).
ensure_nginx() {
  local nginx
  if ! nginx=$(find_nginx); then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "nginx is missing; installing Debian's nginx" >&2
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; } ||
        ! nginx=$(find_nginx); then
        echo "apt-get install nginx failed, or gave no nginx binary" >&2
        return 1
      fi
    else
      echo "nginx is missing: install Debian's nginx (apt-get install nginx) as root," >&2
      echo "or set SOCKEYE_SKIP_INTEROP=1 to skip the interop tests" >&2
      return 1
    fi
  fi
  "$nginx" -v
}

python_venv() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV"; then
      # Debian's python3 ships venv support in a separate package.
      if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "python3 -m venv failed; installing Debian's python3-venv" >&2
        rm -rf "$VENV"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv "$VENV" || return 1
      else
        echo "python3 -m venv failed: install your distribution's python3-venv" >&2
        return 1
      fi
    fi
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$INTEROP_DIR/requirements.txt"
}

cargo_test() {
  # Bounded: every interop wait has its own timeout, this is only the last resort.
  timeout --signal=TERM --kill-after=30 45m cargo test --release
}

# The load generator (tools/sockeye-bench) is a crate of its own, outside the root build.
loadgen_checks() {
  local m=tools/sockeye-bench/Cargo.toml
  cargo fmt --manifest-path "$m" -- --check &&
    cargo clippy --manifest-path "$m" --all-targets -- -D warnings &&
    cargo test --manifest-path "$m"
}

ensure_cargo_fuzz() {
  if cargo fuzz --version >/dev/null 2>&1; then
    cargo fuzz --version
    return 0
  fi
  cargo install cargo-fuzz --locked
}

# cargo-fuzz passes nightly-only flags (-Z sanitizer, -Cpasses); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them (checked with cargo-fuzz 0.13 on Rust 1.95, address sanitizer
# included). It is set for cargo-fuzz only: build scripts that probe for nightly features would
# otherwise switch them on in the ordinary build and test steps too.
fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }

fuzz_all() {
  local targets target sanitizer=()
  targets=$(fuzz list) || return 1
  if [ -z "$targets" ]; then
    echo "fuzz/ has no targets"
    return 1
  fi
  # Build every target once; if the address sanitizer cannot be built here, fuzz without it
  # rather than not at all.
  if ! fuzz build; then
    echo "WARNING: cargo fuzz build with the address sanitizer failed; retrying with -s none" >&2
    sanitizer=(-s none)
    fuzz build "${sanitizer[@]}" || return 1
  fi
  local failed=0
  for target in $targets; do
    say "fuzz $target for ${FUZZ_SECONDS}s"
    if timeout --signal=TERM --kill-after=30 $((FUZZ_SECONDS + 300)) \
      env RUSTC_BOOTSTRAP=1 cargo fuzz run "${sanitizer[@]}" "$target" -- -max_total_time="$FUZZ_SECONDS"; then
      FUZZ_LINES+=("$(printf '        %-40s ok' "$target")")
    else
      FUZZ_LINES+=("$(printf '        %-40s FAILED (see fuzz/artifacts/%s)' "$target" "$target")")
      failed=1
    fi
  done
  return "$failed"
}

setup "required tools" require_tools
setup "npm ci (tests/interop)" npm_ci
setup "python venv (tests/interop/.venv)" python_venv
setup "npm ci (web)" npm_ci_web
if [ "${SOCKEYE_SKIP_INTEROP:-}" = "1" ]; then
  echo "!!! SOCKEYE_SKIP_INTEROP=1: nginx not checked, interop tests through nginx SKIPPED !!!"
  SUMMARY+=("SKIP  nginx and the interop tests through it (SOCKEYE_SKIP_INTEROP=1)")
else
  setup "nginx (Debian's nginx)" ensure_nginx
fi
if [ "${SOCKEYE_SKIP_BROWSER:-}" = "1" ]; then
  echo "!!! SOCKEYE_SKIP_BROWSER=1: chromium not checked, browser test SKIPPED !!!"
  SUMMARY+=("SKIP  chromium and the browser test (SOCKEYE_SKIP_BROWSER=1)")
else
  setup "chromium ($CHROMIUM)" ensure_chromium
fi

step "cargo fmt --check" cargo fmt --all -- --check || true
step "cargo clippy --all-targets -D warnings" cargo clippy --all-targets -- -D warnings || true
step "cargo test --release (incl. interop)" cargo_test || true
step "load generator: fmt, clippy, tests" loadgen_checks || true
step "bench summary tests" python3 tools/bench/test_summarize.py || true

if [ -f fuzz/Cargo.toml ]; then
  if [ "$FUZZ_SECONDS" -gt 0 ]; then
    if step "install cargo-fuzz" ensure_cargo_fuzz; then
      step "fuzz every target (${FUZZ_SECONDS}s each)" fuzz_all || true
      SUMMARY+=("${FUZZ_LINES[@]}")
    fi
  else
    echo "!!! FUZZ_SECONDS=0: fuzzing SKIPPED !!!"
    SUMMARY+=("SKIP  fuzzing (FUZZ_SECONDS=0)")
  fi
else
  SUMMARY+=("SKIP  fuzzing (no fuzz/Cargo.toml yet)")
fi

print_summary
[ "$FAILED" -eq 0 ]
