#!/usr/bin/env bash
# The error-budget burn drill, end to end: real traffic to the real binary, a real Prometheus evaluating the real
# rules (alerts/alerts.yaml, unmodified), a real Alertmanager routing with the shipped configuration, the fast-burn
# page delivered to a webhook, an inhibited page not delivered, then the recording rule falling on recovery.
#
# Local mode (default; what the check command runs), everything on 127.0.0.1 and stopped on exit:
#   - two copies of target/release/sre-mini (PORT=0, WORK_DELAY_MS=50): production (namespace sre-mini) and a
#     staging copy (sre-mini-staging);
#   - Debian's prometheus (temp storage, scrape and evaluation every 1 s) scraping them through the job
#     prometheus-operator generates from the kit's ServiceMonitor (tools/srekit/scrape.py: same relabelling, so
#     the series carry job, namespace, service, pod, endpoint, container, instance), plus a kube-state-metrics
#     stand-in (tools/srekit/ksm.py) whose staging Deployment reports no available pod;
#   - Debian's prometheus-alertmanager with alerts/alertmanager/alertmanagerconfig.yaml translated as the operator
#     does, for both namespaces, receivers pointed at a webhook receiver (tools/srekit/webhook.py), group wait 2 s
#     and group interval 10 s (the drill's own timers; production: alerts/alertmanager/);
# then alerts/drill.py: the same fault on both copies; production's 14.4x page must reach the webhook within its
# `for` plus one evaluation and the group wait; staging's must fire in Prometheus, be held inhibited by staging's
# SreMiniNoReadyPods, and never arrive; every PromQL expression of runbooks/ and docs/ and every dashboard query
# must run against this Prometheus. Takes about 3.5 minutes: the 14.4x rule has `for: 2m` (production value).
#
# Cluster mode: set TARGET and PROM to port-forwards and nothing is started:
#   kubectl -n sre-mini port-forward svc/sre-mini 8080:80 &
#   kubectl -n monitoring port-forward svc/kube-prometheus-stack-prometheus 9090:9090 &
#   [DRILL_TOKEN=...] TARGET=http://127.0.0.1:8080 PROM=http://127.0.0.1:9090 bash scripts/drill-burn.sh
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
need_apt prometheus-alertmanager prometheus-alertmanager
need_apt amtool prometheus-alertmanager
need_apt curl curl

tmp=$(mktemp -d)
pids=()
stop() { # stop PID: TERM, wait up to 5 s, then KILL
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${pids[@]}"; do stop "$p"; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready URL PID LOG WHAT: poll URL until it answers 2xx (30 s), or die with the log.
wait_ready() {
  local url=$1 pid=$2 log=$3 what=$4
  for _ in $(seq 1 150); do
    curl -fsS -m 1 "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$what exited at start"; }
    sleep 0.2
  done
  tail -20 "$log" >&2; die "$what not ready within 30 s"
}
# port_file FILE PID: the port a srekit helper wrote to FILE (10 s).
port_file() {
  for _ in $(seq 1 100); do [ -s "$1" ] && { cat "$1"; return 0; }; kill -0 "$2" 2>/dev/null || return 1; sleep 0.1; done
  return 1
}

bin=$(release_binary)
PROD_NS=sre-mini
STAGING_NS=sre-mini-staging

say "drill-burn: two sre-mini copies (namespaces $PROD_NS, $STAGING_NS), a kube-state-metrics stand-in, a webhook receiver, Alertmanager and Prometheus on 127.0.0.1"
start_sre_mini "$bin" "$tmp/prod.log" WORK_DELAY_MS=50 SHUTDOWN_DELAY_MS=0 DRAIN_TIMEOUT_MS=2000 DRILLS=on
pids+=("$SRE_PID"); port=$SRE_PORT
start_sre_mini "$bin" "$tmp/staging.log" WORK_DELAY_MS=50 SHUTDOWN_DELAY_MS=0 DRAIN_TIMEOUT_MS=2000 DRILLS=on
pids+=("$SRE_PID"); staging_port=$SRE_PORT

# Staging's Deployment reports no available pod, so the real SreMiniNoReadyPods rule fires for that namespace and
# Alertmanager must inhibit staging's burn page; production's reports 3 of 3.
PYTHONPATH=tools python3 -m srekit.ksm --port-file "$tmp/ksm.port" --deployment "$PROD_NS=3/3" \
  --deployment "$STAGING_NS=1/0" --lifetime 900 >"$tmp/ksm.log" 2>&1 &
pids+=("$!")
ksm_port=$(port_file "$tmp/ksm.port" "$!") || { cat "$tmp/ksm.log" >&2; die "the kube-state-metrics stand-in did not start"; }
PYTHONPATH=tools python3 -m srekit.webhook --port-file "$tmp/hook.port" --lifetime 900 >"$tmp/hook.log" 2>&1 &
pids+=("$!")
hook_port=$(port_file "$tmp/hook.port" "$!") || { cat "$tmp/hook.log" >&2; die "the webhook receiver did not start"; }
hook="http://127.0.0.1:$hook_port"

# Alertmanager: the shipped routing (alerts/alertmanager/alertmanagerconfig.yaml, translated as the operator does),
# instantiated for both namespaces, receivers pointed at the loopback webhook, timers shortened for the drill.
GROUP_WAIT=2s; GROUP_INTERVAL=10s
srekit amconfig render alerts/alertmanager/alertmanagerconfig.yaml \
  --namespace "$PROD_NS" --namespace "$STAGING_NS" --url "page=$hook/page" --url "ticket=$hook/ticket" \
  --url "info=$hook/info" --group-wait "$GROUP_WAIT" --group-interval "$GROUP_INTERVAL" >"$tmp/alertmanager.yml"
amtool check-config "$tmp/alertmanager.yml" >/dev/null || die "amtool check-config rejected the drill's alertmanager.yml"
am_port=$(free_port)
prometheus-alertmanager --config.file="$tmp/alertmanager.yml" --storage.path="$tmp/am" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address="" --log.level=warn >"$tmp/am.log" 2>&1 &
pids+=("$!")
wait_ready "http://127.0.0.1:$am_port/-/ready" "$!" "$tmp/am.log" "alertmanager"

python3 alerts/extract-rules.py alerts/alerts.yaml "$tmp/rules.yaml" || die "cannot extract the rules"
promtool check rules "$tmp/rules.yaml" >/dev/null || die "promtool check rules failed; run scripts/check-alerts.sh"
# The sre-mini job is what prometheus-operator generates from the kit's ServiceMonitor (tools/srekit/scrape.py),
# intervals shortened to 1 s; kube-state-metrics is scraped as kube-prometheus-stack does (honor_labels).
scraped_manifest "$tmp/scraped.yaml"
srekit scrape config --manifest "$tmp/scraped.yaml" --interval 1s --timeout 1s \
  --target "$PROD_NS=127.0.0.1:$port" --target "$STAGING_NS=127.0.0.1:$staging_port" >"$tmp/scrape.yml"
{
  printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n'
  printf 'rule_files:\n  - %s\n' "$tmp/rules.yaml"
  printf 'alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ["127.0.0.1:%s"]\n' "$am_port"
  cat "$tmp/scrape.yml"
  printf -- '- job_name: kube-state-metrics\n  honor_labels: true\n  static_configs:\n  - targets: ["127.0.0.1:%s"]\n' "$ksm_port"
} >"$tmp/prometheus.yml"
prom_port=$(free_port)
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$prom_port" --storage.tsdb.retention.time=1h --log.level=warn \
  >"$tmp/prometheus.log" 2>&1 &
pids+=("$!")
wait_ready "http://127.0.0.1:$prom_port/-/ready" "$!" "$tmp/prometheus.log" "prometheus"
echo "sre-mini on 127.0.0.1:$port ($PROD_NS) and 127.0.0.1:$staging_port ($STAGING_NS) ($("$bin" --version 2>/dev/null | head -1))"
echo "$(prometheus --version 2>&1 | head -1) on 127.0.0.1:$prom_port; $(prometheus-alertmanager --version 2>&1 | head -1) on 127.0.0.1:$am_port; webhook on $hook"

set +e
python3 alerts/drill.py --mode "local (WORK_DELAY_MS=50, scrape and evaluation every 1 s)" \
  --target "http://127.0.0.1:$port" --prom "http://127.0.0.1:$prom_port" --ratio "$RATIO" \
  --threads "${THREADS:-4}" --fire-timeout "${FIRE_TIMEOUT:-180}" --fall-timeout "${FALL_TIMEOUT:-120}" \
  --staging-target "http://127.0.0.1:$staging_port" --alertmanager "http://127.0.0.1:$am_port" --webhook "$hook" \
  --group-wait "${GROUP_WAIT%s}" --manifest "$tmp/scraped.yaml" --check-docs .
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "--- last lines of the Prometheus log ---" >&2; tail -20 "$tmp/prometheus.log" >&2
  echo "--- last lines of the Alertmanager log ---" >&2; tail -20 "$tmp/am.log" >&2
  die "the burn drill failed (above)"
fi
say "drill-burn: passed"
