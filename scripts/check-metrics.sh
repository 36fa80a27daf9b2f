#!/usr/bin/env bash
# check-metrics.sh: /metrics of the release binary, proven by the tools that will read it.
#   1. start target/release/sre-mini on 127.0.0.1 (PORT=0; the port comes from the "ready" log line)
#   2. populate every family: all methods x all routes, and every early rejection the server can send
#      (400 404 405 408 413 414 417 431 500 501 503 505, every limit reason, parse errors, the drills)
#   3. `promtool check metrics` on the live output: must print nothing and exit 0
#   4. a real Prometheus (Debian package `prometheus`) on 127.0.0.1, scraping every 1 s: its query API must
#      report up == 1 and every http_requests_total series, with no scrape errors, sample-limit or
#      out-of-order rejections; and the Content-Type is the one Prometheus 3 parses as the text format
#   5. the cost of one scrape: series, bytes, and median time of 200 scrapes on one keep-alive connection
# Usage: bash scripts/check-metrics.sh   (env: SRE_MINI_BIN to test a prebuilt binary, SCRAPES=200)
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

need_apt promtool prometheus
need_apt prometheus prometheus
need_apt curl curl
command -v python3 >/dev/null || die "python3 is required to drive traffic"

SCRAPES="${SCRAPES:-200}"
BIN=$(release_binary)

TMP="$(mktemp -d)"
SRV_PID="" PROM_PID=""
cleanup() {
  local rc=$?
  for pid in "$PROM_PID" "$SRV_PID"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# ---- 1. the service -----------------------------------------------------------------------------------------------
say "start $BIN on PORT=0"
# Short timeouts and a tiny bulkhead so that every rejection can be provoked in seconds.
start_sre_mini "$BIN" "$TMP/sre-mini.log" WORK_DELAY_MS=300 WORK_MAX_CONCURRENT=1 MAX_CONNECTIONS=64 \
  MAX_BODY_BYTES=1024 MAX_HEADER_FIELDS=20 HEADER_TIMEOUT_MS=500 BODY_TIMEOUT_MS=500 WRITE_TIMEOUT_MS=300
SRV_PID=$SRE_PID
PORT=$SRE_PORT
URL="http://127.0.0.1:$PORT/metrics"
echo "sre-mini pid $SRV_PID listening on 127.0.0.1:$PORT"

# ---- 2. populate every family ---------------------------------------------------------------------------------------
say "drive traffic: every method x route, every rejection"
python3 - "$PORT" <<'EOF' || die "traffic driver failed"
import socket, sys, threading, time
PORT = int(sys.argv[1])
seen = {}

def conn():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    return s

def read_response(s, head=False):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
    h, rest = buf.split(b"\r\n\r\n", 1)
    status = int(h.split(b" ", 2)[1])
    length = 0
    for line in h.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    if status >= 200 and not head:
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, rest

def one(raw, head=False, expect=None):
    s = conn()
    try:
        s.sendall(raw)
        status, _ = read_response(s, head)
    finally:
        s.close()
    seen[status] = seen.get(status, 0) + 1
    if expect is not None and status != expect:
        raise SystemExit(f"{raw[:60]!r}: expected {expect}, got {status}")
    return status

methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"]
routes = ["/healthz", "/readyz", "/metrics", "/work", "/fail/ready", "/recover/ready", "/fail/work",
          "/recover/work", "/panic", "/no/such/path"]
# Every method on every route (never GET or POST /panic: that drill ends the process).
for m in methods:
    for r in routes:
        if r == "/panic" and m in ("GET", "POST"):
            continue
        one(f"{m} {r} HTTP/1.1\r\nHost: t\r\n\r\n".encode(), head=(m == "HEAD"))
        if r == "/fail/work":
            one(b"POST /recover/work HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
        if r == "/fail/ready":
            one(b"POST /recover/ready HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
one(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
# Drills: /work answers 500, /readyz answers 503, then both recover.
one(b"GET /fail/work HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
one(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n", expect=500)
one(b"HEAD /work HTTP/1.1\r\nHost: t\r\n\r\n", head=True, expect=500)
one(b"GET /fail/work?ratio=0.5 HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
one(b"GET /recover/work HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
one(b"GET /fail/ready HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
one(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", expect=503)
one(b"HEAD /readyz HTTP/1.1\r\nHost: t\r\n\r\n", head=True, expect=503)
one(b"GET /recover/ready HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
# 400s: handler validation, head parse errors, chunked body errors.
one(b"GET /work?cpu_ms=x HTTP/1.1\r\nHost: t\r\n\r\n", expect=400)
one(b"GET /fail/work?ratio=7 HTTP/1.1\r\nHost: t\r\n\r\n", expect=400)
one(b"GET /healthz HTTP/1.1\r\n\r\n", expect=400)
one(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", expect=400)
one(b"GET /x HTTP/1.1\nHost: t\r\n\r\n", expect=400)
one(b"CONNECT /x HTTP/1.1\r\nHost: t\r\n\r\n", expect=400)
one(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", expect=400)
one(b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", expect=400)
# 413 (declared and chunked), 414, 417, 431 (bytes and fields), 501, 505.
one(b"POST /fail/work HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n", expect=413)
one(b"PUT /work HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n", expect=413)
one(b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", expect=414)
one(b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: tea\r\n\r\n", expect=417)
one(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n", expect=431)
one(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"X-F: 1\r\n" * 30 + b"\r\n", expect=431)
one(b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", expect=501)
one(b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", expect=505)
# 408: a head and a body that never complete.
for raw in (b"GET /healthz HTTP/1.1\r\nHost: t\r\n", b"POST /readyz HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab"):
    one(raw, expect=408)
# 503 from the bulkhead: hold the one /work slot, then ask again.
holder = conn()
holder.sendall(b"GET /work?cpu_ms=5 HTTP/1.1\r\nHost: t\r\n\r\n")
time.sleep(0.1)
one(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n", expect=503)
one(b"HEAD /work HTTP/1.1\r\nHost: t\r\n\r\n", head=True, expect=503)
assert read_response(holder)[0] == 200
holder.close()
# 503 at the connection cap (64): open 70 connections at once.
many = [conn() for _ in range(70)]
time.sleep(0.3)
for s in many:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
statuses = [read_response(s)[0] for s in many]
for s in many:
    s.close()
if 503 not in statuses:
    raise SystemExit(f"connection cap never refused: {statuses}")
# Write timeout: pipeline scrapes and read nothing. More requests keep trickling in (each one a new poll event),
# so output piles up beyond what the kernel buffers take, until the server gives up on the connection.
w = socket.socket()
w.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
w.connect(("127.0.0.1", PORT))
w.settimeout(1)
w.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 200)
deadline = time.time() + 10
try:
    while time.time() < deadline:
        w.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.02)
except OSError:
    pass  # reset: the server closed it (write timeout)
w.close()
time.sleep(0.2)
print("responses by status:", dict(sorted(seen.items())))
EOF

curl -fsS "$URL" >"$TMP/metrics.txt" || die "GET /metrics failed"
missing=""
for code in 200 400 404 405 408 413 414 417 431 500 501 503 505; do
  grep -q "^http_requests_total{.*code=\"$code\"} [1-9]" "$TMP/metrics.txt" || missing="$missing $code"
done
[ -z "$missing" ] || die "codes not counted after the traffic:$missing"
for reason in connection_cap request_line_too_long header_too_large too_many_fields body_too_large header_timeout \
  body_timeout write_timeout; do
  grep -q "^sremini_limit_rejections_total{reason=\"$reason\"} [1-9]" "$TMP/metrics.txt" ||
    die "limit reason $reason not counted"
done
grep -q '^sremini_work_rejections_total [1-9]' "$TMP/metrics.txt" || die "no bulkhead rejection counted"
grep -q '^sremini_parse_errors_total{reason="missing_host"} [1-9]' "$TMP/metrics.txt" || die "no parse error counted"
echo "populated: every status 200 400 404 405 408 413 414 417 431 500 501 503 505, every limit reason, parse errors"
echo "series: $(grep -vc '^#' "$TMP/metrics.txt"), families: $(grep -c '^# TYPE' "$TMP/metrics.txt")"

# ---- 3. promtool check metrics ------------------------------------------------------------------------------------
say "promtool check metrics on the live output ($(promtool --version 2>&1 | head -1))"
curl -fsS "$URL" >"$TMP/metrics.txt"
lint_rc=0
lint=$(promtool check metrics <"$TMP/metrics.txt" 2>&1) || lint_rc=$?
[ "$lint_rc" -eq 0 ] && [ -z "$lint" ] || { echo "$lint" >&2; die "promtool check metrics: exit $lint_rc"; }
echo "promtool check metrics: no output, exit 0 ($(wc -c <"$TMP/metrics.txt") bytes)"

# ---- 4. a real Prometheus -----------------------------------------------------------------------------------------
PROM_VERSION=$(prometheus --version 2>&1 | sed -n '1s/^prometheus, version \([^ ]*\).*/\1/p')
say "Prometheus $PROM_VERSION scraping 127.0.0.1:$PORT every 1 s"
PPORT=$(free_port)
mkdir -p "$TMP/data"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sre-mini
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$PPORT"]
EOF
promtool check config "$TMP/prometheus.yml" >/dev/null || die "promtool check config rejected the scrape config"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
  --web.listen-address="127.0.0.1:$PPORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
API="http://127.0.0.1:$PPORT/api/v1"

# query EXPR: the JSON result vector of an instant query.
query() { curl -fsS --max-time 5 --get "$API/query" --data-urlencode "query=$1"; }
# scalar EXPR: the value of a one-element vector, or empty.
scalar() {
  query "$1" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if len(r)==1 else "")'
}

up="" n_series=""
want_series=$(grep -c '^http_requests_total{' "$TMP/metrics.txt")
deadline=$((SECONDS + 30))
while [ $SECONDS -lt $deadline ]; do
  kill -0 "$PROM_PID" 2>/dev/null || { cat "$TMP/prometheus.log" >&2; die "prometheus exited"; }
  up=$(scalar 'up{job="sre-mini"}' 2>/dev/null || true)
  n_series=$(scalar 'count(http_requests_total{job="sre-mini"})' 2>/dev/null || true)
  [ "$up" = "1" ] && [ -n "$n_series" ] && [ "$n_series" -ge "$want_series" ] && break
  sleep 0.5
done
[ "$up" = "1" ] || { cat "$TMP/prometheus.log" >&2; die "up{job=\"sre-mini\"} is '$up' after 30 s"; }
[ -n "$n_series" ] && [ "$n_series" -ge "$want_series" ] ||
  die "Prometheus holds ${n_series:-no} http_requests_total series, /metrics had $want_series"
echo "up{job=\"sre-mini\"} = $up"
echo "count(http_requests_total{job=\"sre-mini\"}) = $n_series (the exposition had $want_series)"
[ "$n_series" -eq "$(curl -fsS "$URL" | grep -c '^http_requests_total{')" ] ||
  die "Prometheus holds $n_series http_requests_total series, /metrics has a different number"

# Two more scrapes, so that counters have rates and any late scrape error shows.
sleep 2.5
targets=$(curl -fsS --max-time 5 "$API/targets?state=active")
python3 - "$targets" <<'EOF' || die "target not healthy"
import json, sys
t = [x for x in json.loads(sys.argv[1])["data"]["activeTargets"] if x["labels"]["job"] == "sre-mini"]
assert len(t) == 1, t
t = t[0]
print(f"target {t['scrapeUrl']}: health={t['health']} lastError={t['lastError']!r} lastScrapeDuration={t['lastScrapeDuration']:.6f}s")
if t["health"] != "up" or t["lastError"]:
    sys.exit(1)
EOF
samples=$(scalar 'scrape_samples_scraped{job="sre-mini"}')
post_relabel=$(scalar 'scrape_samples_post_metric_relabeling{job="sre-mini"}')
live_samples=$(curl -fsS "$URL" | grep -vc '^#')
echo "scrape_samples_scraped = $samples, post relabeling = $post_relabel, /metrics now has $live_samples samples"
[ "$samples" = "$post_relabel" ] || die "samples lost in relabeling"
[ "$samples" -ge $((live_samples - 5)) ] && [ "$samples" -le $((live_samples + 5)) ] ||
  die "Prometheus scraped $samples samples, /metrics has $live_samples"
rate=$(scalar 'sum(rate(http_requests_total{job="sre-mini",route="/metrics"}[5s])) > 0')
[ -n "$rate" ] || die "rate(http_requests_total) is empty: counters not moving"
echo "sum(rate(http_requests_total{route=\"/metrics\"}[5s])) = $rate"
les=$(query 'http_request_duration_seconds_bucket{job="sre-mini",method="GET",route="/work"}' |
  python3 -c 'import json,sys; print(" ".join(sorted({r["metric"]["le"] for r in json.load(sys.stdin)["data"]["result"]}, key=lambda v: float(v))))')
echo "le values stored for GET /work: $les"
case " $les " in *" 1.0 "*" +Inf "*) ;; *) die "le values not stored with a decimal point: $les" ;; esac

# Prometheus's own counters of rejected scrapes and samples, read from its /metrics: all must be 0.
curl -fsS "http://127.0.0.1:$PPORT/metrics" >"$TMP/prom-self.txt"
bad=$(grep -E '^prometheus_target_(scrape_pool_exceeded_[a-z_]*|scrapes_exceeded_[a-z_]*|scrapes_sample_[a-z_]*|scrape_pool_exceeded_label_limits)_total[ {]' "$TMP/prom-self.txt" | awk '$NF != 0')
checked=$(grep -cE '^prometheus_target_(scrape_pool_exceeded_[a-z_]*|scrapes_exceeded_[a-z_]*|scrapes_sample_[a-z_]*|scrape_pool_exceeded_label_limits)_total[ {]' "$TMP/prom-self.txt")
[ "$checked" -ge 4 ] || die "Prometheus's own scrape-rejection counters not found ($checked)"
[ -z "$bad" ] || { echo "$bad" >&2; die "Prometheus rejected scrapes or samples"; }
echo "Prometheus's own rejection counters, all 0:"
grep -E '^prometheus_target_(scrape_pool_exceeded_[a-z_]*|scrapes_exceeded_[a-z_]*|scrapes_sample_[a-z_]*|scrape_pool_exceeded_label_limits)_total[ {]' "$TMP/prom-self.txt" | sed 's/^/  /'
failed=$(scalar 'sum(prometheus_target_scrapes_cache_flush_forced_total) + sum(prometheus_target_scrape_pool_reloads_failed_total)' || true)
echo "scrape cache flushes + failed reloads: ${failed:-n/a}"
if grep -qiE 'level=(error|warn).*(scrape|sre-mini|content.type)' "$TMP/prometheus.log"; then
  grep -iE 'level=(error|warn)' "$TMP/prometheus.log" >&2
  die "Prometheus logged scrape warnings"
fi

# Content-Type: Prometheus 3 fails a scrape whose media type it cannot parse (no fallback_scrape_protocol here).
# It takes text/plain (mime.ParseMediaType) as the 0.0.4 text format. Checked on the wire for every major version;
# with a 3.x package the live scrape above is the proof as well.
ct=$(curl -fsS -o /dev/null -w '%{content_type}' "$URL")
[ "$ct" = "text/plain; version=0.0.4; charset=utf-8" ] || die "Content-Type is '$ct'"
python3 - "$ct" <<'EOF' || die "Content-Type does not parse as text/plain version=0.0.4"
import sys
from email.message import Message
m = Message(); m["content-type"] = sys.argv[1]
assert m.get_content_type() == "text/plain" and m.get_param("version") == "0.0.4" and m.get_param("charset") == "utf-8"
EOF
case "$PROM_VERSION" in
  3.*) echo "Content-Type '$ct' accepted by Prometheus $PROM_VERSION (live scrape healthy)" ;;
  *) echo "Content-Type '$ct': exact; Prometheus here is $PROM_VERSION (Debian), not 3.x: media type parsed as Prometheus 3 does" ;;
esac

# ---- 5. the cost of one scrape --------------------------------------------------------------------------------------
say "cost of one scrape: $SCRAPES scrapes on one keep-alive connection"
python3 - "$PORT" "$SCRAPES" <<'EOF' || die "scrape timing failed"
import socket, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""
def get(path):
    global buf
    t0 = time.perf_counter_ns()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    while b"\r\n\r\n" not in buf:
        buf += s.recv(1 << 20)
    head, buf = buf.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(buf) < length:
        buf += s.recv(1 << 20)
    body, buf = buf[:length], buf[length:]
    return time.perf_counter_ns() - t0, body
for _ in range(20):
    get("/metrics"); get("/healthz")
m, h = [], []
for _ in range(n):
    t, body = get("/metrics"); m.append(t)
    t, _ = get("/healthz"); h.append(t)
series = sum(1 for l in body.split(b"\n") if l and not l.startswith(b"#"))
q = lambda xs, p: sorted(xs)[int(len(xs) * p) - 1]
print(f"series {series}, bytes {len(body)}")
print(f"GET /metrics round trip: median {statistics.median(m)/1e3:.0f} us, p90 {q(m,.9)/1e3:.0f} us, min {min(m)/1e3:.0f} us")
print(f"GET /healthz round trip: median {statistics.median(h)/1e3:.0f} us (same connection, for the fixed cost)")
print(f"render + transfer of /metrics, median: {(statistics.median(m)-statistics.median(h))/1e3:.0f} us")
EOF

echo
echo "check-metrics: OK (sre-mini on 127.0.0.1:$PORT, promtool clean, Prometheus $PROM_VERSION up == 1)"
