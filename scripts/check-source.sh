#!/usr/bin/env bash
# check-source.sh: what the Rust source itself must keep, checked from the tree (no build).
#   unsafe  unsafe is denied crate-wide; src/sys.rs is the one module that opts out, each block there has its own
#           SAFETY comment, and the documents that count the blocks say the number the code has
#   tree    the runtime dependency tree is exactly the budget: signal-hook and its deps (a new runtime crate needs
#           a recorded decision)
#   lines   report (never fail on) the production line count of src/: non-blank lines that are not // comments, in
#           each .rs file up to its first line starting with #[cfg(test)], tests.rs files left out
# Usage: bash scripts/check-source.sh unsafe|tree|lines
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
  local words=(zero one two three four five six seven eight nine ten eleven twelve)
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

production_lines() {
  local f
  find src -name '*.rs' ! -name tests.rs | sort | while read -r f; do
    awk -v f="$f" '/^#\[cfg\(test\)\]/{exit} {l=$0; sub(/^[ \t]+/,"",l); if (l!="" && l !~ /^\/\//) n++} END{printf "%5d %s\n", n, f}' "$f"
  done | sort -n | awk '{print; t+=$1} END{printf "%5d src/ production lines\n", t}'
}

case "${1:-}" in
  unsafe) unsafe_is_confined ;;
  tree) runtime_tree_is_the_budget ;;
  lines) production_lines ;;
  *) die "usage: bash scripts/check-source.sh unsafe|tree|lines" ;;
esac
