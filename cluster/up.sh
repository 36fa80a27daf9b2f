#!/usr/bin/env bash
# Brings up a single-node Kubernetes cluster on this machine, from the binaries cluster/build.sh builds:
#   control plane  etcd, kube-apiserver, kube-controller-manager, kube-scheduler (host processes, as kubeadm's
#                  static pods would run them, without the images)
#   node           containerd (CRI) with runc and the CNI bridge plugin, the kubelet, kube-proxy (iptables)
#   add-ons        the image registry every pod pulls from, Traefik as the Ingress controller, prometheus-operator's
#                  CRDs, and the monitoring stack (cluster/monitoring.sh; `--no-monitoring` leaves it for later)
# Everything listens on the node's address on a bridge this script creates, or on 127.0.0.1; nothing is routed
# out of the machine. On any failure it tears down what it started (cluster/down.sh) and fails with the reason;
# the component logs stay in $KUBE_LOGS (SRE_KUBE_KEEP=1 leaves a failed cluster up to look at). Needs root. Then: `eval "$(bash cluster/kubeconfig.sh)"; kubectl get nodes`.
. "$(dirname "$0")/../scripts/lib.sh"
. "$ROOT/cluster/lib.sh"
. "$ROOT/cluster/pki.sh"

[ "$(id -u)" -eq 0 ] || die "cluster/up.sh runs a kubelet, containerd and iptables rules: it must run as root"
t_start=$(date +%s)
bash "$CLUSTER_DIR/build.sh" "${CORE_MODULES[@]}" || die "cluster/build.sh failed"
need_apt openssl openssl
need_apt ip iproute2
need_apt curl curl
[ -d /sys/fs/cgroup/cpu ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || die "no cgroup v1 cpu hierarchy nor cgroup v2 at /sys/fs/cgroup"

# A cluster that is running is not started twice; what a dead one left behind is removed first.
for f in "$KUBE_RUN"/pids/*; do
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && die "a cluster is already up ($(basename "$f") is pid $(cat "$f")): bash cluster/down.sh first"
done
bash "$CLUSTER_DIR/down.sh" >/dev/null || die "cluster/down.sh could not clear what an earlier run left"

mkdir -p "$KUBE_STATE" "$KUBE_RUN/pids" "$KUBE_LOGS"
rm -f "$KUBE_LOGS"/*.log
up_ok=""
on_exit() {
  [ -n "$up_ok" ] && return
  if [ "${SRE_KUBE_KEEP:-}" = 1 ]; then
    echo "cluster/up.sh failed; SRE_KUBE_KEEP=1 leaves it up to look at: bash cluster/down.sh removes it" >&2
    return
  fi
  echo "cluster/up.sh failed: tearing down (component logs in $KUBE_LOGS)" >&2
  bash "$CLUSTER_DIR/down.sh" >&2 || true
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# start NAME COMMAND...: run COMMAND in its own session, log to $KUBE_LOGS/NAME.log, pid in $KUBE_RUN/pids/NAME.
start() {
  local name=$1
  shift
  setsid "$@" >"$KUBE_LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$KUBE_RUN/pids/$name"
}

# ---- the node's network ----------------------------------------------------------------------------------------
say "network: bridge $BRIDGE with the node address $NODE_IP, Service range $SERVICE_CIDR routed onto it"
ip link add "$BRIDGE" type bridge || die "cannot create bridge $BRIDGE"
ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
# Service VIPs from the node go onto the bridge, never to the default route, even before kube-proxy's rules exist.
ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
# A pod that calls a Service whose endpoint is another pod needs the node to forward between two ports of the
# bridge. Forwarding is switched on only with a guard first in mangle/FORWARD (before any filter rule kube-proxy
# writes): a packet is forwarded only from the bridge to the bridge, so nothing reaches eth0 or comes in from it.
cat /proc/sys/net/ipv4/ip_forward >"$KUBE_RUN/ip_forward.saved"
iptables -w -t mangle -N "$FWD_CHAIN"
iptables -w -t mangle -A "$FWD_CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j RETURN
iptables -w -t mangle -A "$FWD_CHAIN" -j DROP
iptables -w -t mangle -I FORWARD 1 -j "$FWD_CHAIN"
echo 1 >/proc/sys/net/ipv4/ip_forward
ip -br addr show "$BRIDGE"

# ---- certificates and kubeconfigs ------------------------------------------------------------------------------
say "PKI: cluster CA, front-proxy CA, service-account key, one client certificate per component"
make_pki
echo "certificates in $PKI; kubeconfigs in $KUBE_STATE"

# ---- the registry ------------------------------------------------------------------------------------------------
say "registry: distribution $("$KUBE_CACHE/current/registry/registry" --version | awk '{print $3}') on $REGISTRY"
render config/registry.yml "$KUBE_STATE/registry.yml"
start registry "$KUBE_CACHE/current/registry/registry" serve "$KUBE_STATE/registry.yml"
wait_for registry 30 curl -fsS -m 2 "http://$REGISTRY/v2/"
PAUSE_IMAGE=$(bash "$CLUSTER_DIR/images.sh" pause | tail -n1) || die "the pause image did not build"
echo "pause image: $PAUSE_IMAGE"

# ---- control plane -------------------------------------------------------------------------------------------------
say "control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler ($("$(kube_bin kube-apiserver)" --version))"
start etcd "$(kube_bin etcd)" --name "$NODE_NAME" --data-dir "$KUBE_STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd 30 curl -fsS -m 2 http://127.0.0.1:2381/health
start kube-apiserver "$(kube_bin kube-apiserver)" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-extra-headers-prefix=X-Remote-Extra- --requestheader-group-headers=X-Remote-Group \
  --requestheader-username-headers=X-Remote-User \
  --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --audit-policy-file="$CLUSTER_DIR/config/audit-policy.yaml" --audit-log-path="$KUBE_LOGS/audit.log" \
  --audit-log-maxsize=100 --audit-log-maxbackup=1 \
  --profiling=false \
  --allow-privileged=true # as kubeadm sets it: Pod Security and the admission policy refuse privileged pods
wait_for kube-apiserver 90 kc get --raw /readyz
start kube-controller-manager "$(kube_bin kube-controller-manager)" \
  --kubeconfig="$KUBE_STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$KUBE_STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$KUBE_STATE/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --client-ca-file="$PKI/ca.crt" --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
  --service-cluster-ip-range="$SERVICE_CIDR" --profiling=false
wait_for kube-controller-manager 60 curl -fsSk -m 2 https://127.0.0.1:10257/healthz
start kube-scheduler "$(kube_bin kube-scheduler)" \
  --kubeconfig="$KUBE_STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig="$KUBE_STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig="$KUBE_STATE/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --profiling=false
wait_for kube-scheduler 60 curl -fsSk -m 2 https://127.0.0.1:10259/healthz

# ---- the node ------------------------------------------------------------------------------------------------------
say "node: containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}'), the kubelet, kube-proxy"
render config/containerd.toml "$KUBE_STATE/containerd/config.toml"
render config/hosts.toml "$KUBE_STATE/containerd/certs.d/$REGISTRY/hosts.toml"
render config/cni.conflist "$KUBE_STATE/cni/net.d/10-sre-mini-kube.conflist"
mkdir -p "$KUBE_RUN/containerd"
start containerd containerd --config "$KUBE_STATE/containerd/config.toml"
wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
# The pods' cgroup, in every hierarchy; a v1 cpuset starts empty and must be given the parent's CPUs and memory nodes.
while read -r d; do
  mkdir -p "$d"
  if [ -f "$d/cpuset.cpus" ]; then
    cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus"
    cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"
  fi
done < <(cgroup_dirs)
render config/kubelet.yaml "$KUBE_STATE/kubelet/config.yaml"
start kubelet "$(kube_bin kubelet)" --config="$KUBE_STATE/kubelet/config.yaml" \
  --kubeconfig="$KUBE_STATE/kubelet.kubeconfig" --root-dir="$KUBE_STATE/kubelet" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --containerd="$CONTAINERD_SOCK" # cAdvisor's own containerd client: without it, container metrics lack pod labels
wait_for kubelet 90 kc get node "$NODE_NAME"
render config/kube-proxy.yaml "$KUBE_STATE/kube-proxy.yaml"
start kube-proxy "$(kube_bin kube-proxy)" --config="$KUBE_STATE/kube-proxy.yaml"
wait_for kube-proxy 60 curl -fsS -m 2 http://127.0.0.1:10256/healthz
kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s >/dev/null || die "node $NODE_NAME is not Ready: $(kc describe node "$NODE_NAME" | tail -n 20)"
echo "node $NODE_NAME Ready"

# ---- add-ons -------------------------------------------------------------------------------------------------------
# The prometheus-operator module's directory: its CRDs and example manifests are the upstream ones.
OPERATOR_SRC=$(module_dir prometheus-operator github.com/prometheus-operator/prometheus-operator)
say "add-ons: prometheus-operator's CRDs"
kc apply --server-side -f "$OPERATOR_SRC/example/prometheus-operator-crd" >/dev/null || die "the operator's CRDs did not apply"
kc wait --for=condition=Established crd --all --timeout=60s >/dev/null || die "the operator's CRDs were not established"

say "add-ons: Traefik as the Ingress controller"
image TRAEFIK_IMAGE program traefik
render addons/traefik.yaml "$KUBE_STATE/addons/traefik.yaml"
kc apply -f "$KUBE_STATE/addons/traefik.yaml" >/dev/null || die "kubectl apply of the Traefik add-on failed"

kc -n kube-system rollout status deployment/traefik --timeout=180s || die "Traefik did not become available"
if [ "${1:-}" != --no-monitoring ]; then
  bash "$CLUSTER_DIR/monitoring.sh" || die "cluster/monitoring.sh failed"
fi

up_ok=1
say "cluster up in $(( $(date +%s) - t_start )) s: eval \"\$(bash cluster/kubeconfig.sh)\" && kubectl get pods -A"
