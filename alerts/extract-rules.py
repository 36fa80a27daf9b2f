#!/usr/bin/env python3
"""Write the .spec of the PrometheusRule in alerts/alerts.yaml as a plain Prometheus rule file.

promtool and a bare Prometheus read rule files ({groups: [...]}), not Kubernetes objects; the operator does the same
extraction when it mounts the rule into Prometheus. Usage: extract-rules.py SRC.yaml DEST.yaml
"""
import sys

import yaml


def _str(dumper, value):
    # Multi-line strings (PromQL) as literal blocks, so the extracted file reads like the source.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


yaml.SafeDumper.add_representer(str, _str)


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: extract-rules.py SRC.yaml DEST.yaml", file=sys.stderr)
        return 2
    src, dest = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        print(f"{src}: expected exactly one PrometheusRule, found {len(rules)}", file=sys.stderr)
        return 1
    spec = rules[0].get("spec") or {}
    if not spec.get("groups"):
        print(f"{src}: PrometheusRule has no spec.groups", file=sys.stderr)
        return 1
    with open(dest, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": spec["groups"]}, f, sort_keys=False, width=1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
