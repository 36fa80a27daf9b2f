"""What the offline validators of check-k8s.sh are asked and how their answers are judged: the
Kubernetes versions kubernetes-validate ships schemas for, and checkov's JSON report (zero failures, every skip
with a reason, something evaluated).

    PYTHONPATH=tools python3 -m srekit.validators k8s-versions MIN
        every minor version kubernetes-validate ships from MIN (e.g. 1.30) to the newest, as X.Y.0, one a line
    PYTHONPATH=tools python3 -m srekit.validators checkov REPORT_JSON FRAMEWORK
        exit 1 on a failed check, a skip without a reason, a parsing error or no passed check in FRAMEWORK's results
"""

from __future__ import annotations

import argparse
import json
import sys


def k8s_versions(minimum: str) -> list[str]:
    """One X.Y.0 per minor version that kubernetes-validate ships, from `minimum` up (its patch releases share a
    schema, so validating every one would repeat the same check)."""
    from kubernetes_validate.utils import all_versions

    lo = tuple(int(x) for x in minimum.split(".")[:2])
    seen = sorted({tuple(int(x) for x in v.split(".")[:2]) for v in all_versions()})
    return [f"{a}.{b}.0" for a, b in seen if (a, b) >= lo]


def _rule_order(check_id: str):
    parts = check_id.split("_")
    return parts[0], parts[1], int(parts[-1])


def judge_checkov(path: str, fw: str) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except Exception as e:
        sys.exit(f"FAIL: checkov wrote no JSON: {e}")
    data = data if isinstance(data, list) else [data]
    data = [d for d in data if d.get("check_type") == fw]
    if not data:
        sys.exit(f"FAIL: checkov reported no {fw} results")
    r = data[0]["results"]
    s = data[0]["summary"]
    bad = 0
    for c in r.get("failed_checks", []):
        print(f"FAIL: {c['check_id']} {c['check_name']} on {c['resource']} ({c.get('file_line_range')})")
        bad = 1
    for c in r.get("skipped_checks", []):
        why = (c.get("check_result") or {}).get("suppress_comment", "") or ""
        if len(why.strip()) < 20 or why.strip().lower() == "no comment provided":
            print(f"FAIL: {c['check_id']} skipped on {c['resource']} without a reason")
            bad = 1
        else:
            print(f"  skipped {c['check_id']} on {c['resource']}: {why.strip()}")
    if s.get("parsing_errors"):
        print(f"FAIL: {s['parsing_errors']} parsing errors")
        bad = 1
    passed = sorted({c["check_id"] for c in r.get("passed_checks", [])}, key=_rule_order)
    if not passed:
        print("FAIL: no check passed: checkov evaluated nothing")
        bad = 1
    print(f"checkov {fw} {s.get('checkov_version')}: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped "
          f"over {s.get('resource_count')} resources; {len(passed)} distinct rules passed:")
    print("  " + " ".join(passed))
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("k8s-versions").add_argument("minimum")
    c = sub.add_parser("checkov")
    c.add_argument("report")
    c.add_argument("framework")
    a = p.parse_args(argv)
    if a.cmd == "k8s-versions":
        versions = k8s_versions(a.minimum)
        if versions:  # none prints nothing, so the caller's "at least one version" guard can fail
            print("\n".join(versions))
        return 0
    return judge_checkov(a.report, a.framework)


if __name__ == "__main__":
    sys.exit(main())
