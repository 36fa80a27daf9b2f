#!/usr/bin/env bash
# Prints the shell lines that point kubectl at the running cluster, as its administrator:
#   eval "$(bash cluster/kubeconfig.sh)"; kubectl get nodes
# The kubectl it puts first on PATH is the one built with the cluster (same release as the API server).
. "$(dirname "$0")/../scripts/lib.sh"
. "$ROOT/cluster/lib.sh"
[ -r "$KUBE_STATE/admin.kubeconfig" ] || die "no cluster is up ($KUBE_STATE/admin.kubeconfig is missing): sudo bash cluster/up.sh"
printf 'export KUBECONFIG=%q\n' "$KUBE_STATE/admin.kubeconfig"
printf 'export PATH=%q:"$PATH"\n' "$(dirname "$(kube_bin kubectl)")"
