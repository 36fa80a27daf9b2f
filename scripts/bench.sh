#!/usr/bin/env bash
# Benchmark: sre-mini against a reference axum server (bench/axum-ref: axum + hyper on tokio's multi-thread
# runtime), in one run, alternating the two in every round, and reporting medians.
# It is not a test: it prints figures, and a missed target prints MISS without failing the script.
#
#   bash scripts/bench.sh                       # full run, about 8 minutes on the 2-core machine
#   ROUNDS=1 DURATION=2 STARTS=2 bash scripts/bench.sh   # quick smoke run
#
# Knobs (environment): ROUNDS=5 rounds; DURATION=8 seconds per wrk run; CONNS=32 wrk connections;
# BURST=300 concurrent /work; STARTS=5 exec->/readyz timings per server per round; SKIP_BUILD=1 reuses
# the binaries; SRE_BIN / REF_BIN point at other binaries (e.g. SRE_BIN=$REF_BIN to debug against axum twice);
# MUSL=0 skips the static musl builds (the deployed artifact), measured for idle RSS and size besides;
# NICE=-10 runs servers and load generators at that niceness (root only) to damp noise from a busy machine;
# IDLE="1000 3000" idle keep-alive connections held open beside the pinned keep-alive run, one row each;
# BASE_BIN=path measures a third server, sre-mini built from another revision, in every round (name: BASE_NAME).
# Output: the table on stdout and in bench/results/latest.md (gitignored), raw figures in bench/results/<stamp>/.
#
# Every server is started on 127.0.0.1 with request logging on (stdout to /dev/null), and killed on exit.
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT" || exit 1

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
CONNS=${CONNS:-32}
BURST=${BURST:-300}
STARTS=${STARTS:-5}
SKIP_BUILD=${SKIP_BUILD:-0}
NICE=${NICE:-0}
MUSL=${MUSL:-1}
MUSL_TARGET=x86_64-unknown-linux-musl
SRE_MUSL_BIN=${SRE_MUSL_BIN:-$ROOT/target/$MUSL_TARGET/release/sre-mini}
REF_MUSL_BIN=${REF_MUSL_BIN:-$ROOT/bench/target/$MUSL_TARGET/release/axum-ref}
SRE_BIN=${SRE_BIN:-$ROOT/target/release/sre-mini}
REF_BIN=${REF_BIN:-$ROOT/bench/target/release/axum-ref}
IDLE=${IDLE:-1000 3000}
BASE_BIN=${BASE_BIN:-}
BASE_NAME=${BASE_NAME:-base}
WORK_DEADLINE_S=2.1          # "200 within 2.1 s" at the default WORK_DELAY_MS=2000
if ! [[ $NICE =~ ^-?[0-9]+$ ]] || (( NICE < -20 || NICE > 19 )); then
  die "NICE must be an integer in -20..19 (got '$NICE')"
fi
RUN=(nice -n "$NICE")        # every measured process (servers, wrk, python clients) runs under it
PY=("${RUN[@]}" python3 "$ROOT/bench/tools/benchlib.py")

for v in ROUNDS DURATION CONNS BURST STARTS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
(( ROUNDS <= 20 && DURATION <= 60 && CONNS <= 1000 && BURST <= 2000 && STARTS <= 20 )) ||
  die "ROUNDS<=20, DURATION<=60, CONNS<=1000, BURST<=2000, STARTS<=20"

need wrk
need_apt taskset util-linux
need_apt flock util-linux
need_apt python3 python3
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (server pinned to CPU 0, wrk to CPU 1)"

# ------------------------------------------------------------------ processes: tracked, killed on exit
kill_tracked_on_exit

# ------------------------------------------------------------------ build
if [ "$SKIP_BUILD" != 1 ]; then
  say "building sre-mini (release)"
  cargo build --release --locked >&2
  say "building the axum reference (release, bench/ workspace)"
  cargo build --release --locked --manifest-path "$ROOT/bench/Cargo.toml" >&2
  if [ "$MUSL" = 1 ]; then
    need_musl
    say "building both statically (musl), as deployed"
    cargo build --release --locked --target "$MUSL_TARGET" >&2
    cargo build --release --locked --target "$MUSL_TARGET" --manifest-path "$ROOT/bench/Cargo.toml" >&2
  fi
fi
[ -x "$SRE_BIN" ] || die "no sre-mini binary at $SRE_BIN"
[ -x "$REF_BIN" ] || die "no axum reference binary at $REF_BIN"
[ -z "$BASE_BIN" ] || [ -x "$BASE_BIN" ] || die "no binary at BASE_BIN=$BASE_BIN"
for n in $IDLE; do [[ $n =~ ^[0-9]+$ ]] && (( n <= 10000 )) || die "IDLE must list counts in 0..10000 (got '$IDLE')"; done
# Thousands of idle connections need as many descriptors in the servers (axum does not raise its own limit).
ulimit -n "$(ulimit -Hn)" || die "cannot raise the open-file limit"
if [ "$MUSL" = 1 ]; then
  [ -x "$SRE_MUSL_BIN" ] || die "no static sre-mini binary at $SRE_MUSL_BIN"
  [ -x "$REF_MUSL_BIN" ] || die "no static axum reference binary at $REF_MUSL_BIN"
fi

# One timing-sensitive run at a time on this machine: the benchmark saturates both cores, so it holds this lock
# (flock) for its measurements; other timing-sensitive scripts can take the same one.
TIMING_LOCK=${TIMING_LOCK:-/tmp/sre-mini-timing.lock}
exec 9>"$TIMING_LOCK"
if ! flock -n 9; then
  say "waiting (at most 10 min) for $TIMING_LOCK, held by another timing-sensitive run"
  flock -w 600 9 || die "$TIMING_LOCK still held after 10 min"
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$ROOT/bench/results/$STAMP"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
NOTES="$OUT/notes.txt"
: >"$NOTES"
ERRLOG="$OUT/server-stderr.log"

rec() { # rec ROUND SERVER METRIC VALUE  (VALUE may be null)
  printf '{"round":%s,"server":"%s","metric":"%s","value":%s}\n' "$1" "$2" "$3" "${4:-null}" >>"$RESULTS"
}
# jget FILE EXPR: a value from a JSON file, EXPR in Python over `d` (None -> null).
jget() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print("null" if v is None else json.dumps(v))' "$1" "$2"
}
note() { printf '%s\n' "$*" >>"$NOTES"; say "note: $*"; }

# start_server BIN pinned|unpinned: sets SRV_PID and SRV_PORT; waits for /readyz.
start_server() {
  local bin=$1 pin=$2
  SRV_PORT=$(free_port)
  if [ "$pin" = pinned ]; then
    PORT=$SRV_PORT "${RUN[@]}" taskset -c 0 "$bin" >/dev/null 2>>"$ERRLOG" &
  else
    PORT=$SRV_PORT "${RUN[@]}" "$bin" >/dev/null 2>>"$ERRLOG" &
  fi
  SRV_PID=$!
  TRACKED_PIDS+=("$SRV_PID")
  "${PY[@]}" wait-ready "$SRV_PORT" /readyz 10 >/dev/null || die "$bin did not become ready on port $SRV_PORT"
}
stop_server() {
  kill -KILL "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
}

# run_wrk ROUND NAME keepalive|close pinned|unpinned [KEY]
run_wrk() {
  local r=$1 name=$2 mode=$3 pin=$4 hdr=() cpu=() f
  [ "$mode" = close ] && hdr=(-H 'Connection: close')
  [ "$pin" = pinned ] && cpu=(taskset -c 1)
  local key; key=${5:-$([ "$mode" = close ] && echo close || echo ka)_$pin}
  f="$OUT/wrk-r$r-$name-$key.txt"
  timeout $((DURATION + 30)) "${RUN[@]}" "${cpu[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" \
    "http://127.0.0.1:$SRV_PORT/healthz" >"$f" 2>&1 || note "round $r $name $key: wrk exited non-zero"
  if "${PY[@]}" wrk "$f" >"$f.json"; then
    rec "$r" "$name" "${key}_rps" "$(jget "$f.json" 'd["rps"]')"
    rec "$r" "$name" "${key}_p50_ms" "$(jget "$f.json" 'd["p50_ms"]')"
    rec "$r" "$name" "${key}_p99_ms" "$(jget "$f.json" 'd["p99_ms"]')"
    local errs; errs=$(jget "$f.json" 'd["socket_errors"] + d["non2xx"]')
    [ "$errs" = 0 ] || note "round $r $name $key: $errs socket errors / non-2xx responses (see $f)"
    say "round $r $name $key: $(cat "$f.json")"
  else
    note "round $r $name $key: could not parse wrk output (see $f)"
  fi
}

proc_status() { "${PY[@]}" status "$SRV_PID" >"$1"; }

# bench_server ROUND NAME BIN [MUSL_BIN]
bench_server() {
  local r=$1 name=$2 bin=$3 musl_bin=${4:-}
  local s="$OUT/status-r$r-$name"
  # 1. pinned: server on CPU 0, wrk on CPU 1.
  start_server "$bin" pinned
  sleep 0.2
  proc_status "$s-idle-pinned.json"
  rec "$r" "$name" rss_idle_mib "$(jget "$s-idle-pinned.json" 'd["vmrss_kib"]/1024')"
  # What the process itself allocated, without the file pages (binary, libc) it shares with the page cache.
  rec "$r" "$name" rss_anon_idle_mib "$(jget "$s-idle-pinned.json" 'd["rssanon_kib"]/1024')"
  run_wrk "$r" "$name" keepalive pinned
  run_wrk "$r" "$name" close pinned
  # 1b. the same keep-alive load with N idle keep-alive connections held open beside it (holder on CPU 1).
  local n ready
  for n in $IDLE; do
    ready="$OUT/idle-r$r-$name-$n.json"
    timeout $((DURATION + 120)) "${RUN[@]}" taskset -c 1 python3 "$ROOT/bench/tools/benchlib.py" hold-idle \
      "$SRV_PORT" "$n" $((DURATION + 60)) "$ready" >/dev/null 2>>"$ERRLOG" &
    local holder=$!
    TRACKED_PIDS+=("$holder")
    local waited=0
    # The holder gives up connecting after 60 s and reports what it holds; allow for that and its last timeouts.
    while [ ! -s "$ready" ] && (( waited < 900 )); do sleep 0.1; waited=$((waited + 1)); done
    if [ -s "$ready" ] && [ "$(jget "$ready" 'd["failed"]')" = 0 ]; then
      proc_status "$s-idle$n.json"
      rec "$r" "$name" "rss_idle${n}_mib" "$(jget "$s-idle$n.json" 'd["vmrss_kib"]/1024')"
      run_wrk "$r" "$name" keepalive pinned "idle$n"
    else
      note "round $r $name: could not hold $n idle connections ($(cat "$ready" 2>/dev/null || echo 'no report in 90 s'))"
    fi
    kill -KILL "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
  done
  stop_server
  # 2. unpinned, then the /work burst on the same (loaded) process; peak RSS and threads after it all.
  start_server "$bin" unpinned
  sleep 0.2
  proc_status "$s-idle.json"
  rec "$r" "$name" rss_idle_mib "$(jget "$s-idle.json" 'd["vmrss_kib"]/1024')"
  # Threads when idle on both cores (pinned to one, tokio starts a single worker).
  rec "$r" "$name" threads_idle "$(jget "$s-idle.json" 'd["threads"]')"
  run_wrk "$r" "$name" keepalive unpinned
  run_wrk "$r" "$name" close unpinned
  local b="$OUT/burst-r$r-$name.json"
  if timeout 30 "${PY[@]}" burst "$SRV_PORT" "$BURST" "$WORK_DEADLINE_S" 8 >"$b"; then
    rec "$r" "$name" burst_ok_in_time "$(jget "$b" 'd["ok_in_time"]')"
    rec "$r" "$name" burst_503 "$(jget "$b" 'd["rejected_503"]')"
    rec "$r" "$name" burst_healthz_p99_ms "$(jget "$b" 'd["healthz"].get("p99_ms")')"
    rec "$r" "$name" burst_connect_ms "$(jget "$b" 'd["connect_all_ms"]')"
    say "round $r $name burst: $(cat "$b")"
    local bad; bad=$(jget "$b" 'd["ok_late"] + d["other_status"] + sum(d["errors"].values()) + d["rejected_503_without_retry_after"] + d["healthz"].get("fails", 0)')
    [ "$bad" = 0 ] || note "round $r $name burst: late 200s, other statuses, errors or failed /healthz samples: $(cat "$b")"
  else
    note "round $r $name burst: client failed (see $b)"
  fi
  proc_status "$s-loaded.json"
  rec "$r" "$name" rss_peak_mib "$(jget "$s-loaded.json" 'd["vmhwm_kib"]/1024')"
  rec "$r" "$name" threads_loaded "$(jget "$s-loaded.json" 'd["threads"]')"
  stop_server
  # 3. the static (musl) build, idle: no shared glibc mapped.
  if [ -n "$musl_bin" ]; then
    start_server "$musl_bin" unpinned
    sleep 0.2
    proc_status "$s-idle-musl.json"
    rec "$r" "$name" rss_idle_musl_mib "$(jget "$s-idle-musl.json" 'd["vmrss_kib"]/1024')"
    stop_server
  fi
  # 4. exec -> first 200 on /readyz, several fresh starts.
  local i st="$OUT/startup-r$r-$name.jsonl"
  for ((i = 1; i <= STARTS; i++)); do
    if "${PY[@]}" startup "$bin" "$(free_port)" 5 >>"$st"; then
      rec "$r" "$name" startup_ms "$(tail -n1 "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ms"])')"
    else
      note "round $r $name: not ready within 5 s of exec"
    fi
  done
}

# ------------------------------------------------------------------ static figures
crates() { # crates MANIFEST [PKG]: unique crates in the normal (runtime) dependency tree, itself included
  cargo tree --locked -e normal --prefix none --target x86_64-unknown-linux-gnu --manifest-path "$1" ${2:+-p "$2"} \
    | sed -e 's/ (\*)$//' -e 's/ (proc-macro)$//' | grep -v '^$' | sort -u | wc -l
}
rec 0 sre-mini binary_kib "$(( $(stat -c %s "$SRE_BIN") / 1024 ))"
rec 0 axum binary_kib "$(( $(stat -c %s "$REF_BIN") / 1024 ))"
if [ "$MUSL" = 1 ]; then
  rec 0 sre-mini binary_musl_kib "$(( $(stat -c %s "$SRE_MUSL_BIN") / 1024 ))"
  rec 0 axum binary_musl_kib "$(( $(stat -c %s "$REF_MUSL_BIN") / 1024 ))"
  SRE_MUSL=$SRE_MUSL_BIN REF_MUSL=$REF_MUSL_BIN
else
  SRE_MUSL="" REF_MUSL=""
fi
rec 0 sre-mini crates "$(crates "$ROOT/Cargo.toml")"
rec 0 axum crates "$(crates "$ROOT/bench/Cargo.toml" axum-ref)"

# ------------------------------------------------------------------ rounds
note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
START_S=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
  # Alternate the order too, so neither server always runs first (warm caches, neighbours' load).
  if (( r % 2 )); then order=(sre-mini axum); else order=(axum sre-mini); fi
  [ -z "$BASE_BIN" ] || order+=(base)
  for name in "${order[@]}"; do
    say "round $r/$ROUNDS: $name"
    case $name in
      sre-mini) bench_server "$r" sre-mini "$SRE_BIN" "$SRE_MUSL" ;;
      axum) bench_server "$r" axum "$REF_BIN" "$REF_MUSL" ;;
      base) bench_server "$r" base "$BASE_BIN" ;;
    esac
  done
done
note "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); rounds took $((SECONDS - START_S)) s"
[ "$NICE" = 0 ] || note "servers and load generators ran at niceness $NICE"
[ "$SRE_BIN" = "$ROOT/target/release/sre-mini" ] || note "sre-mini column measured from $SRE_BIN"

# ------------------------------------------------------------------ report
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || rev="$rev+uncommitted"
python3 "$ROOT/bench/tools/benchlib.py" meta "$OUT/meta.json" "$NOTES" \
  rounds="$ROUNDS" burst_n="$BURST" work_max_concurrent=512 \
  date="$(date -u '+%Y-%m-%d %H:%M UTC')" nproc="$(nproc)" \
  cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
  kernel="Linux $(uname -r)" rustc="$(rustc -V | cut -d' ' -f1-2)" \
  wrk="$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2) -t1 -c$CONNS -d${DURATION}s" \
  sre_rev="$rev" base_rev="$BASE_NAME"
"${PY[@]}" report "$RESULTS" "$OUT/latest.md" "$OUT/meta.json"
cp "$OUT/latest.md" "$ROOT/bench/results/latest.md"
say "table written to bench/results/latest.md (raw figures in bench/results/$STAMP/)"
