#!/usr/bin/env python3
"""Helpers for scripts/container-contract.sh.

  dockerfile REVISION      print the final stage's runtime config (user, entrypoint, healthcheck, ports, labels) as JSON,
                           parsed from the Dockerfile, so the buildah image is assembled from the Dockerfile's values.
  dockerignore             print the paths the .dockerignore allow-list admits, one per line (fails if it is not
                           an allow-list: `*` first, then only `!path` lines).
  elf BINARY               fail unless BINARY is a static ELF: no PT_INTERP (no dynamic loader), no DT_NEEDED;
                           and it carries cargo-auditable's dependency list (section .dep-v0).
  buildah-config DOCKERFILE_JSON
                           print the `buildah config` arguments (user, entrypoint, no cmd, healthcheck, ports, labels)
                           for the config `dockerfile` printed, one a line, so the image carries the Dockerfile's values.
  image INSPECT_JSON DOCKERFILE_JSON
                           check `buildah inspect --type image` output: user 65532:65532, exec-form entrypoint,
                           the probe healthcheck, the labels; all equal to the Dockerfile's.
"""

import json
import re
import shlex
import struct
import sys


def dockerfile_final_stage(path, revision):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    stages, cur = [], None
    for ln in lines:
        ins, _, rest = ln.partition(" ")
        ins = ins.upper()
        if ins == "FROM":
            cur = {"from": rest.split()[0], "ins": []}
            stages.append(cur)
        elif cur is not None:
            cur["ins"].append((ins, rest.strip()))
    final = stages[-1]
    args = {}
    cfg = {"from": final["from"], "user": None, "entrypoint": None, "cmd": None, "healthcheck": None, "expose": [], "labels": {}}
    for ins, rest in final["ins"]:
        if ins == "ARG":
            k, _, v = rest.partition("=")
            args[k] = revision if k == "SRE_MINI_REVISION" else v
        elif ins == "USER":
            cfg["user"] = rest
        elif ins == "ENTRYPOINT":
            cfg["entrypoint"] = json.loads(rest)  # fails on shell form: exec form is required
        elif ins == "CMD":
            cfg["cmd"] = json.loads(rest)
        elif ins == "EXPOSE":
            cfg["expose"] += rest.split()
        elif ins == "LABEL":
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                cfg["labels"][k] = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), v)
        elif ins == "HEALTHCHECK":
            opts = dict(re.findall(r"--([a-z-]+)=(\S+)", rest))
            cmd = rest[rest.index("CMD") + 3:].strip()
            cfg["healthcheck"] = {"options": opts, "cmd": json.loads(cmd)}
    return cfg


def dockerignore(path=".dockerignore"):
    with open(path, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("#")]
    if not lines or lines[0] != "*" or not all(ln.startswith("!") for ln in lines[1:]):
        sys.exit("FAIL: .dockerignore must be an allow-list: `*` first, then only `!path` lines")
    return [ln[1:].rstrip("/") for ln in lines[1:]]


def elf_static(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"FAIL: {path} is not a 64-bit little-endian ELF file")
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    needed, interp, dynamic = 0, False, None
    for i in range(e_phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 3:  # PT_INTERP
            interp = True
        if p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic:
        off, size = dynamic
        for j in range(0, size, 16):
            tag, _ = struct.unpack_from("<qQ", data, off + j)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                needed += 1
    if interp or needed:
        sys.exit(f"FAIL: {path} is dynamically linked (PT_INTERP={interp}, DT_NEEDED entries={needed})")
    # Section names: e_shoff, e_shentsize, e_shnum, e_shstrndx.
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def sh(i):
        return struct.unpack_from("<IIQQQQ", data, e_shoff + i * e_shentsize)  # name, type, flags, addr, offset, size
    strtab_off = sh(e_shstrndx)[4]
    names = set()
    for i in range(e_shnum):
        n = sh(i)[0]
        names.add(data[strtab_off + n:data.index(b"\0", strtab_off + n)].decode())
    if ".dep-v0" not in names:
        sys.exit(f"FAIL: {path} has no .dep-v0 section: not built with cargo auditable")
    print(f"  ELF: no PT_INTERP, no DT_NEEDED ({'static-pie' if dynamic else 'static'}); .dep-v0 dependency list present")


def buildah_config_args(dockerfile_json):
    with open(dockerfile_json, encoding="utf-8") as f:
        c = json.load(f)
    hc = c["healthcheck"]
    args = ["--user", c["user"], "--entrypoint", json.dumps(c["entrypoint"]), "--cmd", ""]
    args += ["--healthcheck", "CMD " + " ".join(shlex.quote(a) for a in hc["cmd"])]
    for opt in ("interval", "timeout", "start-period", "retries"):
        if opt in hc["options"]:
            args += [f"--healthcheck-{opt}", hc["options"][opt]]
    for p in c["expose"]:
        args += ["--port", p if "/" in p else p + "/tcp"]
    for k, v in c["labels"].items():
        args += ["--label", f"{k}={v}"]
    return args


def check_image(inspect_path, expected_path):
    with open(inspect_path, encoding="utf-8") as f:
        img = json.load(f)
    with open(expected_path, encoding="utf-8") as f:
        exp = json.load(f)
    bad = []
    for fmt in ("Docker", "OCIv1"):
        cfg = (img.get(fmt) or {}).get("config") or {}
        who = f"{fmt} config"
        if cfg.get("User") != "65532:65532" or cfg.get("User") != exp["user"]:
            bad.append(f"{who}: User is {cfg.get('User')!r}, expected 65532:65532 as in the Dockerfile ({exp['user']!r})")
        ep = cfg.get("Entrypoint")
        if ep != exp["entrypoint"] or not (isinstance(ep, list) and ep and ep[0] == "/sre-mini"):
            bad.append(f"{who}: Entrypoint is {ep!r}, expected the exec form {exp['entrypoint']!r}")
        if cfg.get("Cmd"):
            bad.append(f"{who}: Cmd is {cfg.get('Cmd')!r}, expected none")
        labels = cfg.get("Labels") or {}
        for k, v in exp["labels"].items():
            if labels.get(k) != v:
                bad.append(f"{who}: label {k} is {labels.get(k)!r}, expected {v!r}")
        if set(exp["expose"]) and set((cfg.get("ExposedPorts") or {}).keys()) != {p if "/" in p else p + "/tcp" for p in exp["expose"]}:
            bad.append(f"{who}: ExposedPorts {cfg.get('ExposedPorts')} differ from EXPOSE {exp['expose']}")
    hc = ((img.get("Docker") or {}).get("config") or {}).get("Healthcheck") or {}
    if hc.get("Test") != ["CMD"] + exp["healthcheck"]["cmd"]:
        bad.append(f"Docker config: Healthcheck {hc.get('Test')!r}, expected CMD {exp['healthcheck']['cmd']!r}")
    for b in bad:
        print(f"FAIL: image: {b}")
    if not bad:
        d = img["Docker"]["config"]
        print(f"  image config: User {d['User']}, Entrypoint {json.dumps(d['Entrypoint'])}, Healthcheck {json.dumps(hc.get('Test'))}, "
              f"{len(exp['labels'])} OCI labels, revision {d['Labels'].get('org.opencontainers.image.revision')}")
    return 1 if bad else 0


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "dockerfile":
        print(json.dumps(dockerfile_final_stage("Dockerfile", argv[2])))
    elif cmd == "dockerignore":
        print("\n".join(dockerignore()))
    elif cmd == "elf":
        elf_static(argv[2])
    elif cmd == "buildah-config":
        print("\n".join(buildah_config_args(argv[2])))
    elif cmd == "image":
        return check_image(argv[2], argv[3])
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
