#!/usr/bin/env bash
# The error-budget burn drill, end to end: real traffic to the real binary, a real Prometheus evaluating the real
# rules (alerts/alerts.yaml, unmodified), the fast-burn page firing, then the recording rule falling on recovery.
#
# Local mode (default; what the check command runs): starts target/release/sre-mini (PORT=0, WORK_DELAY_MS=50)
# and Debian's prometheus on 127.0.0.1:<free port> (temp storage, scrape and evaluation every 1 s, job "sre-mini"
# like the operator's ServiceMonitor job label), then runs alerts/drill.py. Everything started is stopped on exit.
# Takes about 3 minutes: the 14.4x rule has `for: 2m` (production value; the drill waits for it).
#
# Cluster mode: set TARGET and PROM to port-forwards and nothing is started:
#   kubectl -n sre-mini port-forward svc/sre-mini 8080:80 &
#   kubectl -n monitoring port-forward svc/kube-prometheus-stack-prometheus 9090:9090 &
#   TARGET=http://127.0.0.1:8080 PROM=http://127.0.0.1:9090 bash scripts/drill-burn.sh
# The port-forward pins one pod, so the fault and the drill traffic meet on the same pod. With a 15 s scrape and a
# 30 s rule evaluation the page fires about 2.5-3 minutes after the fault (FIRE_TIMEOUT defaults to 420 s there).
# The drill spends real error budget: run it in staging, or with the owner's agreement (runbooks/incident.md).
#
# Env: TARGET, PROM (cluster mode); RATIO (0.5); THREADS (4 local, 16 cluster); FIRE_TIMEOUT (180 local, 420
# cluster); FALL_TIMEOUT (120 local, 300 cluster); SRE_MINI_BIN (default: target/release/sre-mini, built here).
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

RATIO="${RATIO:-0.5}"
need_pip yamllint yamllint          # brings PyYAML for alerts/extract-rules.py

if [ -n "${TARGET:-}" ] || [ -n "${PROM:-}" ]; then
  [ -n "${TARGET:-}" ] && [ -n "${PROM:-}" ] || die "cluster mode needs both TARGET and PROM (see the header)"
  say "drill-burn: cluster mode against TARGET=$TARGET PROM=$PROM (nothing started)"
  exec python3 alerts/drill.py --mode cluster --target "$TARGET" --prom "$PROM" --ratio "$RATIO" \
    --threads "${THREADS:-16}" --fire-timeout "${FIRE_TIMEOUT:-420}" --fall-timeout "${FALL_TIMEOUT:-300}" \
    --step 10 --setup-timeout 120
fi

need_apt prometheus prometheus
need_apt promtool prometheus

tmp=$(mktemp -d)
bin_pid=""
prom_pid=""
stop() { # stop PID: TERM, wait up to 5 s, then KILL
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$prom_pid"
  stop "$bin_pid"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=$(release_binary)

say "drill-burn: starting sre-mini (WORK_DELAY_MS=50) and Prometheus on 127.0.0.1"
start_sre_mini "$bin" "$tmp/sre-mini.log" WORK_DELAY_MS=50 SHUTDOWN_DELAY_MS=0 DRAIN_TIMEOUT_MS=2000 DRILLS=on
bin_pid=$SRE_PID
port=$SRE_PORT

python3 alerts/extract-rules.py alerts/alerts.yaml "$tmp/rules.yaml" || die "cannot extract the rules"
promtool check rules "$tmp/rules.yaml" >/dev/null || die "promtool check rules failed; run scripts/check-alerts.sh"
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $tmp/rules.yaml
scrape_configs:
  # The operator names the job after the Service (sre-mini); the rules select job="sre-mini".
  - job_name: sre-mini
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$port"]
EOF
prom_port=$(free_port)
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$prom_port" --storage.tsdb.retention.time=1h --log.level=warn \
  >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
ready=""
for _ in $(seq 1 150); do
  if curl -fsS -m 1 "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$prom_pid" 2>/dev/null || { cat "$tmp/prometheus.log" >&2; die "prometheus exited at start"; }
  sleep 0.2
done
[ -n "$ready" ] || { tail -20 "$tmp/prometheus.log" >&2; die "prometheus not ready within 30 s"; }
echo "sre-mini on 127.0.0.1:$port ($("$bin" --version 2>/dev/null | head -1)), $(prometheus --version 2>&1 | head -1) on 127.0.0.1:$prom_port"

set +e
python3 alerts/drill.py --mode "local (WORK_DELAY_MS=50, scrape and evaluation every 1 s)" \
  --target "http://127.0.0.1:$port" --prom "http://127.0.0.1:$prom_port" --ratio "$RATIO" \
  --threads "${THREADS:-4}" --fire-timeout "${FIRE_TIMEOUT:-180}" --fall-timeout "${FALL_TIMEOUT:-120}"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "--- last lines of the Prometheus log ---" >&2; tail -20 "$tmp/prometheus.log" >&2
  die "the burn drill failed (above)"
fi
say "drill-burn: passed"
