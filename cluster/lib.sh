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

# The Debian packages the node runs, pinned to the versions it was built and measured with (docs/cluster.md).
# A point release of Debian changes the revision: update it here, and the run says which is installed.
CLUSTER_APT=(
  containerd=1.6.20~ds1-1+deb12u3
  runc=1.1.5+ds1-1+deb12u1
  containernetworking-plugins=1.1.1+ds1-3+b5
  iptables=1.8.9-2
  conntrack=1:1.4.7-1+b2
  buildah=1.28.2+ds1-3+deb12u1+b3
  busybox-static=1:1.35.0-4+deb12u1+b1
)

# kube_bin NAME: the path of a built Kubernetes binary (build.sh writes it; it must exist).
kube_bin() {
  local f="$KUBE_CACHE/current/kubernetes/$1"
  [ -x "$f" ] || die "$f is missing: run bash cluster/build.sh first"
  echo "$f"
}

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
