#!/usr/bin/env bash
# check-source.sh: what the Rust source itself must keep, checked from the tree (no build).
#   unsafe  unsafe is denied crate-wide; src/sys.rs is the one module that opts out, each block there has its own
#           SAFETY comment, and the documents that count the blocks say the number the code has
#   tree    the runtime dependency tree is exactly the budget: signal-hook and its deps (a new runtime crate needs
#           a recorded decision)
#   modules no import cycle between the top-level modules of src/ (a module and its own submodules are one node);
#           prints each module's imports, production code only (the lines that `lines` counts)
#   lines   report (never fail on) the production line count of src/: non-blank lines that are not // comments, in
#           each .rs file up to its first line starting with #[cfg(test)], tests.rs files left out
# Usage: bash scripts/check-source.sh unsafe|tree|modules|lines
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

unsafe_is_confined() {
  local outside
  outside=$(grep -rnE '\bunsafe\b' src --include='*.rs' | grep -v '^src/sys.rs:' | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
  [ -z "$outside" ] || { echo "unsafe outside src/sys.rs:"; echo "$outside"; return 1; }
  local blocks safety
  # grep -c exits 1 on a count of 0; the count is judged below, with its message.
  blocks=$(grep -cE 'unsafe \{' src/sys.rs || true)
  safety=$(grep -cE '// SAFETY:' src/sys.rs || true)
  echo "src/sys.rs: $blocks unsafe blocks, $safety SAFETY comments"
  if ! { [ "$blocks" -ge 1 ] && [ "$blocks" -eq "$safety" ]; }; then
    echo "every unsafe block needs its own SAFETY comment"; return 1
  fi
  grep -q 'unsafe_code = "deny"' Cargo.toml || { echo "Cargo.toml must deny unsafe_code crate-wide"; return 1; }
  # The documents that count the blocks must say the number the code has.
  grep -q "holds $blocks \`unsafe\` blocks" README.md \
    || { echo "README.md's unsafe section does not say it holds $blocks \`unsafe\` blocks"; return 1; }
  grep -q "has \*\*$blocks\*\* \`unsafe\` blocks" docs/adoption.md \
    || { echo "docs/adoption.md's design card does not count $blocks unsafe blocks"; return 1; }
}

runtime_tree_is_the_budget() {
  local crates
  # A failing cargo tree leaves a list that cannot match: the comparison below fails with its message.
  crates=$(cargo tree --locked -e normal --prefix none --target x86_64-unknown-linux-gnu | sed 's/ (\*)$//; s/ (.*)$//' | awk '{print $1}' | sort -u || true)
  echo "$crates"
  [ "$(echo "$crates" | tr '\n' ' ')" = "errno libc signal-hook signal-hook-registry sre-mini " ] || {
    echo "the runtime tree changed: a new runtime crate needs a recorded decision (the runtime tree is signal-hook and its deps only)"; return 1; }
}

no_module_cycle() {
  python3 - <<'PY'
import pathlib, re, sys

# Production code of each top-level module: its files, each up to its first #[cfg(test)], tests.rs left out.
deps = {}
for f in sorted(pathlib.Path("src").rglob("*.rs")):
    if f.name == "tests.rs" or f.name in ("lib.rs", "main.rs") and f.parent.name == "src":
        continue
    rel = f.relative_to("src")
    mod = rel.parts[0].removesuffix(".rs")
    code = []
    for line in f.read_text().splitlines():
        if line.startswith("#[cfg(test)]"):
            break
        if not line.lstrip().startswith("//"):
            code.append(line)
    text = "\n".join(code)
    found = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text))
    for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
        found |= {m.split("::")[0].strip() for m in group.split(",") if m.strip()}
    deps.setdefault(mod, set()).update(found - {mod})
for m, ds in sorted(deps.items()):
    print(f"{m:12} -> {' '.join(sorted(ds)) or '(nothing)'}")
unknown = {d for ds in deps.values() for d in ds} - set(deps)
if unknown:
    sys.exit(f"imports of modules this check does not know: {sorted(unknown)}")
# Tarjan's strongly connected components: any component of more than one module is a cycle.
index, low, stack, on, sccs = {}, {}, [], set(), []
def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v); on.add(v)
    for w in sorted(deps[v]):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v:
                break
        sccs.append(c)
for v in sorted(deps):
    if v not in index:
        visit(v)
cycles = [sorted(c) for c in sccs if len(c) > 1]
if cycles:
    sys.exit("import cycles between modules: " + "; ".join(" <-> ".join(c) for c in cycles))
print(f"{len(deps)} modules, no import cycle")
PY
}

production_lines() {
  local f
  find src -name '*.rs' ! -name tests.rs | sort | while read -r f; do
    awk -v f="$f" '/^#\[cfg\(test\)\]/{exit} {l=$0; sub(/^[ \t]+/,"",l); if (l!="" && l !~ /^\/\//) n++} END{printf "%5d %s\n", n, f}' "$f"
  done | sort -n | awk '{print; t+=$1} END{printf "%5d src/ production lines\n", t}'
}

case "${1:-}" in
  unsafe) unsafe_is_confined ;;
  tree) runtime_tree_is_the_budget ;;
  modules) no_module_cycle ;;
  lines) production_lines ;;
  *) die "usage: bash scripts/check-source.sh unsafe|tree|modules|lines" ;;
esac
