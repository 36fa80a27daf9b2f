#!/usr/bin/env bash
# The rolling-update drill (tools/srekit/rollout.py): 3 replicas of the release binary behind Debian's nginx as the
# Ingress stand-in, rolled as the Deployment in k8s.yaml rolls them, under a steady keep-alive load; then the same
# rollout with SHUTDOWN_DELAY_MS shorter than the endpoint propagation, which must show failed requests.
# Loopback only, about a minute, bounded by --max-seconds; every process it starts is stopped on the way out.
# Env: SRE_MINI_BIN (default: target/release/sre-mini, built here); ROLLOUT_ARGS (extra arguments, e.g. --keep).
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

need_apt nginx nginx
need_apt setpriv util-linux
need_pip yamllint yamllint          # brings PyYAML, which reads k8s.yaml

bin=$(release_binary)
# WORK_DELAY_MS 1000 instead of the manifest's 2000, for the load only (docs/rollout.md, "Load"): a rollout lasts
# ~10 s, and the requests it can carry are bounded by in-flight / delay. At 2000 ms, 5,000 requests need ~1,200
# connections in flight, 78% of the three pods' 512-slot bulkheads, and one rollout in three fell short on a busy
# machine. At 1000 ms, 1,000 connections carried 5,600-7,500 per rollout here, with the bulkheads at most 2/3 full,
# and a request routed just before the endpoint removal still ends long before the listener closes, which is the
# property under test.
say "rollout: unit tests of the Ingress translation, the controller arithmetic and the load's response reader"
PYTHONPATH=tools python3 -m unittest -q srekit.test_rollout srekit.test_http1 || die "srekit.test_rollout or srekit.test_http1 failed"
say "rollout: the drill ($(nginx -v 2>&1))"
# The drill cleans up after itself on every exit it sees. Should it be killed outright, its replicas and nginx master
# die with it (PDEATHSIG), and this trap takes the rest by id: the nginx process group it recorded, the cgroups named
# after its pid, and its files.
state=$(mktemp -d)
chmod 0755 "$state" # nginx runs as nobody when the drill runs as root
drill_pid=""
leftovers() {
  local f pg d
  for f in "$state"/*/nginx.pgid; do
    if [ -f "$f" ]; then pg=$(cat "$f"); kill -KILL -- "-$pg" 2>/dev/null || true; fi
  done
  if [ -n "$drill_pid" ]; then
    for d in /sys/fs/cgroup/*/sremini-rollout-"$drill_pid"-* /sys/fs/cgroup/sremini-rollout-"$drill_pid"-*; do
      [ -d "$d" ] || continue
      xargs -r kill -KILL <"$d/cgroup.procs" 2>/dev/null || true
      rmdir "$d" 2>/dev/null || echo "could not remove cgroup $d" >&2
    done
  fi
  rm -rf "$state"
}
stop_drill() { # a signal for this script is the drill's: it stops and cleans up, then the trap checks
  if [ -n "$drill_pid" ]; then kill -TERM "$drill_pid" 2>/dev/null || true; wait "$drill_pid" || true; fi
  exit 130
}
trap leftovers EXIT
trap stop_drill INT TERM
# shellcheck disable=SC2086  # ROLLOUT_ARGS is a list of words
PYTHONPATH=tools python3 -m srekit.rollout --manifest k8s.yaml --binary "$bin" --work-delay-ms 1000 \
  --connections 1000 --load-processes 3 --tmp-root "$state" --results "$ROOT/target/rollout.json" ${ROLLOUT_ARGS:-} &
drill_pid=$!
rc=0
wait "$drill_pid" || rc=$?
[ "$rc" -eq 0 ] || die "the rollout drill failed (above, exit $rc)"
