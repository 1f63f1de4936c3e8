#!/usr/bin/env bash
# Runs the sockeye benchmark: builds sockeye, the peers and the load generator, then for each
# scenario and round starts every server in turn pinned to one core, drives it with
# sockeye-bench pinned to another, stores the generator's JSON line per run, and prints a
# Markdown summary (tools/bench/summarize.py). Method: BENCHMARKS.md at the repository root.
#
# usage: bash tools/bench/run.sh [--quick] [--rounds N] [--servers "A B"] [--out DIR]
#                                [--no-build] [--build-only] [SCENARIO...]
#
#   SCENARIO...     any of: fanout echo connect rooms polling (default: all five)
#   --quick         1 round, short runs, few clients: a smoke test in well under 3 minutes
#                   once everything is built
#   --rounds N      rounds per scenario (default 3)
#   --servers "..." servers, in the order they run within a round
#                   (default "sockeye socketioxide node rawws"; rawws only runs fanout)
#   --out DIR       results folder (default tools/bench/results/<UTC timestamp>)
#   --no-build      use what is already built
#   --build-only    build everything and stop
#
# Environment (flags win over environment):
#   SCENARIOS, SERVERS, ROUNDS, QUICK=1, NO_BUILD=1   as the flags above
#   BENCH_ARGS_FANOUT, BENCH_ARGS_ECHO, ...            replace a scenario's generator flags
#   SERVER_CPU (0), LOADGEN_CPU (1)                    the cores to pin to
#   SOCKETIOXIDE_THREADS (1)                           tokio workers of the socketioxide peer
#   READY_TIMEOUT (30)                                 seconds to wait for "listening on"
#   RUN_TIMEOUT                                        seconds before a generator run is killed
#   LOADGEN                                            generator binary to use instead of the
#                                                      one built from tools/sockeye-bench
#   BASELINE_BIN                                       a sockeye binary of another commit, run as
#                                                      server `baseline` (same flags as sockeye):
#                                                      --servers "sockeye baseline" compares a
#                                                      change with its parent in one run
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/../.." && pwd)
LOADGEN_DIR="$ROOT/tools/sockeye-bench"
LOADGEN=${LOADGEN:-"$LOADGEN_DIR/target/release/sockeye-bench"}

ALL_SCENARIOS="fanout echo connect rooms polling"
SCENARIOS=${SCENARIOS:-}
SERVERS=${SERVERS:-"sockeye socketioxide node rawws"}
ROUNDS=${ROUNDS:-}
QUICK=${QUICK:-0}
NO_BUILD=${NO_BUILD:-0}
BUILD_ONLY=0
OUT=""
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
SOCKETIOXIDE_THREADS=${SOCKETIOXIDE_THREADS:-1}
READY_TIMEOUT=${READY_TIMEOUT:-30}

die() {
    echo "run.sh: $*" >&2
    exit 2
}

usage() {
    sed -n '/^# usage:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=${2:?--rounds needs a value}; shift ;;
    --servers) SERVERS=${2:?--servers needs a value}; shift ;;
    --out) OUT=${2:?--out needs a value}; shift ;;
    --no-build) NO_BUILD=1 ;;
    --build-only) BUILD_ONLY=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown flag $1 (see --help)" ;;
    *) SCENARIOS="$SCENARIOS $1" ;;
    esac
    shift
done

SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
if [[ -z $ROUNDS ]]; then
    if [[ $QUICK == 1 ]]; then ROUNDS=1; else ROUNDS=3; fi
fi
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, not '$ROUNDS'"
for s in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario '$s' (known: $ALL_SCENARIOS)"
done
for s in $SERVERS; do
    case $s in sockeye | socketioxide | node | rawws) ;;
    baseline) [[ -x ${BASELINE_BIN:-} ]] || die "server 'baseline' needs BASELINE_BIN, a sockeye binary" ;;
    *) die "unknown server '$s'" ;;
    esac
done

# Generator flags per scenario. They are spelled out rather than left to the generator's
# defaults so that the benchmark is defined here and in BENCHMARKS.md, not by whichever
# generator version happens to be built.
scenario_args() {
    local var="BENCH_ARGS_${1^^}"
    if [[ -n ${!var:-} ]]; then
        echo "${!var}"
        return
    fi
    if [[ $QUICK == 1 ]]; then
        case $1 in
        fanout) echo "--clients 100 --rate 20 --duration 2 --warmup 0.5 --payload 64" ;;
        echo) echo "--clients 10 --duration 2 --warmup 0.5 --payload 64" ;;
        connect) echo "--clients 1000 --concurrency 100 --duration 1" ;;
        rooms) echo "--rooms 5x10,10x3 --rate 200 --duration 2 --warmup 0.5 --payload 64" ;;
        polling) echo "--clients 20 --rate 5 --duration 2 --warmup 0.5 --payload 64" ;;
        esac
    else
        case $1 in
        fanout) echo "--clients 1000 --rate 100 --duration 10 --warmup 2 --payload 64" ;;
        echo) echo "--clients 50 --duration 10 --warmup 2 --payload 64" ;;
        connect) echo "--clients 10000 --concurrency 200 --duration 2" ;;
        rooms) echo "--rooms 10x50,20x10,100x3 --rate 1000 --duration 10 --warmup 2 --payload 64" ;;
        polling) echo "--clients 200 --rate 20 --duration 10 --warmup 2 --payload 64" ;;
        esac
    fi
}

if [[ $QUICK == 1 ]]; then RUN_TIMEOUT=${RUN_TIMEOUT:-60}; else RUN_TIMEOUT=${RUN_TIMEOUT:-300}; fi

# ---- build -------------------------------------------------------------------------------

wants() { [[ " $SERVERS " == *" $1 "* ]]; }

build() {
    echo "== build" >&2
    if wants node; then
        # npm ci only when the installed tree is missing or older than the lock file.
        if [[ ! -f $BENCH_DIR/node/node_modules/.package-lock.json ||
            $BENCH_DIR/node/package-lock.json -nt $BENCH_DIR/node/node_modules/.package-lock.json ]]; then
            (cd "$BENCH_DIR/node" && npm ci --no-audit --no-fund)
        fi
    fi
    if wants socketioxide; then
        cargo build --release --locked --manifest-path "$BENCH_DIR/socketioxide/Cargo.toml"
    fi
    if wants rawws; then
        cargo build --release --locked --manifest-path "$BENCH_DIR/rawws/Cargo.toml"
    fi
    if wants sockeye; then
        cargo build --release --manifest-path "$ROOT/Cargo.toml"
    fi
    if [[ $LOADGEN == "$LOADGEN_DIR/target/release/sockeye-bench" ]]; then
        [[ -f $LOADGEN_DIR/Cargo.toml ]] || die "the load generator is missing: $LOADGEN_DIR"
        cargo build --release --manifest-path "$LOADGEN_DIR/Cargo.toml"
    fi
}

if [[ $NO_BUILD != 1 ]]; then build; fi
if [[ $BUILD_ONLY == 1 ]]; then exit 0; fi
[[ -x $LOADGEN ]] || die "no load generator at $LOADGEN (build it, or drop --no-build)"

# ---- servers -----------------------------------------------------------------------------

# Prints the command line of SERVER listening on PORT, one word per line.
server_cmd() {
    local server=$1 port=$2
    case $server in
    sockeye) printf '%s\n' "$ROOT/target/release/sockeye" --app bench --host 127.0.0.1 --port "$port" --cores 1 ;;
    baseline) printf '%s\n' "$BASELINE_BIN" --app bench --host 127.0.0.1 --port "$port" --cores 1 ;;
    socketioxide) printf '%s\n' "$BENCH_DIR/socketioxide/target/release/bench-socketioxide" --host 127.0.0.1 --port "$port" --threads "$SOCKETIOXIDE_THREADS" ;;
    node) printf '%s\n' node "$BENCH_DIR/node/server.js" --host 127.0.0.1 --port "$port" ;;
    rawws) printf '%s\n' "$BENCH_DIR/rawws/target/release/bench-rawws" --host 127.0.0.1 --port "$port" ;;
    esac
}

# A port that was free a moment ago. The server may still lose it to a race; start_server
# then tries again with another.
pick_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

SERVER_PID=""
LOADGEN_PID=""
SERVER_PORT=""

# Stops PID: SIGTERM, then SIGKILL after 5 s. Reaps it. Safe to call twice.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: pid $pid ignored SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$LOADGEN_PID"
    LOADGEN_PID=""
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

# Starts SERVER pinned to SERVER_CPU with its output in LOG and waits for its ready line.
# Sets SERVER_PID and SERVER_PORT; returns 1 when it does not come up.
start_server() {
    local server=$1 log=$2 attempt port line deadline
    local -a cmd
    for attempt in 1 2 3; do
        port=$(pick_port)
        mapfile -t cmd < <(server_cmd "$server" "$port")
        echo "# $(printf '%q ' taskset -c "$SERVER_CPU" "${cmd[@]}")" >"$log"
        taskset -c "$SERVER_CPU" "${cmd[@]}" >>"$log" 2>&1 &
        SERVER_PID=$!
        deadline=$((SECONDS + READY_TIMEOUT))
        while ((SECONDS < deadline)); do
            # "listening on 4100" (peers) or "sockeye listening on http://127.0.0.1:4100".
            line=$(grep -m1 -E 'listening on ' "$log" || true)
            if [[ -n $line ]]; then
                SERVER_PORT=$(sed -E 's/.*listening on ([^ ]*:)?([0-9]+).*/\2/' <<<"$line")
                [[ $SERVER_PORT =~ ^[0-9]+$ ]] || SERVER_PORT=$port
                return 0
            fi
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.05
        done
        local why="did not print its ready line within ${READY_TIMEOUT}s"
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            local status=0
            wait "$SERVER_PID" 2>/dev/null || status=$?
            why="exited with status $status before its ready line"
        fi
        stop_pid "$SERVER_PID"
        SERVER_PID=""
        if grep -qiE 'in use|EADDRINUSE' "$log"; then
            echo "run.sh: $server lost port $port to a race; trying another" >&2
            continue
        fi
        break
    done
    echo "run.sh: $server $why; its log ($log):" >&2
    tail -n 20 "$log" >&2
    return 1
}

# ---- runs --------------------------------------------------------------------------------

if [[ -z $OUT ]]; then OUT="$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)"; fi
mkdir -p "$OUT"
FAILURES="$OUT/failures.txt"
: >"$FAILURES"

# Many connections per process in the connect scenario: raise the descriptor limit as far as
# allowed. Servers and generator inherit it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

{
    echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
    echo "cpus: $(nproc)"
    echo "cpu_model: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)"
    echo "kernel: $(uname -r)"
    echo "node: $(node --version 2>/dev/null || echo none)"
    echo "rustc: $(rustc --version 2>/dev/null || echo none)"
    echo "open_files_limit: $(ulimit -n)"
    echo "server_cpu: $SERVER_CPU"
    echo "loadgen_cpu: $LOADGEN_CPU"
    echo "rounds: $ROUNDS"
    echo "quick: $QUICK"
    echo "servers: $SERVERS"
    echo "socketioxide_threads: $SOCKETIOXIDE_THREADS"
    for s in $SCENARIOS; do echo "args_$s: $(scenario_args "$s")"; done
} >"$OUT/machine.txt"

if (($(nproc) < 2)) || [[ $SERVER_CPU == "$LOADGEN_CPU" ]]; then
    echo "run.sh: warning: server and generator share a core; CPU figures will be skewed" >&2
fi

# Runs the generator for SCENARIO against SERVER (already started) and stores its JSON line.
run_generator() {
    local scenario=$1 server=$2 base=$3 rc=0 json
    local -a args
    read -r -a args <<<"$(scenario_args "$scenario")"
    # rawws speaks plain WebSocket: the generator's --raw mode sends bare text frames.
    if [[ $server == rawws ]]; then args+=(--raw); fi
    echo "# $(printf '%q ' "$LOADGEN" "$scenario" --url "http://127.0.0.1:$SERVER_PORT" --server-pid "$SERVER_PID" --label "$server" "${args[@]}")" >"$base.log"
    # In the background, so that a signal to this script is handled at once by its trap.
    timeout -k 5 "$RUN_TIMEOUT" taskset -c "$LOADGEN_CPU" "$LOADGEN" "$scenario" \
        --url "http://127.0.0.1:$SERVER_PORT" --server-pid "$SERVER_PID" --label "$server" \
        "${args[@]}" >"$base.out" 2>>"$base.log" &
    LOADGEN_PID=$!
    wait "$LOADGEN_PID" || rc=$?
    LOADGEN_PID=""
    json=$(grep -E '^\{' "$base.out" | tail -n1 || true)
    rm -f "$base.out"
    if [[ -n $json ]]; then
        echo "$json" >"$base.json"
    fi
    if ((rc != 0)) || [[ -z $json ]]; then
        local why="generator exit $rc"
        if [[ -z $json ]]; then why+=", no JSON line"; fi
        echo "$(basename "$base"): $why; see $(basename "$base").log" >>"$FAILURES"
        tail -n 5 "$base.log" >&2
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "$(basename "$base"): the server exited during the run; see $(basename "$base").server.log" >>"$FAILURES"
    fi
}

echo "== results in $OUT" >&2
for scenario in $SCENARIOS; do
    for ((round = 1; round <= ROUNDS; round++)); do
        # Servers interleaved within a round, so slow drifts of the machine touch all alike.
        for server in $SERVERS; do
            if [[ $server == rawws && $scenario != fanout ]]; then continue; fi
            base="$OUT/$scenario-$server-$round"
            echo "== $scenario round $round/$ROUNDS: $server" >&2
            if ! start_server "$server" "$base.server.log"; then
                echo "$(basename "$base"): $server did not start; see $(basename "$base").server.log" >>"$FAILURES"
                continue
            fi
            run_generator "$scenario" "$server" "$base"
            stop_pid "$SERVER_PID"
            SERVER_PID=""
        done
    done
done

python3 "$BENCH_DIR/summarize.py" "$OUT" | tee "$OUT/summary.md"
if [[ -s $FAILURES ]]; then
    echo "run.sh: $(wc -l <"$FAILURES") run(s) failed; see $FAILURES" >&2
    exit 1
fi
