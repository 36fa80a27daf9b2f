#!/usr/bin/env bash
# Checks of the SLO rules and alerts (alerts/alerts.yaml), from any cwd:
#   1. yamllint (repo config) on alerts/;
#   2. the PrometheusRule validates against the CRD schema ($SCHEMA_DIR/prometheusrule_v1.json), in namespace
#      monitoring with the usual rule-selector labels;
#   3. `promtool check rules` on its .spec (extracted to a plain rule file, as the operator does);
#   4. the generated threshold tests (alerts/tests/burn.test.yaml) are up to date with their generator;
#   5. `promtool test rules` on every alerts/tests/*.test.yaml;
#   6. every alert has severity, long/short (burn alerts), summary, a description with $value, and a runbook_url
#      whose anchor is a heading of runbooks/incident.md;
#   7. every alerting rule fires in a unit test and has a must-not-fire case; every recording rule is read;
#   8. no rule, dashboard query or PromQL line of runbooks/ and docs/ names a namespace (a copy of the kit in
#      another namespace works from the same text);
#   9. the unit tests' input series carry the target labels of alerts/tests/target-labels.json, the ones the
#      operator's scrape gives a pod (the cluster step's monitoring drill reads them off a real Prometheus);
#  10. alerts/alertmanager/alertmanager.yml (the operator's translation of alertmanagerconfig.yaml, which the cluster
#      step's monitoring drill compares with the real operator's output): `amtool check-config` accepts it, and `amtool config routes test` sends every alert to the
#      receiver of its severity (and another namespace's copy to none of ours);
#  11. every kubectl command in runbooks/*.md and docs/*.md parses with the bundled kubectl, and its resource types
#      are kubectl's names (tools/srekit/doccheck.py; the PromQL of those files runs in the drill);
#  12. every metric a rule names is exported by the real binary (live /metrics, PORT=0) or recorded by a rule or in
#      the documented kube-state-metrics / Prometheus allow-list (alerts/check-rules.py); every selector matches a
#      live series; the series an *Absent alert or absent() expects exist before the first request.
# The end-to-end drill (the real Prometheus, Alertmanager and kube-state-metrics of a cluster firing the page) runs in
# scripts/check-cluster.sh.
# Env: SCHEMA_DIR (default $SHARED_DIR/schemas, or an https:// base URL pinned to a commit), SRE_MINI_BIN (default: target/release/sre-mini, built here).
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

t0=$(date +%s)
SCHEMA_DIR="${SCHEMA_DIR:-$SHARED_DIR/schemas}"
need promtool amtool yamllint jsonschema kubectl  # yamllint brings PyYAML, which the Python helpers import
need_apt curl curl
python3 -c 'import yaml, jsonschema' 2>/dev/null || die "python3 cannot import yaml and jsonschema after installing them"

tmp=$(mktemp -d)
bin_pid=""
cleanup() {
  if [ -n "$bin_pid" ] && kill -0 "$bin_pid" 2>/dev/null; then
    kill -TERM "$bin_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$bin_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$bin_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "alerts: yamllint"
[ -f .yamllint.yaml ] || die ".yamllint.yaml is missing at the repo root"
yamllint --strict -c .yamllint.yaml alerts/ || die "yamllint found problems in alerts/"
echo "yamllint: alerts/ clean"

say "alerts: PrometheusRule schema"
SCHEMA_DIR=$(local_schema_dir "$tmp/schemas" prometheusrule_v1.json)
python3 alerts/check-rules.py schema alerts/alerts.yaml "$SCHEMA_DIR/prometheusrule_v1.json"

say "alerts: promtool check rules"
python3 alerts/extract-rules.py alerts/alerts.yaml "$tmp/rules.yaml" || die "cannot extract .spec from alerts/alerts.yaml"
promtool check rules "$tmp/rules.yaml" || die "promtool check rules failed on the PrometheusRule's spec"

say "alerts: generated threshold tests are current"
mkdir -p "$tmp/gen"
python3 alerts/tests/gen-burn-tests.py "$tmp/gen/burn.test.yaml"
cmp -s "$tmp/gen/burn.test.yaml" alerts/tests/burn.test.yaml \
  || die "alerts/tests/burn.test.yaml differs from its generator's output: run python3 alerts/tests/gen-burn-tests.py and commit"
echo "burn.test.yaml matches gen-burn-tests.py"

say "alerts: promtool test rules"
cp alerts/tests/*.test.yaml "$tmp/"
(cd "$tmp" && promtool test rules ./*.test.yaml) || die "promtool test rules failed (output above)"

say "alerts: labels, annotations, runbook anchors"
python3 alerts/check-rules.py structure alerts/alerts.yaml runbooks/incident.md

say "alerts: unit-test coverage"
python3 alerts/check-rules.py coverage alerts/alerts.yaml alerts/tests

say "alerts: no rule, dashboard query or PromQL of runbooks/ and docs/ names a namespace"
python3 alerts/check-rules.py tenant alerts/alerts.yaml
srekit doccheck tenant . || die "PromQL that names a namespace (above): aggregate by namespace instead"

say "alerts: unit-test series carry the operator's target labels"
python3 alerts/check-rules.py testlabels alerts/tests/target-labels.json alerts/tests

say "alerts: Alertmanager routing (AlertmanagerConfig and alertmanager.yml)"
yamllint --strict -c .yamllint.yaml alerts/alertmanager/ || die "yamllint found problems in alerts/alertmanager/"
amtool check-config alerts/alertmanager/alertmanager.yml || die "amtool check-config rejected alerts/alertmanager/alertmanager.yml"
python3 alerts/check-rules.py routes alerts/alerts.yaml alerts/alertmanager/alertmanager.yml

say "alerts: the Grafana dashboard is its generator's output"
srekit dashboard render | cmp -s - alerts/dashboard/sre-mini-slo.json \
  || die "alerts/dashboard/sre-mini-slo.json differs from its generator: run PYTHONPATH=tools python3 -m srekit.dashboard render > alerts/dashboard/sre-mini-slo.json"
echo "sre-mini-slo.json matches tools/srekit/dashboard.py (its queries run against the drill's Prometheus)"

say "alerts: every kubectl command in runbooks/ and docs/ passes kubectl's own parser (offline)"
srekit doccheck kubectl . || die "runbook or doc commands that kubectl rejects (above)"

say "alerts: metric names against the live binary"
bin=$(release_binary)
start_sre_mini "$bin" "$tmp/bin.log" WORK_DELAY_MS=10 SHUTDOWN_DELAY_MS=0 DRAIN_TIMEOUT_MS=1000 DRILLS=on
bin_pid=$SRE_PID
port=$SRE_PORT
base="http://127.0.0.1:$port"
curl -fsS -m 5 "$base/metrics" >"$tmp/fresh.txt" || die "GET $base/metrics failed"
# Traffic that populates every series the rules read: 200s, a 500 (drill), HEAD, then recover.
for _ in 1 2 3; do curl -sS -m 5 -o /dev/null "$base/work" || die "GET /work failed"; done
curl -sS -m 5 -o /dev/null -I "$base/work" || die "HEAD /work failed"
curl -fsS -m 5 -o /dev/null -X POST "$base/fail/work?ratio=1" || die "POST /fail/work failed"
curl -sS -m 5 -o /dev/null "$base/work" || true
curl -fsS -m 5 -o /dev/null -X POST "$base/recover/work" || die "POST /recover/work failed"
curl -fsS -m 5 "$base/metrics" >"$tmp/live.txt" || die "GET $base/metrics failed"
grep -q 'http_requests_total{method="GET",route="/work",code="500"} [1-9]' "$tmp/live.txt" \
  || die "the /fail/work drill did not produce a counted 500 on /work"
echo "scraped $base/metrics before traffic ($(grep -vc '^#' "$tmp/fresh.txt") samples) and after ($(grep -vc '^#' "$tmp/live.txt") samples)"
python3 alerts/check-rules.py metrics alerts/alerts.yaml "$tmp/fresh.txt" "$tmp/live.txt"

say "alerts: all checks passed in $(( $(date +%s) - t0 )) s"
