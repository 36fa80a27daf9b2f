#!/usr/bin/env python3
"""Read the dependency list that `cargo auditable` embeds in a binary and compare it with the tree.

    python3 tests/supply_chain/auditable_check.py BINARY [--manifest-path Cargo.toml]
        [--target x86_64-unknown-linux-musl]

cargo-auditable stores zlib-compressed JSON in the ELF section `.dep-v0`; `cargo audit bin`, Trivy,
Syft and Grype read it. This check parses the ELF itself (no objcopy needed), and asserts:
  * the section exists and decodes;
  * its runtime packages (kind != build) are exactly `cargo tree -e normal --target T`;
  * the binary is statically linked (no PT_INTERP, no PT_DYNAMIC with DT_NEEDED).
"""
from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import zlib


def elf_sections(data: bytes) -> dict[str, bytes]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise SystemExit("not a little-endian ELF64 file")
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
    strtab = heads[e_shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]
    out = {}
    for h in heads:
        name = names[h[0]:names.index(b"\0", h[0])].decode()
        out[name] = data[h[4]:h[4] + h[5]]
    return out


def program_header_types(data: bytes) -> set[int]:
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    return {struct.unpack_from("<I", data, e_phoff + i * e_phentsize)[0] for i in range(e_phnum)}


def dt_needed(sections: dict[str, bytes]) -> int:
    dyn = sections.get(".dynamic", b"")
    return sum(1 for i in range(0, len(dyn) - 15, 16) if struct.unpack_from("<q", dyn, i)[0] == 1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--manifest-path", default="Cargo.toml")
    ap.add_argument("--target", default="x86_64-unknown-linux-musl")
    a = ap.parse_args()

    data = open(a.binary, "rb").read()
    sections = elf_sections(data)
    if ".dep-v0" not in sections:
        print(f"{a.binary}: no .dep-v0 section; was it built with `cargo auditable`?", file=sys.stderr)
        return 1
    info = json.loads(zlib.decompress(sections[".dep-v0"]))
    embedded = {(p["name"], p["version"]) for p in info["packages"] if p.get("kind", "runtime") != "build"}
    build_only = sorted((p["name"], p["version"]) for p in info["packages"] if p.get("kind") == "build")

    out = subprocess.run(
        ["cargo", "tree", "--locked", "--manifest-path", a.manifest_path, "-e", "normal",
         "--target", a.target, "--prefix", "none", "--format", "{p}"],
        check=True, capture_output=True, text=True).stdout
    tree = {(l.split()[0], l.split()[1][1:]) for l in out.splitlines() if len(l.split()) > 1}

    ok = True
    if embedded != tree:
        print(f"embedded dependency list != cargo tree: only embedded {sorted(embedded - tree)}, "
              f"only in tree {sorted(tree - embedded)}", file=sys.stderr)
        ok = False
    PT_INTERP = 3
    if PT_INTERP in program_header_types(data) or dt_needed(sections):
        print(f"{a.binary} is dynamically linked (PT_INTERP or DT_NEEDED present)", file=sys.stderr)
        ok = False
    if not ok:
        return 1
    print(f"{a.binary}: statically linked; .dep-v0 lists {len(embedded)} runtime crates = cargo tree "
          f"({', '.join(f'{n} {v}' for n, v in sorted(embedded))})"
          + (f"; build-only: {build_only}" if build_only else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
