#!/usr/bin/env bash
# The one check command: formatting, lints, every test, and every check of the operating kit.
# Installs the tools it needs on first use (apt, pip, cargo install --locked). A missing tool fails its
# step; nothing is skipped. Every step runs; the summary lists each and the exit code is non-zero if any failed.
#   bash scripts/check.sh            # everything
#   bash scripts/check.sh tests k8s  # only the named steps
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
set +e

unsafe_is_confined() {
  # unsafe is denied crate-wide; src/sys.rs is the one module that opts out, and each block there is argued.
  local outside
  outside=$(grep -rnE '\bunsafe\b' src --include='*.rs' | grep -v '^src/sys.rs:' | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
  [ -z "$outside" ] || { echo "unsafe outside src/sys.rs:"; echo "$outside"; return 1; }
  local blocks safety
  blocks=$(grep -cE 'unsafe \{' src/sys.rs)
  safety=$(grep -cE '// SAFETY:' src/sys.rs)
  echo "src/sys.rs: $blocks unsafe blocks, $safety SAFETY comments"
  [ "$blocks" -ge 1 ] && [ "$blocks" -eq "$safety" ] || { echo "every unsafe block needs its own SAFETY comment"; return 1; }
  grep -q 'unsafe_code = "deny"' Cargo.toml || { echo "Cargo.toml must deny unsafe_code crate-wide"; return 1; }
  # The documents that count the blocks must say the number the code has.
  local words=(zero one two three four five six seven eight nine ten eleven twelve)
  grep -q "holds ${words[$blocks]:-$blocks} small calls into \`libc\`" README.md \
    || { echo "README.md's unsafe section does not say it holds ${words[$blocks]:-$blocks} calls"; return 1; }
  grep -q "makes \*\*$blocks\*\* \`unsafe\` calls" docs/adoption.md \
    || { echo "docs/adoption.md's design card does not count $blocks unsafe calls"; return 1; }
}

runtime_tree_is_the_budget() {
  local crates
  crates=$(cargo tree --locked -e normal --prefix none --target x86_64-unknown-linux-gnu | sed 's/ (\*)$//; s/ (.*)$//' | awk '{print $1}' | sort -u)
  echo "$crates"
  [ "$(echo "$crates" | tr '\n' ' ')" = "errno libc signal-hook signal-hook-registry sre-mini " ] || {
    echo "the runtime tree changed: a new runtime crate needs a recorded decision (the runtime tree is signal-hook and its deps only)"; return 1; }
}

steps_all=(fmt clippy unsafe tree tests metrics alerts drill pod rollout k8s policy container arm64 supply-chain fuzz)
run_step() {
  case "$1" in
    fmt) cargo fmt --all -- --check ;;
    clippy) cargo clippy --locked --all-targets -- -D warnings ;;
    unsafe) unsafe_is_confined ;;
    tree) runtime_tree_is_the_budget ;;
    # The release build is what ships; the resilience drills measure it, not a debug build.
    tests) cargo test --locked --release ;;
    metrics) bash scripts/check-metrics.sh ;;
    alerts) bash scripts/check-alerts.sh ;;
    drill) bash scripts/drill-burn.sh ;;
    pod) bash scripts/drill-pod.sh ;;
    rollout) bash scripts/check-rollout.sh ;;
    k8s) bash scripts/check-k8s.sh ;;
    policy) bash scripts/check-policy.sh ;;
    container) bash scripts/container-contract.sh ;;
    arm64) bash scripts/check-arm64.sh ;;
    supply-chain) bash scripts/check-supply-chain.sh ;;
    fuzz) bash scripts/check-fuzz.sh ;;
    *) echo "unknown step $1 (steps: ${steps_all[*]})"; return 2 ;;
  esac
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${steps_all[@]}")
passed=0; failed=0; report=()
for s in "${steps[@]}"; do
  say "step: $s"
  t0=$(date +%s)
  run_step "$s"
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then passed=$((passed+1)); report+=("  ok    $s (${dt}s)")
  else failed=$((failed+1)); report+=("  FAIL  $s (${dt}s, exit $rc)"); fi
done
printf '\n==> summary\n'
printf '%s\n' "${report[@]}"
echo "checks: $passed passed, $failed failed"
[ $failed -eq 0 ]
