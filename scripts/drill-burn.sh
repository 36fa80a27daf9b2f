#!/usr/bin/env bash
# The error-budget burn drill against a cluster you run, through port-forwards: real traffic to one pod, your
# Prometheus evaluating the kit's rules, the fast-burn alert firing, then the recording rule falling on recovery.
# The check command runs the same drill on its own cluster, with Alertmanager, a webhook and an inhibited staging
# copy (scripts/check-cluster.sh, the burn drill); this script is for a cluster of yours.
#   kubectl -n sre-mini port-forward pod/<one sre-mini pod> 8080:8080 &
#   kubectl -n monitoring port-forward svc/kube-prometheus-stack-prometheus 9090:9090 &
#   [DRILL_TOKEN=...] TARGET=http://127.0.0.1:8080 PROM=http://127.0.0.1:9090 bash scripts/drill-burn.sh
# The port-forward pins one pod, so the fault and the drill traffic meet on the same pod. With a 15 s scrape and a
# 30 s rule evaluation the page fires about 2.5-3 minutes after the fault. The drill spends real error budget: run
# it in staging, or with the owner's agreement (runbooks/incident.md).
# Env: TARGET, PROM (required); RATIO (0.5); THREADS (16); FIRE_TIMEOUT (420); FALL_TIMEOUT (300); EVAL (30, the
# Prometheus' evaluation interval in seconds).
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
[ -n "${TARGET:-}" ] && [ -n "${PROM:-}" ] || die "set TARGET and PROM to port-forwards of a pod and your Prometheus (see the header)"
say "drill-burn: against TARGET=$TARGET PROM=$PROM"
exec python3 alerts/drill.py --mode cluster --target "$TARGET" --prom "$PROM" --ratio "${RATIO:-0.5}" \
  --threads "${THREADS:-16}" --fire-timeout "${FIRE_TIMEOUT:-420}" --fall-timeout "${FALL_TIMEOUT:-300}" \
  --eval-interval "${EVAL:-30}" --step 10 --setup-timeout 120
