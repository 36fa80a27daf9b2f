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

need promtool prometheus
need_apt curl curl
command -v python3 >/dev/null || die "python3 is required to drive traffic"
# The Python steps live in tools/srekit/metrics_check.py (run through lib.sh's srekit).

SCRAPES="${SCRAPES:-200}"
BIN=$(release_binary)

TMP="$(mktemp -d)"
SRV_PID="" PROM_PID=""
cleanup() {
  local rc=$?
  set +e # a process that dies of the signal must not stop the cleanup (lib.sh sets -e)
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
srekit metrics_check traffic "$PORT" || die "traffic driver failed"

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
  query "$1" | srekit metrics_check scalar
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
srekit metrics_check target-health "$targets" || die "target not healthy"
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
  srekit metrics_check le-values)
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
srekit metrics_check content-type "$ct" || die "Content-Type does not parse as text/plain version=0.0.4"
case "$PROM_VERSION" in
  3.*) echo "Content-Type '$ct' accepted by Prometheus $PROM_VERSION (live scrape healthy)" ;;
  *) echo "Content-Type '$ct': exact; Prometheus here is $PROM_VERSION (Debian), not 3.x: media type parsed as Prometheus 3 does" ;;
esac

# ---- 5. the cost of one scrape --------------------------------------------------------------------------------------
say "cost of one scrape: $SCRAPES scrapes on one keep-alive connection"
srekit metrics_check scrape-cost "$PORT" "$SCRAPES" || die "scrape timing failed"

echo
echo "check-metrics: OK (sre-mini on 127.0.0.1:$PORT, promtool clean, Prometheus $PROM_VERSION up == 1)"
