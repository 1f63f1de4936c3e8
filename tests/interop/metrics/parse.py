"""Parses a Prometheus text exposition from stdin with prometheus_client's own parser and prints
it as JSON: {"families": {name: type}, "samples": [[name, {label: value}, value], ...]}.

Any text the parser refuses makes it exit non-zero (tests/metrics.rs runs it)."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    families = {}
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        if family.name in families:
            raise SystemExit(f"family {family.name} appears twice")
        families[family.name] = family.type
        for s in family.samples:
            samples.append([s.name, dict(s.labels), s.value])
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
