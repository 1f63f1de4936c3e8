#!/usr/bin/env python3
"""Summarises one benchmark run folder of tools/bench/run.sh as Markdown.

Reads every `<scenario>-<server>-<round>.json` (one JSON line from sockeye-bench), takes the
median over rounds of each metric per server, prints one table per scenario, then the targets
table: each target is a ratio of sockeye's median to a peer's median (or an absolute bound),
marked PASS or MISS. Standard library only.

usage: summarize.py RESULTS_DIR [--json]
  --json   print the medians and target verdicts as one JSON object instead of Markdown
"""

import json
import math
import re
import statistics
import sys
from pathlib import Path

SCENARIO_ORDER = ["fanout", "echo", "connect", "rooms", "polling"]
SERVER_ORDER = ["sockeye", "baseline", "socketioxide", "node", "rawws"]

# Per scenario: (metric path, column title, kind). Kinds: "rate" (per second, integer),
# "us" (microseconds), "bytes", "count" (events that should be zero), "pct".
COLUMNS = {
    "fanout": [
        ("deliveries_per_s", "deliveries/s", "rate"),
        ("server_cpu_us_per_delivery", "server CPU µs/delivery", "us"),
        ("latency_us.p50", "p50 µs", "us"),
        ("latency_us.p99", "p99 µs", "us"),
        ("lost", "lost", "count"),
        ("duplicated", "duplicated", "count"),
        ("reordered", "reordered", "count"),
        ("loadgen_cpu_pct", "generator CPU %", "pct"),
    ],
    "echo": [
        ("round_trips_per_s", "round trips/s", "rate"),
        ("server_cpu_us_per_round_trip", "server CPU µs/round trip", "us"),
        ("rtt_us.p50", "p50 µs", "us"),
        ("rtt_us.p99", "p99 µs", "us"),
        ("loadgen_cpu_pct", "generator CPU %", "pct"),
    ],
    "connect": [
        ("connections_per_s", "connections/s", "rate"),
        ("rss_per_conn_bytes", "RSS bytes/connection", "bytes"),
        ("server_cpu_us_per_connection", "server CPU µs/connection", "us"),
        ("failed", "failed", "count"),
    ],
    "rooms": [
        ("deliveries_per_s", "deliveries/s", "rate"),
        ("latency_us.p50", "p50 µs", "us"),
        ("latency_us.p99", "p99 µs", "us"),
        ("lost", "lost", "count"),
        ("reordered", "reordered", "count"),
    ],
    "polling": [
        ("deliveries_per_s", "deliveries/s", "rate"),
        ("latency_us.p50", "p50 µs", "us"),
        ("latency_us.p99", "p99 µs", "us"),
        ("lost", "lost", "count"),
        ("reordered", "reordered", "count"),
    ],
}

# (scenario, metric, peer or None for an absolute bound, comparison, bound, description).
# A ratio is sockeye's median divided by the peer's median.
TARGETS = [
    ("fanout", "server_cpu_us_per_delivery", "socketioxide", "<=", 0.5,
     "fanout CPU per delivery, sockeye / socketioxide"),
    ("fanout", "server_cpu_us_per_delivery", "node", "<=", 0.35,
     "fanout CPU per delivery, sockeye / node"),
    ("fanout", "server_cpu_us_per_delivery", "rawws", "<=", 1.0,
     "fanout CPU per delivery, sockeye / rawws"),
    ("fanout", "latency_us.p99", "rawws", "<=", 1.0,
     "fanout p99 latency, sockeye / rawws"),
    ("echo", "server_cpu_us_per_round_trip", "socketioxide", "<=", 0.6,
     "echo CPU per round trip, sockeye / socketioxide"),
    ("connect", "connections_per_s", "socketioxide", ">=", 1.5,
     "connections per second, sockeye / socketioxide"),
    ("connect", "rss_per_conn_bytes", None, "<=", 4096,
     "sockeye RSS per idle connection, bytes"),
    # `baseline` is sockeye built from another commit (run.sh's BASELINE_BIN): a change may not
    # make the hot paths slower beyond the noise. Judged only when baseline runs were made.
    ("fanout", "server_cpu_us_per_delivery", "baseline", "<=", 1.1,
     "fanout CPU per delivery, sockeye / baseline (no regression)"),
    ("echo", "server_cpu_us_per_round_trip", "baseline", "<=", 1.1,
     "echo CPU per round trip, sockeye / baseline (no regression)"),
]

# Counters that make a run's throughput or CPU figures suspect when not zero.
TROUBLE_COUNTERS = ["lost", "duplicated", "reordered", "disconnected", "failed",
                    "dropped_while_idle"]
# Above this the generator, not the server, may be what limits a run.
LOADGEN_SATURATED_PCT = 90.0

FILE_NAME = re.compile(r"^(?P<scenario>[a-z]+)-(?P<server>[a-z0-9_]+)-(?P<round>\d+)\.json$")


def lookup(record, path):
    """Returns the number at a dotted path, or None when absent or not a number."""
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_runs(folder):
    """Returns {scenario: {server: [record, ...]}} and a list of problems found while reading."""
    runs = {}
    problems = []
    for path in sorted(folder.glob("*.json")):
        match = FILE_NAME.match(path.name)
        if not match:
            continue
        lines = [line for line in path.read_text().splitlines() if line.strip().startswith("{")]
        if not lines:
            problems.append(f"{path.name}: no JSON line")
            continue
        try:
            record = json.loads(lines[-1])
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}: not JSON ({e})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{path.name}: not a JSON object")
            continue
        scenario, server = match["scenario"], match["server"]
        if record.get("scenario", scenario) != scenario:
            problems.append(f"{path.name}: says scenario {record.get('scenario')!r}")
        if record.get("label", server) != server:
            problems.append(f"{path.name}: says label {record.get('label')!r}")
        record["_round"] = int(match["round"])
        record["_file"] = path.name
        runs.setdefault(scenario, {}).setdefault(server, []).append(record)
    return runs, problems


def run_ok(record):
    return record.get("ok", True) is not False


def ordered(keys, order):
    return [k for k in order if k in keys] + sorted(k for k in keys if k not in order)


def summarise(runs):
    """Medians over the runs that succeeded: {scenario: {server: {...}}}."""
    out = {}
    for scenario, by_server in runs.items():
        columns = COLUMNS.get(scenario, [])
        for server, records in by_server.items():
            good = [r for r in records if run_ok(r)]
            entry = {
                "runs": len(records),
                "ok_runs": len(good),
                "median": {},
                "max": {},
                "errors": [f"{r['_file']}: {r.get('error', 'failed')}" for r in records
                           if not run_ok(r)],
                "trouble": {},
                "loadgen_saturated": False,
            }
            for path, _, _ in columns:
                values = [v for v in (lookup(r, path) for r in good) if v is not None]
                if values:
                    entry["median"][path] = statistics.median(values)
                    entry["max"][path] = max(values)
            for counter in TROUBLE_COUNTERS:
                total = sum(lookup(r, counter) or 0 for r in good)
                if total:
                    entry["trouble"][counter] = total
            entry["loadgen_saturated"] = any(
                (lookup(r, "loadgen_cpu_pct") or 0) > LOADGEN_SATURATED_PCT for r in good)
            out.setdefault(scenario, {})[server] = entry
    return out


def judge(summary):
    """Evaluates each target: a list of dicts with value, verdict and notes."""
    verdicts = []
    for scenario, metric, peer, op, bound, description in TARGETS:
        servers = summary.get(scenario, {})
        if peer == "baseline" and peer not in servers:
            continue  # a comparison with another commit only when one was run
        ours = servers.get("sockeye", {}).get("median", {}).get(metric)
        theirs = servers.get(peer, {}).get("median", {}).get(metric) if peer else None
        value = None
        if peer is None:
            value = ours
        elif ours is not None and theirs:
            value = ours / theirs
        verdict = "n/a"
        if value is not None:
            passed = value <= bound if op == "<=" else value >= bound
            verdict = "PASS" if passed else "MISS"
        notes = []
        for who in ["sockeye"] + ([peer] if peer else []):
            entry = servers.get(who)
            if entry is None:
                notes.append(f"no {who} runs")
                continue
            if entry["ok_runs"] < entry["runs"]:
                notes.append(f"{who}: {entry['runs'] - entry['ok_runs']} failed run(s)")
            for counter, total in entry["trouble"].items():
                notes.append(f"{who}: {counter} {total:g} over all rounds")
            if entry["loadgen_saturated"]:
                notes.append(f"{who}: generator above {LOADGEN_SATURATED_PCT:.0f}% CPU")
        verdicts.append({
            "scenario": scenario,
            "metric": metric,
            "peer": peer,
            "target": f"{op} {bound:g}",
            "description": description,
            "sockeye": ours,
            "peer_value": theirs,
            "value": value,
            "verdict": verdict,
            "notes": notes,
        })
    return verdicts


def fmt(value, kind):
    if value is None:
        return "–"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "bytes":
        return f"{value:,.0f}"
    if kind == "count":
        return f"{value:g}"
    if kind == "pct":
        return f"{value:.0f}"
    # Microseconds: two decimals below 10, one below 100, whole numbers above.
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown(folder, summary, verdicts, problems):
    lines = [f"# Benchmark results: {folder.name}", ""]
    machine = folder / "machine.txt"
    if machine.exists():
        lines.append("```")
        lines.extend(machine.read_text().rstrip("\n").splitlines())
        lines.append("```")
        lines.append("")
    lines.append("Medians over rounds (failed runs excluded); counters that should be zero show"
                 " the median, with the worst round in parentheses when it differs.")
    lines.append("")
    for scenario in ordered(summary.keys(), SCENARIO_ORDER):
        columns = COLUMNS.get(scenario, [])
        by_server = summary[scenario]
        lines.append(f"## {scenario}")
        lines.append("")
        lines.append("| server | runs ok | " + " | ".join(title for _, title, _ in columns) + " |")
        lines.append("|---|---|" + "---|" * len(columns))
        for server in ordered(by_server.keys(), SERVER_ORDER):
            entry = by_server[server]
            cells = []
            for path, _, kind in columns:
                median = entry["median"].get(path)
                cell = fmt(median, kind)
                worst = entry["max"].get(path)
                if kind == "count" and worst is not None and worst != median:
                    cell += f" ({fmt(worst, kind)})"
                cells.append(cell)
            lines.append(f"| {server} | {entry['ok_runs']}/{entry['runs']} | "
                         + " | ".join(cells) + " |")
        errors = [e for s in ordered(by_server.keys(), SERVER_ORDER)
                  for e in by_server[s]["errors"]]
        if errors:
            lines.append("")
            lines.extend(f"- failed: {e}" for e in errors)
        lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.append("| target | sockeye | peer | value | bound | verdict | notes |")
    lines.append("|---|---|---|---|---|---|---|")
    for v in verdicts:
        kind = "rate" if "per_s" in v["metric"] else "bytes" if "bytes" in v["metric"] else "us"
        value = "–" if v["value"] is None else (
            fmt(v["value"], "bytes") if v["peer"] is None else f"{v['value']:.2f}")
        lines.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            v["description"], fmt(v["sockeye"], kind),
            "–" if v["peer"] is None else f"{v['peer']} {fmt(v['peer_value'], kind)}",
            value, v["target"], v["verdict"], "; ".join(v["notes"]) or ""))
    lines.append("")
    failures = folder / "failures.txt"
    notes = problems + ([line for line in failures.read_text().splitlines() if line.strip()]
                        if failures.exists() else [])
    if notes:
        lines.append("## Problems")
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
        lines.append("")
    return "\n".join(lines)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) != 1 or any(a not in ("--json",) for a in argv[1:] if a.startswith("--")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    folder = Path(args[0])
    if not folder.is_dir():
        print(f"summarize.py: {folder} is not a folder", file=sys.stderr)
        return 2
    runs, problems = load_runs(folder)
    summary = summarise(runs)
    verdicts = judge(summary)
    if "--json" in argv:
        print(json.dumps({"summary": summary, "targets": verdicts}, ensure_ascii=False))
    else:
        print(markdown(folder, summary, verdicts, problems))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
