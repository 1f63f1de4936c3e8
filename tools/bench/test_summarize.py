#!/usr/bin/env python3
"""Tests of summarize.py on fabricated generator lines: python3 tools/bench/test_summarize.py"""

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import summarize  # noqa: E402


def fanout(label, cpu, p99, lost=0, reordered=0, ok=True, loadgen=50.0):
    return {"scenario": "fanout", "label": label, "ok": ok, "deliveries_per_s": 100000.0,
            "server_cpu_us_per_delivery": cpu,
            "latency_us": {"p50": 300, "p90": 500, "p99": p99, "max": 4000},
            "lost": lost, "duplicated": 0, "reordered": reordered, "loadgen_cpu_pct": loadgen}


class SummarizeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, scenario, server, round_, record):
        (self.dir / f"{scenario}-{server}-{round_}.json").write_text(json.dumps(record) + "\n")

    def targets(self):
        runs, problems = summarize.load_runs(self.dir)
        summary = summarize.summarise(runs)
        return summary, {(t["metric"], t["peer"]): t for t in summarize.judge(summary)}, problems

    def test_median_over_rounds_and_ratio_verdicts(self):
        for round_, cpu in enumerate([1.0, 5.0, 1.2], start=1):
            self.write("fanout", "sockeye", round_, fanout("sockeye", cpu, 900))
        for round_, cpu in enumerate([3.0, 2.0, 2.6], start=1):
            self.write("fanout", "socketioxide", round_, fanout("socketioxide", cpu, 1000))
        self.write("fanout", "node", 1, fanout("node", 3.0, 1000))
        self.write("fanout", "rawws", 1, fanout("rawws", 1.0, 800))
        summary, targets, _ = self.targets()
        self.assertEqual(summary["fanout"]["sockeye"]["median"]["server_cpu_us_per_delivery"], 1.2)
        vs_sio = targets[("server_cpu_us_per_delivery", "socketioxide")]
        self.assertAlmostEqual(vs_sio["value"], 1.2 / 2.6)
        self.assertEqual(vs_sio["verdict"], "PASS")
        self.assertEqual(targets[("server_cpu_us_per_delivery", "node")]["verdict"], "MISS")
        self.assertEqual(targets[("server_cpu_us_per_delivery", "rawws")]["verdict"], "MISS")
        self.assertEqual(targets[("latency_us.p99", "rawws")]["verdict"], "MISS")
        self.assertEqual(targets[("connections_per_s", "socketioxide")]["verdict"], "n/a")

    def test_failed_runs_are_excluded_and_noted(self):
        self.write("fanout", "sockeye", 1, fanout("sockeye", 1.0, 900))
        self.write("fanout", "sockeye", 2, {"scenario": "fanout", "label": "sockeye",
                                            "ok": False, "error": "connect refused"})
        self.write("fanout", "rawws", 1, fanout("rawws", 1.0, 900, lost=3, loadgen=95.0))
        summary, targets, _ = self.targets()
        entry = summary["fanout"]["sockeye"]
        self.assertEqual((entry["runs"], entry["ok_runs"]), (2, 1))
        floor = targets[("server_cpu_us_per_delivery", "rawws")]
        self.assertEqual(floor["verdict"], "PASS")
        notes = "; ".join(floor["notes"])
        self.assertIn("sockeye: 1 failed run(s)", notes)
        self.assertIn("rawws: lost 3", notes)
        self.assertIn("rawws: generator above 90% CPU", notes)

    def test_connect_absolute_and_higher_is_better(self):
        self.write("connect", "sockeye", 1, {"scenario": "connect", "label": "sockeye",
                                             "connections_per_s": 30000, "rss_per_conn_bytes": 5000})
        self.write("connect", "socketioxide", 1, {"scenario": "connect", "label": "socketioxide",
                                                  "connections_per_s": 15000,
                                                  "rss_per_conn_bytes": 9000})
        _, targets, _ = self.targets()
        self.assertEqual(targets[("connections_per_s", "socketioxide")]["verdict"], "PASS")
        rss = targets[("rss_per_conn_bytes", None)]
        self.assertEqual((rss["value"], rss["verdict"]), (5000, "MISS"))

    def test_bad_files_are_reported_not_fatal(self):
        (self.dir / "fanout-node-1.json").write_text("generator crashed\n")
        (self.dir / "echo-node-1.json").write_text("{not json\n")
        self.write("echo", "sockeye", 1, {"scenario": "fanout", "label": "sockeye"})
        (self.dir / "notes.json").write_text("{}\n")
        _, _, problems = self.targets()
        self.assertEqual(len(problems), 3, problems)

    def test_markdown_and_json_output(self):
        self.write("echo", "sockeye", 1, {"scenario": "echo", "label": "sockeye",
                                          "round_trips_per_s": 40000.0,
                                          "server_cpu_us_per_round_trip": 2.0,
                                          "rtt_us": {"p50": 100, "p90": 150, "p99": 300,
                                                     "max": 900}})
        self.write("echo", "socketioxide", 1, {"scenario": "echo", "label": "socketioxide",
                                               "round_trips_per_s": 30000.0,
                                               "server_cpu_us_per_round_trip": 5.0,
                                               "rtt_us": {"p50": 120, "p99": 400}})
        script = Path(summarize.__file__)
        md = subprocess.run([sys.executable, script, self.dir], check=True,
                            capture_output=True, text=True).stdout
        self.assertIn("## echo", md)
        self.assertIn("| sockeye | 1/1 | 40,000 | 2.00 | 100 | 300 |", md)
        self.assertIn("| echo CPU per round trip, sockeye / socketioxide | 2.00 | "
                      "socketioxide 5.00 | 0.40 | <= 0.6 | PASS |", md)
        out = subprocess.run([sys.executable, script, self.dir, "--json"], check=True,
                             capture_output=True, text=True).stdout
        self.assertIn("targets", json.loads(out))


if __name__ == "__main__":
    unittest.main()
