#!/usr/bin/env bash
# Fuzz the request-head parser, the chunked decoder and the connection machine briefly (cargo-fuzz / libFuzzer).
# Each target runs FUZZ_SECONDS (default 30) from the committed seed corpus; any crash, panic,
# failed assertion, timeout (> 5 s on one input) or OOM fails the check. The corpus libFuzzer
# grows goes to a temporary directory, so the committed seeds stay as they are.
# Long runs and figures: docs/fuzzing.md.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
[[ "$FUZZ_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive integer (got '$FUZZ_SECONDS')"
TARGETS=(parse_head chunked differential_httparse conn_events)

need_apt c++ g++          # libfuzzer-sys compiles libFuzzer from C++ sources
need cargo-fuzz
# cargo-fuzz passes -Z flags to rustc; this machine (and CI) has only a stable toolchain.
export RUSTC_BOOTSTRAP=1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say "fuzz: building ${TARGETS[*]} (release, debug assertions and overflow checks on, no sanitizer: the code under test has no unsafe)"
(cd fuzz && cargo fuzz build -s none) || die "cargo fuzz build failed"

failed=()
for t in "${TARGETS[@]}"; do
  say "fuzz: $t for ${FUZZ_SECONDS}s"
  mkdir -p "$work/$t" "fuzz/artifacts/$t"
  dict=()
  [ "$t" = chunked ] || dict=(-dict=http.dict)
  mkdir -p "fuzz/corpus/$t"
  log="$work/$t.log"
  rc=0
  # The outer timeout is a backstop only; libFuzzer stops itself at -max_total_time.
  (cd fuzz && timeout --kill-after=10 "$((FUZZ_SECONDS + 120))" \
    cargo fuzz run -s none "$t" "$work/$t" "corpus/$t" -- \
      -max_total_time="$FUZZ_SECONDS" -timeout=5 -rss_limit_mb=1024 -max_len=8192 \
      -print_final_stats=1 "${dict[@]}" -artifact_prefix="artifacts/$t/") >"$log" 2>&1 || rc=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1 || true)"
  cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 || true)"
  if [ "$rc" -ne 0 ] || grep -qE '^==[0-9]+== ERROR|panicked at|^SUMMARY: libFuzzer' "$log"; then
    tail -n 30 "$log" >&2
    grep -m 3 -A 2 'panicked at' "$log" >&2 || true
    printf 'FAIL: fuzz %s exited %s; crash input under fuzz/artifacts/%s/ (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none %s <file>)\n' \
      "$t" "$rc" "$t" "$t" >&2
    failed+=("$t")
  else
    printf 'fuzz %-22s ok: %s runs in %ss (%s exec/s), %s\n' "$t" "${runs:-?}" "$FUZZ_SECONDS" "${rate:-?}" "${cov:-?}"
  fi
done

[ "${#failed[@]}" -eq 0 ] || die "fuzz targets failed: ${failed[*]}"
say "fuzz: all ${#TARGETS[@]} targets ran ${FUZZ_SECONDS}s each without a crash"
