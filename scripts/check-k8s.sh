#!/usr/bin/env bash
# check-k8s.sh: the kit (deploy/: base, platform, components, overlays) and the Dockerfile, validated offline and tied
# to the binary. The same objects meet a real API server in scripts/check-cluster.sh.
#   0. render every kustomization with `kubectl kustomize`: the root one (`kubectl apply -k .`, the base), the root
#      one plus deploy/components/drills-off as a user's own kustomization would include it, the platform's part, the
#      dev, staging and prod overlays, and a tenant copy of staging moved to another namespace.
#      The root rendering must equal deploy/base/k8s.yaml except for the image pin (drills-off: and DRILLS=off);
#      changing the pin must change the image; the tenant copy must keep no reference to namespace sre-mini.
#   1. yamllint (the repo's .yamllint.yaml, --strict) on every tracked YAML file
#   2. kubernetes-validate --strict on the core kinds, for every Kubernetes version it ships from 1.30 to the newest
#   3. the CRD kinds (ServiceMonitor, PrometheusRule) against the JSON schemas in $SCHEMA_DIR, strictly
#   4. checkov (kubernetes + dockerfile frameworks, --skip-download): zero failures; skips only as annotated
#      `checkov.io/skip*` annotations in k8s.yaml, each with a reason
#   5. hadolint: zero findings at any level, inline ignore pragmas disabled, OCI labels required
#   6. consistency: the platform's part with an overlay, with itself (and a self-test proving each rule can fail),
#      then with the real binary
# The container itself (static binary, locked-down run, buildah image) is scripts/container-contract.sh, a separate
# step of the check command.
# Usage: bash scripts/check-k8s.sh
# Env: SCHEMA_DIR   folder with the CRD JSON schemas (default ../shared/schemas), or an https:// base URL to fetch
#                   them from, pinned to a commit, e.g. on a GitHub runner without the shared folder:
#                   https://raw.githubusercontent.com/datreeio/CRDs-catalog/<commit>/monitoring.coreos.com
#      SRE_MINI_BIN a prebuilt binary to test instead of target/release/sre-mini; K8S_MIN_VERSION (1.30)
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

SCHEMA_DIR="${SCHEMA_DIR:-$SHARED_DIR/schemas}"
K8S_MIN_VERSION="${K8S_MIN_VERSION:-1.30}"
OUT="$ROOT/target/check-k8s"
mkdir -p "$OUT"
PY="tests/k8s/k8s_checks.py"

need yamllint kubernetes-validate jsonschema checkov hadolint kubectl
kubectl kustomize --help >/dev/null 2>&1 || die "kubectl has no built-in kustomize"
command -v git >/dev/null || die "git is required to list the repository's YAML files"

# ---- 1. yamllint ------------------------------------------------------------------------------------------------
say "yamllint -c .yamllint.yaml --strict on every tracked YAML file"
mapfile -t yamls < <(git ls-files '*.yaml' '*.yml')
printf '%s\n' "${yamls[@]}" | grep -qx 'deploy/base/k8s.yaml' || die "deploy/base/k8s.yaml is not tracked by git"
yamllint -c .yamllint.yaml --strict "${yamls[@]}" || die "yamllint found problems"
echo "yamllint: ${#yamls[@]} files clean: ${yamls[*]}"

# ---- 0. kustomize renderings ------------------------------------------------------------------------------------
say "kubectl kustomize ($(kubectl version --client 2>/dev/null | grep -i kustomize | tr -d '\n')): base, platform, overlays, a user's own"
render() { # render NAME DIR: kubectl kustomize DIR > $OUT/NAME.yaml
  kubectl kustomize "$2" >"$OUT/$1.yaml" || die "kubectl kustomize $2 failed"
  echo "  $1: $(grep -c '^kind:' "$OUT/$1.yaml") objects from $2"
}
render root "$ROOT"
render platform "$ROOT/deploy/platform"
for e in dev staging prod; do render "$e" "$ROOT/deploy/overlays/$e"; done
# A user's own kustomizations, outside this tree (kustomize refuses a base that contains its overlay, and absolute
# paths): the repository with the drills-off component, and a tenant's copy of staging in another namespace.
KWORK=$(mktemp -d "${TMPDIR:-/tmp}/sre-mini-kustomize.XXXXXX")
trap 'rm -rf "$KWORK"' EXIT
mkdir -p "$KWORK/user" "$KWORK/tenant"
krel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$ROOT" "$KWORK/user")
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s/deploy/components/drills-off\n' \
  "$krel" "$krel" >"$KWORK/user/kustomization.yaml"
render drills-off "$KWORK/user"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: payments-staging\nresources:\n  - %s/deploy/overlays/staging\n' \
  "$krel" >"$KWORK/tenant/kustomization.yaml"
render tenant-copy "$KWORK/tenant"
pinned=$(python3 "$PY" kustomize-image deploy/base/kustomization.yaml) || die "deploy/base/kustomization.yaml does not pin the image by digest"
python3 "$PY" same-as-source "$OUT/root.yaml" "$pinned" || die "the root kustomization is not deploy/base/k8s.yaml with the image pinned"
python3 "$PY" same-as-source "$OUT/drills-off.yaml" "$pinned" DRILLS=off || die "deploy/components/drills-off changes more than DRILLS"
python3 "$PY" tenant-copy "$OUT/tenant-copy.yaml" payments-staging || die "a namespace override leaves references to sre-mini behind"
# The pin works: another digest in a copy of the base's kustomization.yaml must come out as the Deployment's image.
mkdir -p "$KWORK/pin"
cp deploy/base/k8s.yaml "$KWORK/pin/"
fake="sha256:$(printf 'pin-test' | sha256sum | cut -d' ' -f1)"
sed "s/^\(    digest: \).*/\1$fake/" deploy/base/kustomization.yaml >"$KWORK/pin/kustomization.yaml"
kubectl kustomize "$KWORK/pin" >"$KWORK/pin.yaml" || die "kubectl kustomize of the pin test failed"
python3 "$PY" same-as-source "$KWORK/pin.yaml" "ghcr.io/sre-mini/sre-mini:0.1.0@$fake" >/dev/null \
  || die "changing the digest in deploy/base/kustomization.yaml did not change the rendered image"
echo "pin test: digest ${fake:0:19}... in deploy/base/kustomization.yaml -> the rendered Deployment runs it"
# What the checks below read: the platform's part with an overlay, as a cluster runs them together.
cat "$OUT/platform.yaml" <(echo ---) "$OUT/dev.yaml" >"$OUT/platform+dev.yaml"
cat "$OUT/platform.yaml" <(echo ---) "$OUT/prod.yaml" >"$OUT/platform+prod.yaml"
MANIFESTS=("$OUT/platform+dev.yaml" "$OUT/platform+prod.yaml" "$OUT/drills-off.yaml")
label_of() { basename "$1" .yaml; }

# ---- 2. kubernetes-validate --strict, per version -----------------------------------------------------------------
mapfile -t versions < <(srekit validators k8s-versions "$K8S_MIN_VERSION")
[ "${#versions[@]}" -ge 1 ] || die "kubernetes-validate ships no schema version >= $K8S_MIN_VERSION"
for m in "${MANIFESTS[@]}"; do
  say "kubernetes-validate --strict on the core kinds of $(label_of "$m"), Kubernetes $K8S_MIN_VERSION to the newest shipped"
  core="$OUT/core-$(label_of "$m").yaml"
  ncore=$(K8S_MANIFEST="$m" python3 "$PY" split "$core") || die "$m holds a kind that nothing validates"
  for v in "${versions[@]}"; do
    # A missing schema (e.g. a wrong apiVersion) is only a warning there, so every resource must report "passed".
    if ! kv=$(kubernetes-validate --strict -k "$v" "$core" 2>&1); then
      printf '%s\n' "$kv" | grep -v ' passed for resource ' >&2
      die "kubernetes-validate --strict failed for Kubernetes $v on $m"
    fi
    npass=$(printf '%s\n' "$kv" | grep -c ' passed for resource ' || true)
    if [ "$npass" -ne "$ncore" ] || printf '%s\n' "$kv" | grep -qE '^(WARN|ERROR)'; then
      printf '%s\n' "$kv" >&2
      die "kubernetes-validate $v: $npass of $ncore core resources of $m passed"
    fi
    echo "kubernetes-validate --strict $v: $npass/$ncore core resources valid ($(label_of "$m"))"
  done
done

# ---- 3. CRD kinds -----------------------------------------------------------------------------------------------
SCHEMA_DIR=$(local_schema_dir "$OUT/schemas" $(K8S_MANIFEST="$OUT/platform+dev.yaml" python3 "$PY" crd-files))
[ -d "$SCHEMA_DIR" ] || die "SCHEMA_DIR $SCHEMA_DIR does not exist (set SCHEMA_DIR to the folder with servicemonitor_v1.json)"
for m in "$OUT/platform+dev.yaml" "$OUT/platform+prod.yaml"; do
  say "CRD kinds of $(label_of "$m") against the JSON schemas in $SCHEMA_DIR"
  K8S_MANIFEST="$m" python3 "$PY" crd "$SCHEMA_DIR" || die "CRD validation failed for $m"
done

# ---- 4. checkov -------------------------------------------------------------------------------------------------
# Exceptions live only in k8s.yaml as `checkov.io/skip<n>: CKV_ID=reason`; a config file or CLI flag that skips
# checks is refused, and every annotated skip must carry a reason.
for cfg in .checkov.yaml .checkov.yml; do
  if [ -f "$cfg" ] && grep -qE 'skip-check|skip_check|soft-fail|soft_fail|check:' "$cfg"; then
    die "$cfg skips or softens checks; exceptions belong in k8s.yaml annotations with a reason"
  fi
done
run_checkov() { # run_checkov FILE FRAMEWORK [LABEL]
  local file=$1 fw=$2 label=${3:-$2}
  local json="$OUT/checkov-$label.json"
  case "$file" in /*) ;; *) file="$ROOT/$file" ;; esac
  say "checkov -f $file --framework $fw --skip-download"
  # Run from $OUT so no stray config in the working directory changes the result; exit status judged below.
  (cd "$OUT" && checkov -f "$file" --framework "$fw" --skip-download -o json) >"$json" 2>"$OUT/checkov-$label.err" || true
  srekit validators checkov "$json" "$fw" || die "checkov $fw: failures, unexplained skips or no result (full output: $json)"
}
# The core kinds only (the split of step 2): checkov has no rule for the operator's kinds, and its parser drops a
# whole file that holds one of them.
for m in "$OUT/root.yaml" "$OUT/drills-off.yaml" "$OUT/core-platform+prod.yaml"; do
  run_checkov "$m" kubernetes "kubernetes-$(label_of "$m")"
done
run_checkov Dockerfile dockerfile

# ---- 5. hadolint ------------------------------------------------------------------------------------------------
say "hadolint Dockerfile (threshold style, ignore pragmas disabled, OCI labels required, trusted registries only)"
hadolint --no-color --failure-threshold style --disable-ignore-pragma \
  --trusted-registry docker.io --trusted-registry gcr.io \
  --require-label org.opencontainers.image.source:url \
  --require-label org.opencontainers.image.revision:text \
  --require-label org.opencontainers.image.licenses:spdx \
  --require-label org.opencontainers.image.title:text \
  --require-label org.opencontainers.image.description:text \
  --strict-labels Dockerfile || die "hadolint reported findings"
echo "hadolint $(hadolint --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+'): Dockerfile clean at every level (all built-in DL rules, ShellCheck on RUN)"

# ---- 6. consistency ---------------------------------------------------------------------------------------------
export SHIPPED_ARCHES
CONSISTENT=("$OUT/platform+dev.yaml" "$OUT/platform+prod.yaml")
for m in "${CONSISTENT[@]}"; do
  say "consistency of $(label_of "$m") with itself"
  K8S_MANIFEST="$m" python3 "$PY" static || die "$m is inconsistent"
done
K8S_MANIFEST="$OUT/platform+dev.yaml" python3 "$PY" self-test || die "the consistency rules do not catch broken manifests"

BIN=$(release_binary)
for m in "${CONSISTENT[@]}"; do
  say "consistency of $(label_of "$m") with the binary (probe, drill, metrics and ingress paths; env names; termination)"
  K8S_MANIFEST="$m" python3 "$PY" runtime "$BIN" || die "$m does not match the binary"
done

say "check-k8s: all checks passed"
