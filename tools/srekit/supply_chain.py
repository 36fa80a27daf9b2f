"""The file edits and manifest checks of the supply-chain scripts (check-supply-chain.sh, reproducible-build.sh,
sbom.sh): each is a few lines of TOML or JSON handling that bash cannot do safely, and each fails loudly when the
file it edits no longer has the shape it expects, so a changed manifest cannot turn a check into a no-op.

    PYTHONPATH=tools python3 -m srekit.supply_chain deny-config DENY_TOML DB_ROOT OUT
        deny.toml with `db-path = "DB_ROOT"` added to its one [advisories] table, written to OUT
    PYTHONPATH=tools python3 -m srekit.supply_chain add-dep CARGO_TOML LINE
        append LINE to the [dependencies] table of CARGO_TOML, in place (the negative tests' scratch copies)
    PYTHONPATH=tools python3 -m srekit.supply_chain foreign-registry METADATA_JSON
        switch libc's source in `cargo metadata` output to a foreign registry, in place
    PYTHONPATH=tools python3 -m srekit.supply_chain release-profile CARGO_TOML
        fail unless [profile.release] keeps codegen-units = 1, lto = true, strip, incremental = false
    PYTHONPATH=tools python3 -m srekit.supply_chain sbom-path SRC RAW_SBOM OUT
        the SBOM with the source directory SRC in the root bom-ref rewritten to /build/sre-mini, written to OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib


def deny_config(src: str, db: str, out: str) -> int:
    with open(src, encoding="utf-8") as f:
        text = f.read()
    if text.count("\n[advisories]\n") != 1:
        sys.exit("deny.toml must have one [advisories] table")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text.replace("\n[advisories]\n", f'\n[advisories]\ndb-path = "{db}"\n', 1))
    return 0


def add_dep(path: str, line: str) -> int:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if "\n[dependencies]\n" not in text:
        sys.exit(f"{path} has no [dependencies] table")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace("\n[dependencies]\n", "\n[dependencies]\n" + line + "\n", 1))
    return 0


def foreign_registry(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    n = 0
    for pkg in meta["packages"]:
        if pkg["name"] == "libc":
            pkg["source"] = "registry+https://registry.example.invalid/index"
            n += 1
    if n != 1:
        sys.exit(f"expected one libc package in {path}, found {n}")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(meta, f)
    return 0


def release_profile(path: str) -> int:
    """The profile settings reproducibility depends on are part of the reviewed manifest, not of the build script."""
    with open(path, "rb") as f:
        p = tomllib.load(f).get("profile", {}).get("release", {})
    want = {"codegen-units": 1, "lto": True, "incremental": False}
    bad = {k: p.get(k) for k, v in want.items() if p.get(k) != v}
    if p.get("strip") not in ("symbols", True):
        bad["strip"] = p.get("strip")
    if bad:
        print("release profile differs:", bad, file=sys.stderr)
        return 1
    return 0


def sbom_path(src: str, raw: str, out: str) -> int:
    """cargo-cyclonedx writes the source directory into the root crate's bom-ref; like the binary's
    --remap-path-prefix, that prefix becomes /build/sre-mini, and that is the only rewrite."""
    with open(raw, encoding="utf-8") as f:
        text = f.read()
    if text.count("path+file://" + src) == 0:
        sys.exit(f"expected the source path {src} in the root bom-ref; cargo-cyclonedx's output format changed")
    with open(out, "w", encoding="utf-8") as f:
        f.write(text.replace("path+file://" + src, "path+file:///build/sre-mini"))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, args in (("deny-config", ("deny_toml", "db_root", "out")), ("add-dep", ("cargo_toml", "line")),
                       ("foreign-registry", ("metadata_json",)), ("release-profile", ("cargo_toml",)),
                       ("sbom-path", ("src", "raw_sbom", "out"))):
        s = sub.add_parser(name)
        for a in args:
            s.add_argument(a)
    a = p.parse_args(argv)
    if a.cmd == "deny-config":
        return deny_config(a.deny_toml, a.db_root, a.out)
    if a.cmd == "add-dep":
        return add_dep(a.cargo_toml, a.line)
    if a.cmd == "foreign-registry":
        return foreign_registry(a.metadata_json)
    if a.cmd == "release-profile":
        return release_profile(a.cargo_toml)
    return sbom_path(a.src, a.raw_sbom, a.out)


if __name__ == "__main__":
    sys.exit(main())
