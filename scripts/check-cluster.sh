#!/usr/bin/env bash
# The kit on a real single-node Kubernetes (cluster/up.sh), applied as a user applies it, and the drills that only a
# real cluster can judge (tools/srekit/cluster_drills.py). The cluster is torn down on every exit, and the step fails
# if anything of it is left behind.
#   1. build (or reuse) the cluster's binaries, and bring the cluster up: control plane, node, registry, Traefik (the
#      monitoring stack's modules build in the background meanwhile)
#   2. the image: the Dockerfile's runtime stage over the reproducible static binary the supply-chain step checks,
#      pushed to the cluster's registry and pulled by digest
#   3. the platform's part (deploy/platform, with this registry allowed); the unedited kit
#      must be refused for its placeholder digest; every rendering (root, drills-off, the overlays) with the image
#      pinned must pass a server-side dry run (in the admission drill); then the TLS Secret the Ingress names and
#      `kubectl apply -k` of the root with only the image overridden, rolled out
#   4. the drills on the kit as applied: admission, cgroups, rollout, probes, contention, healing (CLUSTER_DRILLS)
#   5. the monitoring stack (cluster/monitoring.sh), the dev overlay on top (the kit's ServiceMonitor, PrometheusRule
#      and AlertmanagerConfig, the occupancy HPA), and its drills: monitoring, pdb, alerts-setup, edge, burn,
#      scaling, alerts-delivered (MONITORING_DRILLS; the slow alerts' fault runs behind the three in between)
# Needs root. How long it takes, cold and warm: docs/cluster.md, "Build".
. "$(dirname "$0")/lib.sh"
. "$ROOT/cluster/lib.sh"
cd "$ROOT"
[ "$(id -u)" -eq 0 ] || die "the cluster step runs a kubelet and must run as root"
need yamllint # brings PyYAML, which the drills import
python3 -c 'import yaml' || die "python3 cannot import yaml"

say "cluster: table tests of the response reader the drills' load uses"
PYTHONPATH=tools python3 -m unittest -q srekit.test_http1 || die "srekit.test_http1 failed"

OUT="$ROOT/target/cluster"
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sre-mini-cluster.XXXXXX")
hook_pid="" build_pid=""
finish() {
  local rc=$?
  set +e # a failing step of the teardown must not stop the rest of it (lib.sh sets -e)
  [ -n "$build_pid" ] && kill -- "-$build_pid" 2>/dev/null && wait "$build_pid" 2>/dev/null
  [ -n "$hook_pid" ] && kill "$hook_pid" 2>/dev/null && wait "$hook_pid" 2>/dev/null
  say "cluster: tearing down"
  if ! bash "$ROOT/cluster/down.sh"; then
    echo "FAIL: cluster/down.sh left part of the cluster behind (above)" >&2
    rc=1
  fi
  rm -rf "$WORK"
  exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

# ---- 1. the cluster ----------------------------------------------------------------------------------------------
# What the cluster starts with is built first; the monitoring stack's modules build behind the first drills, which
# mostly wait on Kubernetes' own timers (niced: they take only the CPU the drills leave).
bash cluster/build.sh "${CORE_MODULES[@]}" || die "cluster/build.sh failed"
setsid nice -n 19 bash cluster/build.sh "${MONITORING_MODULES[@]}" >"$OUT/build-monitoring.log" 2>&1 & # own group: see finish
build_pid=$!
bash cluster/up.sh --no-monitoring || die "cluster/up.sh failed (above; component logs in $KUBE_LOGS)"
eval "$(bash cluster/kubeconfig.sh)"

# ---- 2. the image ------------------------------------------------------------------------------------------------
TARGET=$(rust_target amd64)
BIN="$ROOT/target/supply-chain/sre-mini-$TARGET"
if [ -f "$BIN" ] && [ -z "$(git status --porcelain)" ] \
  && grep -qx "revision=$(git rev-parse HEAD)" "$ROOT/target/supply-chain/build-info.txt" 2>/dev/null; then
  echo "binary: the supply-chain step's reproducible build of $(git rev-parse --short HEAD): $BIN"
else
  REPRO_TARGET=$TARGET bash scripts/reproducible-build.sh "$OUT/build" || die "the reproducible build failed"
  BIN="$OUT/build/sre-mini-$TARGET"
fi
IMAGE=$(bash cluster/images.sh sre-mini "$BIN" | tail -n1) || die "the sre-mini image did not build"
bash cluster/images.sh busybox >/dev/null || die "the busybox image (the contention drill's hog) did not build"
IMAGE_NAME=$(image_name "$IMAGE")
echo "image: $IMAGE"

# ---- 3. the kit, as a user applies it ------------------------------------------------------------------------------
say "kit: the platform's part, the TLS Secret, then kubectl apply -k with the image override"
relpath() { python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"; }
# user_kustomization DIR RESOURCE [COMPONENT...]: a user's own kustomization of RESOURCE (a path in the repository),
# with the components given and the image pinned to what was pushed.
user_kustomization() {
  local dir=$1 res=$2 rel c
  shift 2
  mkdir -p "$dir"
  rel=$(relpath "$ROOT" "$dir")
  {
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/%s\n' "$rel" "$res"
    if [ $# -gt 0 ]; then
      printf 'components:\n'
      for c in "$@"; do printf '  - %s/%s\n' "$rel" "$c"; done
    fi
    printf 'images:\n  - name: ghcr.io/sre-mini/sre-mini\n    newName: %s\n    digest: %s\n' "$IMAGE_NAME" "${IMAGE##*@}"
  } >"$dir/kustomization.yaml"
}
# The platform team's kustomization: deploy/platform with this cluster's registry as the one allowed, as a bank
# would list its mirror.
mkdir -p "$WORK/platform"
{
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/deploy/platform\n' \
    "$(relpath "$ROOT" "$WORK/platform")"
  printf 'patches:\n  - patch: |-\n      apiVersion: v1\n      kind: ConfigMap\n      metadata:\n'
  printf '        name: sre-mini-admission\n        namespace: kube-system\n      data:\n'
  printf '        allowedImagePrefixes: "%s/sre-mini/"\n' "$REGISTRY"
} >"$WORK/platform/kustomization.yaml"
kubectl apply -k "$WORK/platform" || die "the platform's kustomization did not apply"
# The kit as shipped, image not yet pinned: the admission policy must refuse the placeholder digest. A new policy
# takes effect once the API server has loaded it, a moment after it is created: up to 30 s.
for _ in $(seq 1 30); do
  out=$(kubectl apply --dry-run=server -k . 2>&1) || break
  sleep 1
done
if kubectl apply --dry-run=server -k . >/dev/null 2>&1; then
  die "the unedited kit (all-zero digest) was admitted 30 s after the policy was created: $out"
fi
grep -q "placeholder" <<<"$out" || die "the unedited kit was refused for another reason than the placeholder digest: $out"
echo "unedited kit refused: $(grep -o 'denied request: .*' <<<"$out" | head -n1)"
# Every rendering a user might apply, with the image pinned: each must pass the server's validation and admission.
renderings=()
for r in "root ." "drills-off . deploy/components/drills-off" "dev deploy/overlays/dev" \
  "staging deploy/overlays/staging" "prod deploy/overlays/prod"; do
  read -r -a words <<<"$r"
  user_kustomization "$WORK/${words[0]}" "${words[@]:1}"
  kubectl kustomize "$WORK/${words[0]}" >"$OUT/rendered-${words[0]}.yaml" || die "kubectl kustomize of ${words[0]} failed"
  renderings+=(--rendering "$OUT/rendered-${words[0]}.yaml")
done
KIT="$WORK/root"
# The Ingress's certificate (docs/kubernetes.md, "Deploy"): here a self-signed one for its host.
host=$(python3 -c 'import yaml; print(next(d for d in yaml.safe_load_all(open("deploy/base/k8s.yaml")) if d and d["kind"] == "Ingress")["spec"]["rules"][0]["host"])')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$host" \
  -addext "subjectAltName=DNS:$host" -keyout "$WORK/tls.key" -out "$OUT/ingress-ca.crt" 2>/dev/null \
  || die "openssl could not make the Ingress certificate"
kubectl -n sre-mini create secret tls sre-mini-tls --cert="$OUT/ingress-ca.crt" --key="$WORK/tls.key"
# The drill token's Secret, as the runbook has an operator create it for a drill (without it the drills answer 404).
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/drill-token"
kubectl -n sre-mini create secret generic sre-mini-drill-token --from-file=token="$WORK/drill-token"
kubectl apply -k "$KIT" || die "kubectl apply -k failed"
kubectl -n sre-mini rollout status deployment/sre-mini --timeout=180s || die "the Deployment did not roll out"

# ---- 4. the drills -------------------------------------------------------------------------------------------------
export KUBE_STATE CGROUP_ROOT PROMETHEUS_IP ALERTMANAGER_IP POD_CIDR SERVICE_CIDR
drills() { # drills NAME KIT DRILL...: tools/srekit/cluster_drills.py on the kit applied from KIT
  local name=$1 kit=$2
  shift 2
  srekit cluster_drills --kit "$kit" --ca "$OUT/ingress-ca.crt" --drill-token-file "$WORK/drill-token" \
    "${renderings[@]}" --policy deploy/platform/admission-policy.yaml --audit-log "$KUBE_LOGS/audit.log" \
    --webhook "http://$NODE_IP:$hook_port" --scaling-svg "$OUT/scaling.svg" --results "$OUT/results-$name.json" "$@"
}
# Alertmanager's receivers (the webhook URLs in Secret sre-mini-alert-receivers) point at this receiver, on the
# node's address so that the cluster's Alertmanager reaches it.
PYTHONPATH=tools python3 -m srekit.webhook --bind "$NODE_IP" --port-file "$WORK/hook.port" --lifetime 7200 \
  >"$OUT/webhook.log" 2>&1 &
hook_pid=$!
for _ in $(seq 1 50); do [ -s "$WORK/hook.port" ] && break; sleep 0.1; done
hook_port=$(cat "$WORK/hook.port" 2>/dev/null) || die "the webhook receiver did not start ($(cat "$OUT/webhook.log"))"
# shellcheck disable=SC2086  # the drill lists are lists of words
drills kit "$KIT" ${CLUSTER_DRILLS:-admission cgroups rollout probes contention healing} || die "cluster drills failed (above)"

# ---- 5. the monitoring stack, with the kit's own objects ------------------------------------------------------------
say "cluster: the monitoring stack"
wait "$build_pid" || { cat "$OUT/build-monitoring.log" >&2; die "building the monitoring stack's modules failed (above)"; }
build_pid=""
bash cluster/monitoring.sh || die "cluster/monitoring.sh failed (above)"
say "kit: the dev overlay, with its ServiceMonitor, PrometheusRule, AlertmanagerConfig and the occupancy HPA"
kubectl apply -k "$WORK/dev" || die "kubectl apply -k of the dev overlay failed"
kubectl -n sre-mini rollout status deployment/sre-mini --timeout=180s || die "the Deployment did not roll out"
# shellcheck disable=SC2086
drills monitoring "$WORK/dev" ${MONITORING_DRILLS:-monitoring pdb alerts-setup edge burn scaling alerts-delivered} || die "monitoring drills failed (above)"
