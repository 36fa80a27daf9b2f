#!/usr/bin/env python3
"""Assert that a CycloneDX SBOM lists exactly the runtime crates of the shipped target.

    python3 tests/supply_chain/sbom_check.py --sbom SBOM.json [--manifest-path Cargo.toml]
        [--target x86_64-unknown-linux-musl] [--source-date-epoch N] [--self-test]

The reference is cargo itself:
  * the crate set is `cargo tree -e normal --target T --prefix none` (normal edges only: no dev or
    build dependencies), and must be the same for x86_64-unknown-linux-gnu;
  * licences come from `cargo metadata`; checksums from Cargo.lock.
Checked per crate: name, version, licence expression, purl (pkg:cargo/NAME@VERSION), SHA-256.
Also: spec version >= 1.5, the timestamp is SOURCE_DATE_EPOCH, the dependency graph only names
listed components, and the root crate's licence is the text of the repository's LICENSE file
(--license-file: its whitespace-normalised SHA-256 must be that licence's canonical text).
--self-test also proves the check fails on a tampered SBOM or licence text.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib

GNU = "x86_64-unknown-linux-gnu"

# SPDX id -> SHA-256 of the licence's canonical text with all whitespace runs folded to one space and the
# ends stripped (so a re-wrapped copy still matches, an edited one does not). Apache-2.0: the text published
# at apache.org/licenses/LICENSE-2.0.txt, identical to Debian's /usr/share/common-licenses/Apache-2.0.
LICENSE_TEXTS = {"Apache-2.0": "0ffddef9e48f8a09aed5caf2d44f7ba1c1be2d9b8e0a6f693b1635b2d5566645"}


def license_text_digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def check_license(bom: dict, text: str) -> str:
    """The root crate's licence expression is one SPDX id whose canonical text is `text`; raises Mismatch."""
    root = bom.get("metadata", {}).get("component") or {}
    lic = [l.get("expression") or l.get("license", {}).get("id") for l in root.get("licenses", [])]
    if len(lic) != 1 or lic[0] not in LICENSE_TEXTS:
        raise Mismatch(f"root licence {lic} is not one of the licences with a known text {sorted(LICENSE_TEXTS)}")
    got = license_text_digest(text)
    if got != LICENSE_TEXTS[lic[0]]:
        raise Mismatch(f"LICENSE is not the {lic[0]} text (normalised sha256 {got})")
    return lic[0]


class Mismatch(Exception):
    pass


def cargo_tree(manifest: str, target: str) -> set[tuple[str, str]]:
    out = subprocess.run(
        ["cargo", "tree", "--locked", "--manifest-path", manifest, "-e", "normal",
         "--target", target, "--prefix", "none", "--format", "{p}"],
        check=True, capture_output=True, text=True).stdout
    crates = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].startswith("v"):
            continue
        crates.add((parts[0], parts[1][1:]))
    if not crates:
        raise SystemExit("cargo tree printed no crates")
    return crates


def cargo_metadata(manifest: str, target: str) -> dict[tuple[str, str], dict]:
    out = subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1", "--manifest-path", manifest,
         "--filter-platform", target],
        check=True, capture_output=True, text=True).stdout
    return {(p["name"], p["version"]): p for p in json.loads(out)["packages"]}


def lock_checksums(manifest: str) -> dict[tuple[str, str], str]:
    lock = os.path.join(os.path.dirname(os.path.abspath(manifest)), "Cargo.lock")
    with open(lock, "rb") as f:
        data = tomllib.load(f)
    return {(p["name"], p["version"]): p["checksum"] for p in data.get("package", []) if "checksum" in p}


def check(bom: dict, expected: set[tuple[str, str]], meta: dict, sums: dict, epoch: str | None) -> list[str]:
    """Returns the list of crates as 'name version licence purl' lines; raises Mismatch."""
    errors: list[str] = []
    if bom.get("bomFormat") != "CycloneDX":
        errors.append(f"bomFormat is {bom.get('bomFormat')!r}")
    spec = tuple(int(x) for x in str(bom.get("specVersion", "0")).split("."))
    if spec < (1, 5):
        errors.append(f"specVersion {bom.get('specVersion')} < 1.5")
    if epoch is not None:
        want = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        got = bom.get("metadata", {}).get("timestamp", "")
        if not re.fullmatch(re.escape(want) + r"(\.0+)?Z", got):
            errors.append(f"metadata.timestamp {got!r} is not SOURCE_DATE_EPOCH ({want}Z)")

    root = bom.get("metadata", {}).get("component")
    comps = list(bom.get("components", []))
    if root is None:
        errors.append("metadata.component (the root crate) is missing")
        listed = comps
    else:
        listed = [root] + comps

    seen: dict[tuple[str, str], dict] = {}
    for c in listed:
        key = (c.get("name"), c.get("version"))
        if key in seen:
            errors.append(f"{key[0]} {key[1]} is listed twice")
        seen[key] = c
    missing = expected - set(seen)
    extra = set(seen) - expected
    for n, v in sorted(missing):
        errors.append(f"missing from the SBOM: {n} {v}")
    for n, v in sorted(extra):
        errors.append(f"in the SBOM but not in `cargo tree -e normal`: {n} {v}")

    rows = []
    for key in sorted(set(seen) & expected):
        c, name, version = seen[key], key[0], key[1]
        pkg = meta.get(key)
        if pkg is None:
            errors.append(f"{name} {version} is not in cargo metadata")
            continue
        lic = [l.get("expression") or l.get("license", {}).get("id") for l in c.get("licenses", [])]
        if lic != [pkg["license"]]:
            errors.append(f"{name} {version}: licence {lic} != cargo metadata {pkg['license']!r}")
        purl = c.get("purl", "")
        want_purl = f"pkg:cargo/{name}@{version}"
        if pkg["source"] is None:  # the root crate (a path package): cargo-cyclonedx adds qualifiers
            if not (purl == want_purl or purl.startswith(want_purl + "?") or purl.startswith(want_purl + "#")):
                errors.append(f"{name} {version}: purl {purl!r} does not start with {want_purl!r}")
        else:
            if purl != want_purl:
                errors.append(f"{name} {version}: purl {purl!r} != {want_purl!r}")
            if not pkg["source"].startswith("registry+https://github.com/rust-lang/crates.io-index"):
                errors.append(f"{name} {version}: source {pkg['source']} is not crates.io")
            hashes = {h.get("alg"): h.get("content") for h in c.get("hashes", [])}
            if hashes.get("SHA-256") != sums.get(key):
                errors.append(f"{name} {version}: SHA-256 {hashes.get('SHA-256')} != Cargo.lock {sums.get(key)}")
        rows.append(f"{name} {version} {' '.join(lic)} {purl}")

    refs = {c.get("bom-ref") for c in listed}
    for d in bom.get("dependencies", []):
        for r in [d.get("ref")] + list(d.get("dependsOn", [])):
            if r not in refs:
                errors.append(f"dependency graph names {r!r}, which is not a listed component")
    if errors:
        raise Mismatch("\n".join(errors))
    return rows


def self_test(bom: dict, expected, meta, sums, epoch, license_text: str | None) -> None:
    """Every tampering must be caught."""
    def mutate(desc, fn):
        b = copy.deepcopy(bom)
        fn(b)
        try:
            check(b, expected, meta, sums, epoch)
        except Mismatch:
            print(f"  self-test ok: caught {desc}")
            return
        raise SystemExit(f"self-test FAILED: the check accepted an SBOM with {desc}")

    extra = copy.deepcopy(bom["components"][0])
    extra.update(name="left-pad", purl="pkg:cargo/left-pad@1.0.0", **{"bom-ref": "x#left-pad@1.0.0"})
    mutate("an extra crate", lambda b: b["components"].append(extra))
    mutate("a missing crate", lambda b: b["components"].pop())
    mutate("a wrong version", lambda b: b["components"][0].update(version="9.9.9"))
    mutate("a wrong licence", lambda b: b["components"][0].update(licenses=[{"expression": "MIT"}]))
    mutate("a wrong purl", lambda b: b["components"][0].update(purl="pkg:cargo/evil@0.0.1"))
    mutate("a wrong checksum",
           lambda b: b["components"][0].update(hashes=[{"alg": "SHA-256", "content": "0" * 64}]))
    mutate("spec version 1.4", lambda b: b.update(specVersion="1.4"))
    if epoch is not None:
        mutate("a wall-clock timestamp", lambda b: b["metadata"].update(timestamp="2000-01-01T00:00:00Z"))
    if license_text is None:
        return
    def license_case(desc, b, text):
        try:
            check_license(b, text)
        except Mismatch:
            print(f"  self-test ok: caught {desc}")
            return
        raise SystemExit(f"self-test FAILED: the licence check accepted {desc}")
    mit = copy.deepcopy(bom)
    mit["metadata"]["component"]["licenses"] = [{"expression": "MIT"}]
    license_case("a root licence (MIT) other than the LICENSE text", mit, license_text)
    license_case("a LICENSE with one word changed", bom, license_text.replace("irrevocable", "revocable", 1))
    license_case("a truncated LICENSE", bom, license_text[: len(license_text) // 2])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sbom", required=True)
    ap.add_argument("--manifest-path", default="Cargo.toml")
    ap.add_argument("--target", default="x86_64-unknown-linux-musl")
    ap.add_argument("--source-date-epoch", default=os.environ.get("SOURCE_DATE_EPOCH"))
    ap.add_argument("--also-target", action="append", default=[],
                    help="another shipped target whose runtime tree must be the same (repeatable)")
    ap.add_argument("--license-file", help="the repository's LICENSE; the root crate's licence must be its text")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()

    with open(a.sbom) as f:
        bom = json.load(f)
    expected = cargo_tree(a.manifest_path, a.target)
    # One SBOM describes the multi-arch image: the tree must be the same for glibc and for every shipped target.
    for other in (GNU, *a.also_target):
        if other != a.target:
            tree = cargo_tree(a.manifest_path, other)
            if tree != expected:
                raise SystemExit(f"runtime tree differs between {a.target} and {other}: {sorted(tree ^ expected)}")
    meta = cargo_metadata(a.manifest_path, a.target)
    sums = lock_checksums(a.manifest_path)
    try:
        rows = check(bom, expected, meta, sums, a.source_date_epoch)
    except Mismatch as e:
        print(f"SBOM {a.sbom} does not match the runtime tree:\n{e}", file=sys.stderr)
        return 1
    print(f"SBOM matches `cargo tree -e normal --target {a.target}` ({len(rows)} crates, same for {GNU} and "
          f"{', '.join(x for x in a.also_target if x != a.target) or 'no other target'}):")
    for r in rows:
        print(f"  {r}")
    license_text = None
    if a.license_file:
        with open(a.license_file, encoding="utf-8") as f:
            license_text = f.read()
        try:
            spdx = check_license(bom, license_text)
        except Mismatch as e:
            print(f"SBOM root licence vs {a.license_file}: {e}", file=sys.stderr)
            return 1
        print(f"root licence {spdx} = the text of {a.license_file}")
    if a.self_test:
        self_test(bom, expected, meta, sums, a.source_date_epoch, license_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
