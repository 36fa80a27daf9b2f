#!/usr/bin/env bash
# Tears the single-node cluster down and removes everything it made, working from the names in cluster/lib.sh
# alone, so it also cleans up after a run that died half-way. Idempotent: on a clean machine it does nothing.
#   processes   every component by the pid it recorded (its whole session), every container by its cgroup,
#               containerd's shims by their socket
#   mounts      everything mounted under $KUBE_STATE and $KUBE_RUN (rootfs, volumes, network namespaces)
#   cgroups     $CGROUP_ROOT in every hierarchy
#   network     the bridge and its veths, the guard chain, kube-proxy's and the kubelet's iptables chains,
#               conntrack entries of the cluster's ranges, and ip_forward back to its value before up.sh
#   files       $KUBE_STATE and $KUBE_RUN ($KUBE_LOGS and the build cache stay)
# Exits 1 if anything is still there afterwards, naming it.
. "$(dirname "$0")/../scripts/lib.sh"
. "$ROOT/cluster/lib.sh"
set +e
[ "$(id -u)" -eq 0 ] || die "cluster/down.sh must run as root"

# stop NAME...: SIGTERM to each recorded component's session at once, up to 10 s for all, then SIGKILL to the rest.
stop() {
  local name pid i live
  declare -A pids=()
  for name in "$@"; do
    [ -f "$KUBE_RUN/pids/$name" ] && pids[$name]=$(cat "$KUBE_RUN/pids/$name")
  done
  for name in "${!pids[@]}"; do
    kill -TERM -- "-${pids[$name]}" 2>/dev/null || kill -TERM "${pids[$name]}" 2>/dev/null
  done
  for i in $(seq 1 100); do
    live=0
    for name in "${!pids[@]}"; do kill -0 "${pids[$name]}" 2>/dev/null && live=1; done
    [ $live -eq 0 ] && break
    sleep 0.1
  done
  for name in "${!pids[@]}"; do
    if kill -0 "${pids[$name]}" 2>/dev/null; then
      kill -KILL -- "-${pids[$name]}" 2>/dev/null || kill -KILL "${pids[$name]}" 2>/dev/null
      echo "$name (pid ${pids[$name]}) killed after 10 s"
    else
      echo "$name (pid ${pids[$name]}) stopped"
    fi
  done
}

# The kubelet first, so that nothing restarts a container; then the rest of the control plane together.
stop kubelet
stop kube-proxy kube-scheduler kube-controller-manager kube-apiserver registry
# etcd last: the API server's shutdown still writes to it (its lease and endpoint).
stop etcd

# Every process in the pods' cgroups (containers and sandboxes), until none is left.
procs_in_cgroups() { cgroup_dirs | while read -r d; do [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u; }
for _ in $(seq 1 50); do
  p=$(procs_in_cgroups)
  [ -z "$p" ] && break
  echo "$p" | xargs -r kill -KILL 2>/dev/null
  sleep 0.1
done
stop containerd
# Shims outlive containerd by design (they re-parent to init); they are ours when they name our socket.
for pid in $(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK"); do
  kill -KILL "$pid" 2>/dev/null && echo "containerd-shim (pid $pid) killed"
done
rm -rf "$KUBE_RUN/pids"

# Mounts: deepest first; a busy one is detached lazily and reported.
for prefix in "$KUBE_STATE" "$KUBE_RUN"; do
  findmnt -rn -o TARGET | grep -E "^$prefix(/|$)" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || { umount -l "$m" && echo "lazily unmounted busy $m"; }
  done
done

# cgroups, deepest first.
cgroup_dirs | while read -r d; do
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
done

# Network: the veths still on the bridge, then the bridge (its address and the Service route go with it).
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  for v in $(ip -o link show master "$BRIDGE" | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$v" 2>/dev/null; done
  ip link del "$BRIDGE" && echo "bridge $BRIDGE removed"
fi
# kube-proxy removes its own rules; what remains named KUBE-* (the kubelet's canaries) and the guard go by name.
if [ -x "$KUBE_CACHE/current/kubernetes/kube-proxy" ] && iptables-save 2>/dev/null | grep -q 'KUBE-'; then
  "$KUBE_CACHE/current/kubernetes/kube-proxy" --cleanup >/dev/null 2>&1
fi
remove_chains() { # remove_chains IPTABLES: every rule that jumps to our chains, then the chains
  local ipt=$1 table rule chain
  for table in filter nat mangle raw; do
    $ipt -w -t "$table" -S 2>/dev/null | grep -E "^-A .* -j (KUBE-|$FWD_CHAIN)" | while read -r rule; do
      eval "$ipt -w -t $table ${rule/-A/-D}" 2>/dev/null
    done
    for chain in $($ipt -w -t "$table" -S 2>/dev/null | awk -v fwd="$FWD_CHAIN" '$1 == "-N" && ($2 ~ /^KUBE-/ || $2 == fwd) {print $2}'); do
      $ipt -w -t "$table" -F "$chain" 2>/dev/null
      $ipt -w -t "$table" -X "$chain" 2>/dev/null
    done
  done
}
if command -v iptables >/dev/null; then
  remove_chains iptables
  remove_chains ip6tables
fi
if command -v conntrack >/dev/null; then
  for net in "$POD_CIDR" "$SERVICE_CIDR"; do
    conntrack -D -s "$net" >/dev/null 2>&1
    conntrack -D -d "$net" >/dev/null 2>&1
  done
fi
if [ -f "$KUBE_RUN/ip_forward.saved" ]; then
  cat "$KUBE_RUN/ip_forward.saved" >/proc/sys/net/ipv4/ip_forward
  echo "ip_forward restored to $(cat /proc/sys/net/ipv4/ip_forward)"
fi
# libcni caches each attachment's result outside containerd's directories.
rm -f /var/lib/cni/results/sre-mini-kube-* 2>/dev/null
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null

rm -rf "$KUBE_STATE" "$KUBE_RUN"

# ---- what is left ------------------------------------------------------------------------------------------------
left=()
p=$(procs_in_cgroups); [ -n "$p" ] && left+=("processes in the pods' cgroups: $p")
p=$(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK"); [ -n "$p" ] && left+=("containerd shims: $p")
m=$(findmnt -rn -o TARGET | grep -E "^($KUBE_STATE|$KUBE_RUN)(/|$)"); [ -n "$m" ] && left+=("mounts: $m")
c=$(cgroup_dirs | while read -r d; do [ -d "$d" ] && echo "$d"; done); [ -n "$c" ] && left+=("cgroups: $c")
ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
if command -v iptables >/dev/null; then
  r=$( { iptables-save; ip6tables-save; } 2>/dev/null | grep -E "KUBE-|$FWD_CHAIN"); [ -n "$r" ] && left+=("iptables: $(echo "$r" | head -n 3)")
fi
[ -e "$KUBE_STATE" ] && left+=("$KUBE_STATE")
if [ ${#left[@]} -gt 0 ]; then
  printf 'cluster/down.sh: left behind: %s\n' "${left[@]}" >&2
  exit 1
fi
echo "cluster down: no process, mount, cgroup, link or iptables rule of it left"
