#!/usr/bin/env bash
# Builds the cluster's programs from their Go modules, pinned by the go.mod and go.sum under cluster/build/, and
# installs the node's pinned Debian packages. Idempotent: each module's binaries are cached outside the checkout
# under a key of its go.mod, go.sum, the Go version and its link flags, so a second run builds nothing.
#   bash cluster/build.sh              # every module under cluster/build/
#   bash cluster/build.sh kubernetes   # one
# A module that does not build fails the run with the compiler's message; nothing is skipped.
. "$(dirname "$0")/../scripts/lib.sh"
. "$ROOT/cluster/lib.sh"

command -v go >/dev/null || die "go is missing: the cluster is built from Go modules (Go >= 1.25, from the Go module proxy)"
need "${CLUSTER_TOOLS[@]}"

# ldflags MODULE: the version stamps each program reports (the values come from the module's go.mod).
ldflags() {
  local v flags="-s -w"
  case "$1" in
    kubernetes)
      v=$(mod_version k8s.io/kubernetes)
      local minor=${v#v1.}; minor=${minor%%.*}
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
        flags+=" -X $p.buildDate=1970-01-01T00:00:00Z"
      done ;;
    traefik) flags+=" -X github.com/traefik/traefik/v3/pkg/version.Version=$(mod_version github.com/traefik/traefik/v3)" ;;
    registry) flags+=" -X github.com/distribution/distribution/v3/version.version=$(mod_version github.com/distribution/distribution/v3)" ;;
    kube-state-metrics) flags+=" -X github.com/prometheus/common/version.Version=$(mod_version k8s.io/kube-state-metrics/v2 | tr -d v)" ;;
    prometheus) # module v0.MMM.P is Prometheus M.MM.P (v0.305.0 is 3.5.0)
      v=$(mod_version github.com/prometheus/prometheus); v=${v#v0.}
      flags+=" -X github.com/prometheus/common/version.Version=${v:0:1}.$((10#${v:1:2})).${v#*.}" ;;
    prometheus-operator) flags+=" -X github.com/prometheus/common/version.Version=$(mod_version github.com/prometheus-operator/prometheus-operator | tr -d v)" ;;
  esac
  echo "$flags"
}
mod_version() { go list -m -f '{{.Version}}' "$1"; }

build_module() {
  local name=$1 dir="$CLUSTER_DIR/build/$1"
  [ -f "$dir/go.mod" ] || die "no module $dir/go.mod"
  local key out
  key=$(cd "$dir" && { cat go.mod go.sum; go version; ldflags "$name"; } | sha256sum | cut -c1-16)
  out="$KUBE_CACHE/$name-$key"
  # One build of a module at a time, whichever checkout asks: a second one waits, then finds it cached.
  mkdir -p "$KUBE_CACHE"
  exec {lock}>"$KUBE_CACHE/.lock-$name"
  flock "$lock"
  if [ -f "$out/.complete" ]; then
    echo "$name: cached in $out"
  else
    say "build $name ($(cd "$dir" && go list tool | tr '\n' ' '))"
    local t0; t0=$(date +%s)
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp"
    # -mod=readonly: go.sum is the pin; a module it does not list stops the build instead of being fetched.
    (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$(ldflags "$name")" \
      -o "$out.tmp/" $(go list tool)) || die "go build of $name failed (above)"
    # go build names a binary after its package's directory: etcd's is server/v3.
    if [ -f "$out.tmp/v3" ]; then mv "$out.tmp/v3" "$out.tmp/etcd"; fi
    if [ -f "$out.tmp/server" ]; then mv "$out.tmp/server" "$out.tmp/etcd"; fi
    touch "$out.tmp/.complete"
    rm -rf "$out"
    mv "$out.tmp" "$out"
    echo "$name: built in $(( $(date +%s) - t0 )) s into $out"
    # Older builds of the same module are not used again.
    find "$KUBE_CACHE" -maxdepth 1 -name "$name-*" ! -name "$name-$key" -exec rm -rf {} +
  fi
  mkdir -p "$KUBE_CACHE/current"
  ln -sfn "$out" "$KUBE_CACHE/current/$name"
  exec {lock}>&-
}

mods=("$@")
[ ${#mods[@]} -gt 0 ] || mods=("${CORE_MODULES[@]}" "${MONITORING_MODULES[@]}")
for d in "$CLUSTER_DIR"/build/*/; do # every module is in one of the lists, or nothing would build it
  [[ " ${CORE_MODULES[*]} ${MONITORING_MODULES[*]} " == *" $(basename "$d") "* ]] \
    || die "cluster/build/$(basename "$d") is in neither CORE_MODULES nor MONITORING_MODULES (cluster/lib.sh)"
done
for m in "${mods[@]}"; do build_module "$m"; done
