#!/usr/bin/env python3
"""The CI workflow hardening policy, as a test (actionlint and zizmor run beside it).

    python3 tests/supply_chain/workflow_check.py [.github/workflows/ci.yml] [--self-test]

Asserts:
  * every `uses:` is pinned by a full 40-hex commit SHA and carries a `# vX.Y.Z` comment, and one
    action is pinned to one SHA throughout;
  * top-level `permissions: {}`; every job declares its own permissions and a timeout; write grants
    only in `release` and only id-token, attestations and packages;
  * `release` runs only on pushes to main or v* tags and needs every other job;
  * every checkout has `persist-credentials: false`;
  * no pull_request_target / workflow_run trigger; a concurrency group exists;
  * the jobs code, dependencies, build-evidence, configuration, scanning and release exist, and `code` runs the
    check command itself (`bash .ci/run`), so CI does what the check command does;
  * `release` runs in a GitHub environment (whose required reviewers gate the push);
  * Trivy fails on HIGH and CRITICAL, and its binary version is pinned.
--self-test proves that each violation is reported.
"""
from __future__ import annotations

import copy
import re
import sys

import yaml

JOBS = ["code", "dependencies", "build-evidence", "configuration", "scanning", "release"]
RELEASE_WRITES = {"id-token", "attestations", "packages"}
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*(#.*)?$")
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^#\s*v\d+\.\d+\.\d+\b")


def check(text: str) -> list[str]:
    errors: list[str] = []
    pins: dict[str, set[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = USES_LINE.match(line)
        if not m:
            continue
        ref, comment = m.group(1), (m.group(2) or "")
        if ref.startswith("./") or ref.startswith("docker://"):
            errors.append(f"line {n}: {ref}: local and docker:// actions are not allowed here")
            continue
        if not PINNED.match(ref):
            errors.append(f"line {n}: {ref} is not pinned by a full commit SHA")
        if not VERSION_COMMENT.match(comment):
            errors.append(f"line {n}: {ref} has no '# vX.Y.Z' version comment")
        action, _, sha = ref.partition("@")
        pins.setdefault(action, set()).add(sha)
    for action, shas in pins.items():
        if len(shas) > 1:
            errors.append(f"{action} is pinned to {len(shas)} different SHAs: {sorted(shas)}")

    wf = yaml.safe_load(text)
    on = wf.get("on", wf.get(True, {}))
    triggers = set(on) if isinstance(on, dict) else set(on if isinstance(on, list) else [on])
    for bad in ("pull_request_target", "workflow_run"):
        if bad in triggers:
            errors.append(f"trigger {bad} is not allowed")
    if wf.get("permissions", None) != {}:
        errors.append(f"top-level permissions must be {{}}, found {wf.get('permissions')!r}")
    if not (isinstance(wf.get("concurrency"), dict) and wf["concurrency"].get("group")):
        errors.append("no concurrency group")

    jobs = wf.get("jobs", {})
    for name in JOBS:
        if name not in jobs:
            errors.append(f"job {name} is missing")
    for name, job in jobs.items():
        if not isinstance(job.get("timeout-minutes"), int):
            errors.append(f"job {name}: no timeout-minutes")
        perms = job.get("permissions")
        if not isinstance(perms, dict):
            errors.append(f"job {name}: permissions must be an explicit mapping, found {perms!r}")
            perms = {}
        for scope, level in perms.items():
            if level == "write" and not (name == "release" and scope in RELEASE_WRITES):
                errors.append(f"job {name}: {scope}: write is not allowed")
            elif level not in ("read", "write", "none"):
                errors.append(f"job {name}: {scope}: {level!r}")
        for i, step in enumerate(job.get("steps", [])):
            uses = step.get("uses", "")
            if uses.startswith("actions/checkout@"):
                if (step.get("with") or {}).get("persist-credentials") is not False:
                    errors.append(f"job {name} step {i}: checkout without persist-credentials: false")
            if uses.startswith("aquasecurity/trivy-action@"):
                w = step.get("with") or {}
                if w.get("severity") != "HIGH,CRITICAL" or str(w.get("exit-code")) != "1":
                    errors.append(f"job {name} step {i}: Trivy must fail (exit-code 1) on HIGH,CRITICAL")
                if w.get("skip-setup-trivy") != "true" and not re.fullmatch(r"v\d+\.\d+\.\d+", str(w.get("version", ""))):
                    errors.append(f"job {name} step {i}: Trivy's binary version is not pinned")
    if not any(str(s.get("run", "")).strip() == "bash .ci/run" for s in jobs.get("code", {}).get("steps", [])):
        errors.append("job code does not run the check command (a step `run: bash .ci/run`)")
    rel = jobs.get("release", {})
    if not rel.get("environment"):
        errors.append("release does not run in a GitHub environment (no approval gate)")
    cond = str(rel.get("if", ""))
    if not ("refs/heads/main" in cond and "refs/tags/" in cond and "push" in cond):
        errors.append(f"release must run only on pushes to main and tags, found if: {cond!r}")
    if set(rel.get("needs", [])) != set(JOBS) - {"release"}:
        errors.append(f"release must need every other job, found {rel.get('needs')!r}")
    return errors


def self_test(text: str) -> None:
    wf_sha = re.search(r"actions/checkout@([0-9a-f]{40})", text).group(1)

    def expect(desc: str, mutated: str) -> None:
        if not check(mutated):
            raise SystemExit(f"self-test FAILED: the policy accepted {desc}")
        print(f"  self-test ok: caught {desc}")

    expect("a tag pin", text.replace(f"actions/checkout@{wf_sha}", "actions/checkout@v4", 1))
    expect("a short SHA", text.replace(f"actions/checkout@{wf_sha}", f"actions/checkout@{wf_sha[:12]}", 1))
    expect("a missing version comment", re.sub(r"(actions/checkout@[0-9a-f]{40}) # v[\d.]+", r"\1", text, count=1))
    expect("persisted credentials", text.replace("persist-credentials: false", "persist-credentials: true", 1))
    expect("pull_request_target", text.replace("  pull_request:\n", "  pull_request_target:\n", 1))
    expect("a broad top-level grant", re.sub(r"^permissions: \{\}$", "permissions: write-all", text, count=1, flags=re.M))
    expect("a write grant outside release",
           text.replace("permissions:\n      contents: read", "permissions:\n      contents: write", 1))
    expect("a job without a timeout", re.sub(r"\n    timeout-minutes: \d+", "", text, count=1))
    expect("a Trivy scan that does not fail", text.replace('exit-code: "1"', 'exit-code: "0"', 1))
    expect("CI not running the check command", text.replace("run: bash .ci/run", "run: cargo test --locked", 1))
    expect("a release without an environment", text.replace("    environment: release\n", "", 1))


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = args[0] if args else ".github/workflows/ci.yml"
    text = open(path).read()
    errors = check(text)
    if errors:
        print(f"{path} breaks the workflow policy:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    uses = sorted({m.group(1) + " " + (m.group(2) or "") for l in text.splitlines() if (m := USES_LINE.match(l))})
    print(f"{path}: workflow policy holds; {len(uses)} pinned actions:")
    for u in uses:
        print(f"  {u}")
    if "--self-test" in sys.argv:
        self_test(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
