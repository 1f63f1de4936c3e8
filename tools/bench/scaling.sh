#!/usr/bin/env bash
# Estimates how sockeye's fanout scales from 1 event loop to 2 on a machine that has only
# 2 cores (so a saturation run with 2 server loops plus a generator is impossible).
#
# Method: the same fanout load (--clients, --rate) is run against `sockeye --app bench
# --cores 1` and `--cores 2`, alternating, ROUNDS times. The generator is pinned to core 1;
# the 1-loop server to core 0 and the 2-loop server to cores 0-1. Server CPU time per
# delivered message is read from /proc by the generator. With no shared lock between loops,
# throughput at saturation on K dedicated cores is K / (CPU per delivery); the predicted
# 2-loop speed-up is therefore 2 x cpu_1loop / cpu_2loop. The 2-loop run's clients are spread
# over both loops by SO_REUSEPORT, so every broadcast crosses cores through the inbox.
#
# usage: bash tools/bench/scaling.sh [ROUNDS] [extra generator flags]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROUNDS=${1:-3}
shift || true
GEN_ARGS=${*:-"--clients 1000 --rate 100 --duration 10 --warmup 2 --payload 64"}
SOCKEYE="$ROOT/target/release/sockeye"
LOADGEN="$ROOT/tools/sockeye-bench/target/release/sockeye-bench"
[[ -x $SOCKEYE && -x $LOADGEN ]] || {
    echo "build first: cargo build --release && (cd tools/sockeye-bench && cargo build --release)" >&2
    exit 2
}
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; }
trap cleanup EXIT
run_one() { # cores cpus
    local log
    log=$(mktemp)
    taskset -c "$2" "$SOCKEYE" --app bench --host 127.0.0.1 --port 0 --cores "$1" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
    local url
    url=$(grep -o 'http://[0-9.:]*' "$log" | head -1)
    # shellcheck disable=SC2086
    taskset -c 1 "$LOADGEN" fanout --url "$url" --server-pid "$pid" --label "loops=$1" $GEN_ARGS 2>/dev/null
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    rm -f "$log"
}
for r in $(seq "$ROUNDS"); do
    run_one 1 0
    run_one 2 0-1
done
