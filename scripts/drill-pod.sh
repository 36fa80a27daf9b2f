#!/usr/bin/env bash
# The pod drills: the release binary inside a cgroup with the Deployment's CPU quota, memory limit and env
# (read from k8s.yaml), probed at the probes' own period and timeout, under several /work burst shapes and a
# SIGTERM at full load; then the capacity arithmetic against the HPA. Needs root and a cgroup v1 or v2
# hierarchy with the cpu and memory controllers: without them it fails, it does not skip.
#   bash scripts/drill-pod.sh [shapes] [sigterm] [capacity]
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_pip yamllint yamllint   # brings PyYAML, which the manifest reader imports
python3 -c 'import yaml' 2>/dev/null || die "python3 cannot import yaml after installing yamllint"
[ "$(id -u)" -eq 0 ] || die "the pod drills create cgroups and must run as root"
say "pod harness: table tests (quantities, the manifest, cgroup v1 and v2 writes on a fake cgroupfs)"
PYTHONPATH=tools python3 -m unittest srekit.test_pod
BIN=$(release_binary)
SRE_MINI_BIN="$BIN" srekit pod check
PYTHONPATH=tools SRE_MINI_BIN="$BIN" timeout 900 python3 -m srekit.pod_drills "$@"
