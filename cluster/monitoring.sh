#!/usr/bin/env bash
# Adds the monitoring stack to the running cluster (cluster/up.sh runs it last, unless told --no-monitoring), as a
# platform team runs it for its tenants: prometheus-operator with its Prometheus and Alertmanager, kube-state-metrics,
# and prometheus-adapter serving the HPA's metrics. The operator's and kube-state-metrics' own manifests come from
# their modules; cluster/addons/monitoring*.yaml is the rest. Builds what it needs first (cluster/build.sh).
. "$(dirname "$0")/../scripts/lib.sh"
. "$ROOT/cluster/lib.sh"
[ "$(id -u)" -eq 0 ] || die "cluster/monitoring.sh must run as root (it builds images into the cluster's storage)"
[ -r "$KUBE_STATE/admin.kubeconfig" ] || die "no cluster is up: bash cluster/up.sh first"
bash "$CLUSTER_DIR/build.sh" "${MONITORING_MODULES[@]}" || die "cluster/build.sh failed"
OPERATOR_SRC=$(module_dir prometheus-operator github.com/prometheus-operator/prometheus-operator)
KSM_SRC=$(module_dir kube-state-metrics k8s.io/kube-state-metrics/v2)

say "add-ons: the monitoring stack (prometheus-operator, Prometheus, Alertmanager, kube-state-metrics, prometheus-adapter)"
image OPERATOR_IMAGE program operator
image RELOADER_IMAGE program prometheus-config-reloader
image KSM_IMAGE program kube-state-metrics
image ADAPTER_IMAGE program adapter
image PROMETHEUS_IMAGE program prometheus
image ALERTMANAGER_IMAGE debian-program alertmanager /usr/bin/prometheus-alertmanager alertmanager \
  /usr/share/prometheus/alertmanager
mon="$KUBE_STATE/addons/monitoring"
mkdir -p "$mon/operator" "$mon/prometheus" "$mon/kube-state-metrics"
for f in cluster-role cluster-role-binding deployment service-account service; do
  cp "$OPERATOR_SRC/example/rbac/prometheus-operator/prometheus-operator-$f.yaml" "$mon/operator/$f.yaml"
  cp "$KSM_SRC/examples/standard/$f.yaml" "$mon/kube-state-metrics/$f.yaml"
done
for f in cluster-role cluster-role-binding service-account; do
  cp "$OPERATOR_SRC/example/rbac/prometheus/prometheus-$f.yaml" "$mon/prometheus/$f.yaml"
done
# The kit's own adapter rule, indented into the adapter's configuration.
OCCUPANCY_RULE=$(grep -v '^#' "$ROOT/deploy/components/hpa-occupancy/prometheus-adapter-rule.yaml" | sed '2,$s/^/    /')
render addons/monitoring.yaml "$mon/monitoring.yaml"
render addons/monitoring-kube-system.yaml "$KUBE_STATE/addons/monitoring-kube-system.yaml"
{
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: monitoring\nresources:\n'
  printf '  - monitoring.yaml\n'
  for f in "$mon"/operator/*.yaml "$mon"/prometheus/*.yaml "$mon"/kube-state-metrics/*.yaml; do printf '  - %s\n' "${f#"$mon"/}"; done
  printf 'images:\n'
  printf '  - name: quay.io/prometheus-operator/prometheus-operator\n    newName: %s\n    digest: %s\n' "$(image_name "$OPERATOR_IMAGE")" "${OPERATOR_IMAGE##*@}"
  printf '  - name: registry.k8s.io/kube-state-metrics/kube-state-metrics\n    newName: %s\n    digest: %s\n' "$(image_name "$KSM_IMAGE")" "${KSM_IMAGE##*@}"
  printf 'patches:\n  - target:\n      kind: Deployment\n      name: prometheus-operator\n    patch: |-\n'
  printf '      - op: test\n        path: /spec/template/spec/containers/0/args/1\n'
  printf '        value: --prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:%s\n' "$(cd "$CLUSTER_DIR/build/prometheus-operator" && go list -m -f '{{.Version}}' github.com/prometheus-operator/prometheus-operator)"
  printf '      - op: replace\n        path: /spec/template/spec/containers/0/args/1\n        value: --prometheus-config-reloader=%s\n' "$RELOADER_IMAGE"
} >"$mon/kustomization.yaml"
kc apply -k "$mon" >/dev/null || die "kubectl apply -k of the monitoring stack failed ($mon)"
kc apply -f "$KUBE_STATE/addons/monitoring-kube-system.yaml" >/dev/null || die "the monitoring stack's kube-system objects did not apply"

for d in prometheus-operator kube-state-metrics prometheus-adapter; do
  kc -n monitoring rollout status "deployment/$d" --timeout=180s || die "$d did not become available"
done
for s in prometheus-k8s alertmanager-main; do
  wait_for kube-apiserver 180 kc -n monitoring rollout status "statefulset/$s" --timeout=5s || die "$s did not become ready"
done
wait_for kube-apiserver 120 kc wait --for=condition=Available apiservice/v1beta1.custom.metrics.k8s.io apiservice/v1beta1.metrics.k8s.io --timeout=5s

