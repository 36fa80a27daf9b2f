#!/usr/bin/env bash
# Where does the time go on the /healthz hot path? Profiles sre-mini (or the axum reference) under wrk.
#
#   bash bench/profile.sh                 # sre-mini, keep-alive, perf (cpu-clock sampling, kernel included)
#   bash bench/profile.sh axum            # the reference, for comparison
#   MODE=close TOOL=callgrind bash bench/profile.sh
#
# Knobs: MODE=keepalive|close; TOOL=perf|callgrind; DURATION=6 (seconds of load); CONNS=32.
# perf: this VM exposes no hardware counters (`perf stat -e instructions` is "not supported"), so perf samples
# the software cpu-clock event; server pinned to CPU 0, wrk to CPU 1, as in scripts/bench.sh.
# callgrind: user-space instruction counts (no kernel), at a lower load since the server runs ~50x slower.
# The binaries are rebuilt with symbols kept (same optimisation settings, strip=none) under bench/target/prof-*.
# Output: a summary on stdout; raw data under bench/results/profile-<stamp>/ (gitignored).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
cd "$ROOT" || exit 1

WHICH=${1:-sre-mini}
MODE=${MODE:-keepalive}
TOOL=${TOOL:-perf}
DURATION=${DURATION:-6}
CONNS=${CONNS:-32}
if ! [[ $DURATION =~ ^[1-9][0-9]?$ ]] || (( DURATION < 3 )); then die "DURATION must be 3..99 seconds"; fi
[[ $CONNS =~ ^[1-9][0-9]{0,3}$ ]] || die "CONNS must be 1..9999"
case "$MODE" in keepalive) HDR=() ;; close) HDR=(-H 'Connection: close') ;; *) die "MODE must be keepalive or close" ;; esac

need wrk
need_apt taskset util-linux
case "$TOOL" in
  perf) need_apt perf linux-perf ;;
  callgrind) need_apt valgrind valgrind; need_apt callgrind_annotate valgrind ;;
  *) die "TOOL must be perf or callgrind" ;;
esac

export CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=false
case "$WHICH" in
  sre-mini)
    say "building sre-mini with symbols (bench/target/prof-sre-mini)"
    cargo build --release --locked --target-dir "$ROOT/bench/target/prof-sre-mini" >&2
    BIN="$ROOT/bench/target/prof-sre-mini/release/sre-mini" ;;
  axum)
    say "building axum-ref with symbols (bench/target/prof-axum)"
    cargo build --release --locked --manifest-path "$ROOT/bench/Cargo.toml" --target-dir "$ROOT/bench/target/prof-axum" >&2
    BIN="$ROOT/bench/target/prof-axum/release/axum-ref" ;;
  *) die "usage: bench/profile.sh [sre-mini|axum]" ;;
esac

OUT="$ROOT/bench/results/profile-$(date -u +%Y%m%dT%H%M%SZ)-$WHICH-$MODE-$TOOL"
mkdir -p "$OUT"
kill_tracked_on_exit

PORT=$(free_port)
# SHUTDOWN_DELAY_MS/DRAIN_TIMEOUT_MS make sre-mini exit promptly on SIGTERM (callgrind writes its data then).
SRV_ENV=(env PORT="$PORT" SHUTDOWN_DELAY_MS=0 DRAIN_TIMEOUT_MS=500)
if [ "$TOOL" = callgrind ]; then
  "${SRV_ENV[@]}" taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$BIN" \
    >/dev/null 2>"$OUT/valgrind.log" &
else
  "${SRV_ENV[@]}" taskset -c 0 "$BIN" >/dev/null 2>"$OUT/server.log" &
fi
SRV=$!
TRACKED_PIDS+=("$SRV")
python3 "$ROOT/bench/tools/benchlib.py" wait-ready "$PORT" /readyz 30 >/dev/null || die "server not ready"

if [ "$TOOL" = perf ]; then
  # Sample every thread of the server while wrk runs; start a little after wrk and stop a little before it.
  timeout $((DURATION + 30)) taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${HDR[@]}" \
    "http://127.0.0.1:$PORT/healthz" >"$OUT/wrk.txt" 2>&1 &
  WRK=$!
  TRACKED_PIDS+=("$WRK")
  sleep 0.5
  # Syscalls and context switches per request, from the raw_syscalls tracepoint, over a 1 s window.
  perf stat -e raw_syscalls:sys_enter -e context-switches -p "$SRV" -x, -o "$OUT/perf-stat.csv" -- sleep 1 \
    >/dev/null 2>&1 || true
  perf record -q -e cpu-clock -F 4999 -g -p "$SRV" -o "$OUT/perf.data" -- sleep $((DURATION > 3 ? DURATION - 2 : 1)) \
    >/dev/null 2>"$OUT/perf-record.log" || true
  wait "$WRK" || true
  python3 "$ROOT/bench/tools/benchlib.py" wrk "$OUT/wrk.txt" >"$OUT/wrk.json"
  say "wrk during the profile (perf running, so lower than in bench.sh): $(cat "$OUT/wrk.json")"
  RPS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rps"])' "$OUT/wrk.json")
  if [ -s "$OUT/perf-stat.csv" ]; then
    python3 - "$OUT/perf-stat.csv" "$RPS" <<'PY'
import sys
rps = float(sys.argv[2])
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        print(f"{f[2]}: {float(f[0]):,.0f}/s = {float(f[0]) / rps:.2f} per request (at ~{rps:,.0f} rps)")
PY
  fi
  say "time by thread and DSO (kernel = [kernel.kallsyms])"
  perf report -i "$OUT/perf.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20 || true
  say "top symbols, self time"
  perf report -i "$OUT/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' >"$OUT/top-self.txt" || true
  head -45 "$OUT/top-self.txt"
  say "top symbols, including callees (children)"
  perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' >"$OUT/top-children.txt" || true
  head -30 "$OUT/top-children.txt"
else
  timeout $((DURATION + 60)) taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${HDR[@]}" \
    "http://127.0.0.1:$PORT/healthz" >"$OUT/wrk.txt" 2>&1 || true
  python3 "$ROOT/bench/tools/benchlib.py" wrk "$OUT/wrk.txt" >"$OUT/wrk.json" || true
  say "wrk under callgrind: $(cat "$OUT/wrk.json")"
  kill -TERM "$SRV" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SRV" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SRV" 2>/dev/null; then kill -INT "$SRV" 2>/dev/null || true; fi
  wait "$SRV" 2>/dev/null || true
  ls "$OUT"/callgrind.out* >/dev/null 2>&1 || die "callgrind wrote no data (see $OUT/valgrind.log)"
  REQS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("requests") or 0)' "$OUT/wrk.json")
  say "instructions per request (user space only, all threads; $REQS requests)"
  callgrind_annotate "$OUT"/callgrind.out* 2>/dev/null \
    | awk -v n="$REQS" '/PROGRAM TOTALS/ { gsub(",", "", $1); if (n > 0) printf "%.0f Ir per request\n", $1 / n }' || true
  # Whole reports to files first: `head` on a live pipe would SIGPIPE the annotator (and pipefail this script).
  callgrind_annotate --inclusive=no "$OUT"/callgrind.out* >"$OUT/annotate-self.txt" 2>/dev/null || true
  callgrind_annotate --inclusive=yes "$OUT"/callgrind.out* >"$OUT/annotate-inclusive.txt" 2>/dev/null || true
  say "top functions, self (exclusive)"
  awk '/^Ir/ { on = 1 } on && n++ < 40' "$OUT/annotate-self.txt"
  say "top functions, inclusive"
  awk '/^Ir/ { on = 1 } on && n++ < 30' "$OUT/annotate-inclusive.txt"
fi
say "raw data in ${OUT#"$ROOT"/}"
