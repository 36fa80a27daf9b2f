# shellcheck shell=bash
# The single-node cluster's names, addresses and paths, written once for build.sh, up.sh, down.sh and kubeconfig.sh.
# Source it after scripts/lib.sh. Everything the cluster creates is named from these values, so down.sh can find
# and remove it from them alone, even after a run that died half-way.

CLUSTER_DIR="$ROOT/cluster"

# Built binaries, outside the checkout: a second run reuses them (docs/cluster.md, "Build").
KUBE_CACHE="${SRE_KUBE_CACHE:-$HOME/.cache/sre-mini-kube}"
# Everything a running cluster writes: etcd, containerd's content and snapshots, the kubelet's pods, the PKI.
KUBE_STATE="${SRE_KUBE_STATE:-/var/lib/sre-mini-kube}"
# Sockets, pid files, containerd's and runc's state, network namespaces: gone with the machine.
KUBE_RUN="${SRE_KUBE_RUN:-/run/sre-mini-kube}"
# Component logs stay after down.sh, inside the checkout's target/ (ignored by git), for the next reader.
KUBE_LOGS="${SRE_KUBE_LOGS:-$ROOT/target/cluster/logs}"

# The node's network: a bridge this cluster creates, and nothing routed anywhere else. The node's own address sits
# on the bridge, so the API server, the kubelet and the registry listen on an address no other interface carries.
BRIDGE=sremini0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
APISERVER_SERVICE_IP=10.96.0.1
# Fixed Service addresses of the monitoring stack: prometheus-adapter and the drills reach them there (no DNS here).
PROMETHEUS_IP=10.96.0.90
ALERTMANAGER_IP=10.96.0.93
NODE_NAME=sre-mini-node
APISERVER="https://$NODE_IP:6443"
# The local OCI registry (CNCF distribution), on the node's address: images are pushed there and pulled by digest.
REGISTRY="$NODE_IP:5000"
# The cgroup (v1: in every controller's hierarchy) that holds every pod: cgroupRoot of the kubelet.
CGROUP_ROOT=sre-mini-kube
# The iptables chain that keeps forwarding inside the bridge (up.sh explains).
FWD_CHAIN=SREMINI-KUBE-FWD

CONTAINERD_SOCK="$KUBE_RUN/containerd/containerd.sock"
PKI="$KUBE_STATE/pki"

# The Go modules under cluster/build/: what the cluster needs to start, and what its monitoring stack adds
# (cluster/monitoring.sh), so that the check command can build the second while the first runs its drills.
CORE_MODULES=(kubernetes registry traefik)
MONITORING_MODULES=(prometheus prometheus-operator kube-state-metrics prometheus-adapter)

# module_dir MODULE PATH: where the module cache holds PATH at the version cluster/build/MODULE pins (its manifests
# and CRDs are the upstream ones).
module_dir() {
  (cd "$CLUSTER_DIR/build/$1" && go mod download -json "$2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') \
    || die "go mod download of $2 (cluster/build/$1) failed"
}

# The Debian packages the node runs; their versions are pinned in scripts/lib.sh's PINS (docs/cluster.md).
CLUSTER_TOOLS=(containerd runc cni-plugins iptables conntrack buildah busybox-static alertmanager)

# kube_bin NAME: the path of a built Kubernetes binary (build.sh writes it; it must exist).
kube_bin() {
  local f="$KUBE_CACHE/current/kubernetes/$1"
  [ -x "$f" ] || die "$f is missing: run bash cluster/build.sh first"
  echo "$f"
}

# image_name REF: REGISTRY/NAME of REGISTRY/NAME:TAG@DIGEST (the registry's own colon stays).
image_name() { local n=${1%@*}; echo "${n%:*}"; }

# kubectl against this cluster, as its administrator.
kc() { "$(kube_bin kubectl)" --kubeconfig "$KUBE_STATE/admin.kubeconfig" "$@"; }

# cgroup_dirs: this cluster's cgroup in every mounted hierarchy (v1), or the one unified one (v2).
cgroup_dirs() {
  local d
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    echo "/sys/fs/cgroup/$CGROUP_ROOT"
  else
    for d in /sys/fs/cgroup/*/; do
      [ -L "${d%/}" ] && continue # cpu -> cpu,cpuacct and friends: the real directory is listed too
      echo "${d%/}/$CGROUP_ROOT"
    done
  fi
}

# render TEMPLATE DEST: cluster/TEMPLATE with every @NAME@ replaced by that variable (of cluster/lib.sh or set here).
render() {
  local out=$2 v
  mkdir -p "$(dirname "$out")"
  cp "$CLUSTER_DIR/$1" "$out"
  for v in KUBE_STATE KUBE_RUN KUBE_LOGS PKI BRIDGE NODE_IP NODE_NAME POD_CIDR SERVICE_CIDR REGISTRY CGROUP_ROOT \
    CONTAINERD_SOCK PAUSE_IMAGE TRAEFIK_IMAGE PROMETHEUS_IMAGE ALERTMANAGER_IMAGE ADAPTER_IMAGE PROMETHEUS_IP \
    ALERTMANAGER_IP OCCUPANCY_RULE; do
    python3 -c 'import sys; p, k, v = sys.argv[1:]; s = open(p).read(); open(p, "w").write(s.replace(k, v))' \
      "$out" "@$v@" "${!v:-}"
  done
  ! grep -o '@[A-Z_]*@' "$out" | head -n1 | grep . || die "$1 has a placeholder this script does not fill"
}

# wait_for NAME SECONDS COMMAND...: until COMMAND succeeds; fails with NAME's log if NAME dies or time runs out.
wait_for() {
  local name=$1 secs=$2 t0
  shift 2
  t0=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$KUBE_RUN/pids/$name")" 2>/dev/null; then
      tail -n 30 "$KUBE_LOGS/$name.log" >&2
      die "$name exited during start-up (log above)"
    fi
    if [ $(( $(date +%s) - t0 )) -ge "$secs" ]; then
      tail -n 30 "$KUBE_LOGS/$name.log" >&2
      die "$name was not ready within $secs s (log above)"
    fi
    sleep 0.5
  done
  echo "$name: ready after $(( $(date +%s) - t0 )) s"
}

# image NAME ARGS...: cluster/images.sh ARGS, its reference by digest in the variable NAME.
image() { local v=$1; shift; printf -v "$v" '%s' "$(bash "$CLUSTER_DIR/images.sh" "$@" | tail -n1)" && [ -n "${!v}" ] || die "the image $* did not build"; }
