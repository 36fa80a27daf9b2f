#!/usr/bin/env bash
# The one check command: formatting, lints, every test, and every check of the operating kit.
# Installs the tools it needs on first use (apt, pip, cargo install --locked). A missing tool fails its
# step; nothing is skipped. Every step runs; the summary lists each and the exit code is non-zero if any failed.
#   bash scripts/check.sh            # everything
#   bash scripts/check.sh tests k8s  # only the named steps
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
set +e

steps_all=(fmt clippy unsafe tree tests metrics alerts k8s container arm64 supply-chain cluster fuzz)
run_step() {
  case "$1" in
    fmt) cargo fmt --all -- --check ;;
    clippy) cargo clippy --locked --all-targets -- -D warnings ;;
    unsafe) bash scripts/check-source.sh unsafe ;;
    tree) bash scripts/check-source.sh tree ;;
    # The release build is what ships; the resilience drills measure it, not a debug build.
    tests) cargo test --locked --release ;;
    metrics) bash scripts/check-metrics.sh ;;
    alerts) bash scripts/check-alerts.sh ;;
    k8s) bash scripts/check-k8s.sh ;;
    container) bash scripts/container-contract.sh ;;
    arm64) bash scripts/check-arm64.sh ;;
    supply-chain) bash scripts/check-supply-chain.sh ;;
    cluster) bash scripts/check-cluster.sh ;;
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
