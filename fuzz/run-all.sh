#!/usr/bin/env bash
# Runs every target listed by `cargo fuzz list` for the given number of seconds each.
#
#   fuzz/run-all.sh [SECONDS] [cargo-fuzz run options, e.g. -s none or -j 2]
#
# SECONDS defaults to 30. Stable Rust is made to accept cargo-fuzz's nightly flags with
# RUSTC_BOOTSTRAP=1. Each target's log is kept in fuzz/artifacts/logs/<target>.log. Exits 1 if
# any target crashed or failed to build (the crashing input is in fuzz/artifacts/<target>/),
# after running all the others.
set -u

secs="${1:-30}"
shift $(($# > 0 ? 1 : 0))
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [cargo-fuzz run options]" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")" || exit 2
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list) || exit 2
mkdir -p artifacts/logs

failed=()
for target in $targets; do
    log="artifacts/logs/$target.log"
    echo "=== $target: ${secs}s"
    if cargo fuzz run "$@" "$target" -- -max_total_time="$secs" >"$log" 2>&1; then
        # libFuzzer's last line: "Done <runs> runs in <seconds> second(s)".
        grep -E '^Done [0-9]+ runs' "$log" | tail -n 1
    else
        failed+=("$target")
        echo "FAILED, see fuzz/$log:"
        grep -E 'panicked at|ERROR: |Test unit written to' "$log" | head -n 5
    fi
done

if ((${#failed[@]} > 0)); then
    echo "crashed or failed: ${failed[*]}"
    exit 1
fi
echo "all ${secs}s runs passed"
