#!/usr/bin/env bash
# The one check command: formatting, lints, every test, and every check of the operating kit.
# Installs the tools it needs on first use (apt, pip, cargo install --locked). A missing tool fails its
# step; nothing is skipped. Every step runs; the summary lists each and the exit code is non-zero if any failed.
#   bash scripts/check.sh            # everything
#   bash scripts/check.sh tests k8s  # only the named steps
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
set +e

steps_all=(fmt clippy unsafe tree modules tests metrics alerts k8s container arm64 supply-chain cluster fuzz)
run_step() {
  case "$1" in
    fmt) cargo fmt --all -- --check ;;
    clippy) cargo clippy --locked --all-targets -- -D warnings ;;
    unsafe) bash scripts/check-source.sh unsafe ;;
    tree) bash scripts/check-source.sh tree ;;
    modules) bash scripts/check-source.sh modules ;;
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
# The cluster step's Go modules and the cargo tools are most of a cold run (docs/cluster.md, "Build"). When a step
# that needs them is to run, they start building now, niced, behind the steps before it, which leave the CPU idle for
# much of their time (downloads, sleeps, qemu). The step then finds in the cache what is done and builds, or waits
# for, the rest: cluster/build.sh locks each module, and `need` each cargo tool.
bg_pids=()
stop_background() { # only those still running (jobs -r): a finished one's pid may belong to another process by now
  local p
  for p in "${bg_pids[@]}"; do jobs -rp | grep -qx "$p" && kill -- "-$p" 2>/dev/null; done
  return 0
}
background() { # background LOG CMD...: CMD niced, in its own process group (setsid), so stopping it stops its children
  local log=$1
  shift
  setsid nice -n 19 "$@" >"$log" 2>&1 &
  bg_pids+=($!)
  echo "building in the background: ${*: -1} (pid $!, log $log)" >&2
}
selected() { local s; for s in "$@"; do [[ " ${steps[*]} " == *" $s "* ]] && return 0; done; return 1; }
mkdir -p target/cluster
trap stop_background EXIT
trap 'exit 130' INT TERM
selected cluster && background target/cluster/prebuild.log bash cluster/build.sh
cargo_tools=$(for t in "${PINS[@]}"; do read -r name src _ <<<"$t"; [ "$src" = cargo ] && echo "$name"; done | xargs)
selected container arm64 supply-chain fuzz && background target/prebuild-cargo.log bash -c ". scripts/lib.sh && need $cargo_tools"
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
