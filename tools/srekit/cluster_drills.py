"""Drills on the real single-node cluster (cluster/up.sh), against the kit as scripts/check-cluster.sh applies it.
Every verdict comes from a real component: the API server's admission, the kubelet's container statuses, events and
cgroups, the controllers' rollouts, the EndpointSlices, and Traefik's routing. Bounded in count and time; traffic goes
only to the cluster's own bridge; every object a drill adds is deleted, and the kit is re-applied after a drill that
changes it.

    PYTHONPATH=tools python3 -m srekit.cluster_drills --kit DIR --ca FILE [--results FILE] DRILL...

  admission   server-side dry runs: every rendering is accepted; Pod Security denies a root pod; the admission
              policy denies each broken copy of the Deployment by the validation that owns the control
  cgroups     each pod's effective CFS quota, cpu.shares and memory limit, read from its cgroup, against the manifest
  rollout     3 rollouts under a keep-alive load through Traefik: 0 failed requests, every old pod exits 0 within the
              grace period; then SHUTDOWN_DELAY_MS below Traefik's propagation delay, which must fail
  probes      the pod drills' burst shapes through the Service: no probe failure in the kubelet's events, no restart
  contention  a CPU hog that fills the node's allocatable beside /work at the bulkhead's rate: no probe fails at the
              shipped CPU request; at 10m, the old kit's request, probes must fail
  healing     /panic and SIGKILL restarted by the kubelet; /fail/ready takes the pod out of the EndpointSlice and out of
              Traefik's routing; each timed
With the monitoring stack (cluster/monitoring.sh) and the dev overlay applied:
  monitoring  the operator selects the kit's objects: targets up with the unit tests' labels, every rule loaded, and
              alertmanager.yml equal to the operator's translation of the AlertmanagerConfig
  pdb         `kubectl drain` under load: one eviction, then the PDB blocks it; 0 failed requests
  edge        a crash-looping pod burns the edge SLI (Traefik's counts), not the service SLI
  burn        alerts/drill.py: the fast-burn page delivered, a staging copy's page inhibited, the docs' PromQL run
  scaling     the occupancy HPA scales out under a ramp, holds without flapping, and scales back
  alerts-setup / alerts-delivered
              in a copy of the kit, a bad configuration's rollout crash-loops and is stuck, and an old pod turns
              unready; the slow alerts reach the webhook
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import dataclasses
import datetime
import gzip
import http.client
import json
import os
import pathlib
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

from . import http as ahttp
from .keepalive_load import Load, ProcessLoad
from .kube import Kube

ROOT = pathlib.Path(__file__).resolve().parents[2]
NS = "sre-mini"
SELECTOR = "app=sre-mini"
DRILL_NS = "sre-mini-drill"


class Failures(list):
    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.append(what)
            print(f"  FAIL {what}", flush=True)
        return ok


def log(msg: str) -> None:
    print(msg, flush=True)


def wall(ts: str) -> float:
    """An RFC 3339 timestamp (the API's or sre-mini's) as seconds since the epoch."""
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


# ---- the cluster as the drills see it ----------------------------------------------------------------------------


@dataclasses.dataclass
class Env:
    kube: Kube
    kit: str  # the kustomization scripts/check-cluster.sh applied; re-applied to restore the kit
    ca: str  # the CA that signed the Ingress's TLS certificate
    host: str  # the Ingress rule's host
    edge: str  # Traefik's Service address (port 443)
    svc: str  # sre-mini's Service address (port 80)
    traefik_pod_ip: str
    drill_headers: dict[str, str]

    @classmethod
    def discover(cls, kube: Kube, kit: str, ca: str, drill_token_file: str | None) -> "Env":
        ing = kube.get(f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses")["items"][0]
        (tp,) = [p for p in kube.get("/api/v1/namespaces/kube-system/pods?labelSelector=app.kubernetes.io/name%3Dtraefik")["items"]
                 if p["metadata"].get("deletionTimestamp") is None]
        headers = {}
        if drill_token_file:
            headers["Authorization"] = "Bearer " + pathlib.Path(drill_token_file).read_text().strip()
        return cls(
            kube=kube, kit=kit, ca=ca, host=ing["spec"]["rules"][0]["host"],
            edge=kube.get("/api/v1/namespaces/kube-system/services/traefik")["spec"]["clusterIP"],
            svc=kube.get(f"/api/v1/namespaces/{NS}/services/sre-mini")["spec"]["clusterIP"],
            traefik_pod_ip=tp["status"]["podIP"], drill_headers=headers,
        )

    def pods(self, live_only: bool = True) -> list[dict]:
        items = self.kube.get(f"/api/v1/namespaces/{NS}/pods?labelSelector={SELECTOR.replace('=', '%3D')}")["items"]
        return [p for p in items if not live_only or p["metadata"].get("deletionTimestamp") is None]

    def deployment(self) -> dict:
        return self.kube.get(f"/apis/apps/v1/namespaces/{NS}/deployments/sre-mini")

    def wait_settled(self, timeout: float = 240) -> list[dict]:
        """The rollout complete, and exactly the desired pods Ready, none terminating."""
        self.kube.kubectl("-n", NS, "rollout", "status", "deployment/sre-mini", f"--timeout={int(timeout)}s", timeout=timeout + 10)
        deadline = time.monotonic() + timeout
        while True:
            want = self.deployment()["spec"].get("replicas", 1)
            pods = self.pods(live_only=False)
            if len(pods) == want and all(ready(p) and not p["metadata"].get("deletionTimestamp") for p in pods):
                return pods
            if time.monotonic() > deadline:
                raise RuntimeError(f"pods did not settle within {timeout} s: {[(p['metadata']['name'], ready(p)) for p in pods]}")
            time.sleep(1)

    def reapply(self) -> None:
        """The kit as shipped again (undoes a drill's change), then settled."""
        self.kube.kubectl("apply", "-k", self.kit)
        self.wait_settled()

    def restarts(self) -> dict[str, int]:
        return {p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses", []))
                for p in self.pods()}

    def probe_events(self, since: float) -> list[str]:
        """The kubelet's probe failures (reason Unhealthy) and kills of sre-mini pods since `since` (epoch)."""
        out = []
        for e in self.kube.get(f"/api/v1/namespaces/{NS}/events")["items"]:
            if e["involvedObject"].get("kind") != "Pod" or e.get("reason") not in ("Unhealthy", "Killing", "BackOff"):
                continue
            t = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"]["creationTimestamp"]
            if wall(t) >= since:
                out.append(f"{e['involvedObject']['name']}: {e['reason']} x{e.get('count', 1)}: {e.get('message', '')[:160]}")
        return out


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def request(addr: str, port: int, method: str, path: str, headers: dict | None = None, timeout: float = 10) -> int:
    c = http.client.HTTPConnection(addr, port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


class LogFollower:
    """`kubectl logs -f` of one pod into a file, from now until the container ends; the lines as JSON objects."""

    def __init__(self, env: Env, pod: str, directory: str):
        self.pod = pod
        self.path = os.path.join(directory, f"{pod}.log")
        self._f = open(self.path, "w")
        self._p = subprocess.Popen(["kubectl", "--kubeconfig", env.kube.kubeconfig, "-n", NS, "logs", "-f", pod],
                                   stdout=self._f, stderr=subprocess.DEVNULL)

    def lines(self, wait: float = 0) -> list[dict]:
        if wait:
            try:
                self._p.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        out = []
        for line in open(self.path):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self) -> None:
        if self._p.poll() is None:
            self._p.kill()
        self._p.wait()
        self._f.close()


def proxied(lines: list[dict], traefik_ip: str) -> list[dict]:
    """The request lines of requests that came through Traefik."""
    return [x for x in lines if x.get("msg") == "request" and x.get("remote", "").startswith(traefik_ip + ":")]


# ---- admission ---------------------------------------------------------------------------------------------------

# (what breaks, how, a distinctive part of the message of the validation that must deny it). The Deployment is the
# one the kit rendered; c is its container, p its pod spec.
MUTATIONS = [
    ("image by tag, no digest", lambda c, p: c.update(image=c["image"].split("@")[0]), "pinned by digest"),
    ("image by a short digest", lambda c, p: c.update(image=c["image"].split("@")[0] + "@sha256:abc"), "pinned by digest"),
    ("the all-zero placeholder digest", lambda c, p: c.update(image=c["image"].split("@")[0] + "@sha256:" + "0" * 64),
     "placeholder"),
    ("image from a registry the platform did not allow",
     lambda c, p: c.update(image="ghcr.io/someone-else/sre-mini@sha256:" + "a" * 64), "allowed registries"),
    ("runAsNonRoot false on the container", lambda c, p: c["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
    ("runAsNonRoot nowhere", lambda c, p: (c["securityContext"].pop("runAsNonRoot"), p["securityContext"].pop("runAsNonRoot")),
     "runAsNonRoot"),
    ("runAsUser 0 on the container", lambda c, p: c["securityContext"].update(runAsUser=0), "runAsUser must not be 0"),
    ("runAsUser 0 on the pod", lambda c, p: (c["securityContext"].pop("runAsUser"), p["securityContext"].update(runAsUser=0)),
     "runAsUser must not be 0"),
    ("writable root filesystem", lambda c, p: c["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    ("readOnlyRootFilesystem unset", lambda c, p: c["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
    ("privilege escalation allowed", lambda c, p: c["securityContext"].update(allowPrivilegeEscalation=True),
     "allowPrivilegeEscalation"),
    # The API server's own validation refuses privileged without privilege escalation, before any admission.
    ("privileged container", lambda c, p: c["securityContext"].update(privileged=True, allowPrivilegeEscalation=True),
     "privileged"),
    ("capabilities not dropped", lambda c, p: c["securityContext"].pop("capabilities"), "drop ALL capabilities"),
    ("a capability added", lambda c, p: c["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "drop ALL capabilities"),
    ("seccomp Unconfined", lambda c, p: c["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccomp"),
    ("service-account token mounted", lambda c, p: p.update(automountServiceAccountToken=True), "automountServiceAccountToken"),
    ("token automount left to the default", lambda c, p: p.pop("automountServiceAccountToken"), "automountServiceAccountToken"),
    ("no resource requests", lambda c, p: c["resources"].pop("requests"), "request cpu and memory"),
    ("no memory limit", lambda c, p: c["resources"]["limits"].pop("memory"), "cpu and memory limits"),
    ("host network", lambda c, p: p.update(hostNetwork=True), "network, PID or IPC"),
    ("host PID namespace", lambda c, p: p.update(hostPID=True), "network, PID or IPC"),
    ("hostPath volume", lambda c, p: p["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), "hostPath"),
    ("hostPort", lambda c, p: c["ports"][0].update(hostPort=8080), "hostPort"),
    # An init container may carry no probes: the API server's own validation would refuse the copy before the policy.
    ("init container with a writable root", lambda c, p: p.update(initContainers=[
        {k: v for k, v in copy.deepcopy(c).items() if not k.endswith("Probe")}
        | {"name": "init", "securityContext": c["securityContext"] | {"readOnlyRootFilesystem": False}}]),
     "readOnlyRootFilesystem"),
]

ROOT_POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "psa-root-probe", "namespace": NS},
    "spec": {"containers": [{"name": "c", "image": "x@sha256:" + "a" * 64, "securityContext": {"runAsUser": 0}}]},
}


def drill_admission(env: Env, args, fails: Failures) -> dict:
    out: dict = {"renderings": {}, "mutations": {}}
    for path in args.rendering:
        p = env.kube.kubectl("apply", "--dry-run=server", "-f", path, check=False)
        fails.check(p.returncode == 0, f"server dry run of {path}: {p.stderr.strip()[:500]}")
        out["renderings"][path] = p.returncode == 0
        log(f"  server dry run of {os.path.basename(path)}: {'accepted' if p.returncode == 0 else 'REFUSED'}"
            f" ({len([ln for ln in p.stdout.splitlines() if ln])} objects)")
    p = env.kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(ROOT_POD), check=False)
    fails.check(p.returncode != 0 and 'violates PodSecurity "restricted' in p.stderr,
                f"Pod Security admission did not deny a root pod in {NS}: {p.stderr.strip()[:300]}")
    out["pod_security_denies_root"] = p.returncode != 0
    log(f"  a pod with runAsUser 0 in {NS}: {p.stderr.strip().splitlines()[0][:200] if p.stderr.strip() else 'ADMITTED'}")
    pods = env.pods()
    fails.check(len(pods) >= 1, "no sre-mini pod was admitted")
    deployment = env.deployment()
    for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        deployment["metadata"].pop(k, None)
    deployment.pop("status", None)
    owners: dict[str, int] = {}
    policy = next(d for d in yaml.safe_load_all(open(args.policy)) if d and d["kind"] == "ValidatingAdmissionPolicy")
    # What each validation's denial says: its message, or the literal start of its messageExpression.
    messages = [re.match(r"\s*'([^']*)'", v["messageExpression"]).group(1) if "messageExpression" in v else v["message"]
                for v in policy["spec"]["validations"]]
    for what, mutate, expect in MUTATIONS:
        d = copy.deepcopy(deployment)
        pod = d["spec"]["template"]["spec"]
        mutate(pod["containers"][0], pod)
        p = env.kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(d), check=False)
        denied_by = [m for m in messages if m in p.stderr]
        ok = p.returncode != 0 and len(denied_by) >= 1 and all(expect in m for m in denied_by)
        fails.check(ok, f"mutation '{what}': expected a denial by the validation saying '{expect}', got exit "
                        f"{p.returncode}: {p.stderr.strip()[:400]}")
        for m in denied_by:
            owners[m] = owners.get(m, 0) + 1
        out["mutations"][what] = "denied" if ok else "NOT DENIED AS EXPECTED"
        log(f"  {what}: {'denied: ' + expect if ok else 'NOT DENIED AS EXPECTED'}")
    for m in messages:
        fails.check(owners.get(m, 0) >= 1, f"the validation '{m[:80]}' denied no mutation: it is dead or shadowed")
    # The binding's Audit action: the API server's audit log carries the policy's verdict for a denied request.
    audit = pathlib.Path(args.audit_log)
    hits = sum(1 for line in audit.open() if "validation.policy.admission.k8s.io/validation_failure" in line) if audit.exists() else 0
    fails.check(hits >= 1, f"no validation_failure annotation in the API server's audit log {audit}")
    out["audit_log_denials"] = hits
    log(f"  audit log: {hits} records with validation.policy.admission.k8s.io/validation_failure")
    return out


# ---- cgroups -----------------------------------------------------------------------------------------------------


def quantity_cpu(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for u, f in units.items():
        if q.endswith(u):
            return int(float(q[: -len(u)]) * f)
    return int(q)


def container_cgroup(pod: dict, controller: str) -> pathlib.Path:
    """The container's cgroup directory in a v1 hierarchy, as the kubelet (cgroupfs driver) and runc lay it out."""
    qos = pod["status"]["qosClass"].lower()
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    root = pathlib.Path("/sys/fs/cgroup") / controller / os.environ.get("CGROUP_ROOT", "sre-mini-kube") / "kubepods"
    pod_dir = f"pod{pod['metadata']['uid']}"
    base = root / pod_dir if qos == "guaranteed" else root / qos / pod_dir
    return base / cid


def read_int(path: pathlib.Path) -> int:
    return int(path.read_text().split()[0])


def drill_cgroups(env: Env, args, fails: Failures) -> dict:
    dep = env.deployment()
    res = dep["spec"]["template"]["spec"]["containers"][0]["resources"]
    manifest = next(d for d in yaml.safe_load_all(open(ROOT / "deploy" / "base" / "k8s.yaml")) if d and d["kind"] == "Deployment")
    fails.check(manifest["spec"]["template"]["spec"]["containers"][0]["resources"] == res,
                f"the applied Deployment's resources {res} differ from k8s.yaml's")
    want = {
        "cpu.cfs_quota_us": int(quantity_cpu(res["limits"]["cpu"]) * 100000),
        "cpu.cfs_period_us": 100000,
        "cpu.shares": max(2, int(quantity_cpu(res["requests"]["cpu"]) * 1024)),
        "memory.limit_in_bytes": quantity_bytes(res["limits"]["memory"]),
    }
    out = {"expected": want, "pods": {}}
    for pod in env.pods():
        got = {}
        for f in want:
            got[f] = read_int(container_cgroup(pod, f.split(".")[0]) / f)
        out["pods"][pod["metadata"]["name"]] = got
        fails.check(got == want, f"{pod['metadata']['name']}: cgroup {got} != {want}")
        log(f"  {pod['metadata']['name']} ({pod['status']['qosClass']}): " + ", ".join(f"{k} {v}" for k, v in got.items()))
    log(f"  expected from requests {res['requests']} and limits {res['limits']}: " + ", ".join(f"{k} {v}" for k, v in want.items()))
    return out


# ---- rollout -----------------------------------------------------------------------------------------------------

ROLLOUTS = 3
MIN_REQUESTS = 5000


def _load(env: Env, tag: str, connections: int, max_seconds: float) -> ProcessLoad:
    return ProcessLoad(port=443, path="/work", host=env.host, connections=connections, timeout=30, stagger=3,
                       tag=tag, processes=3, max_seconds=max_seconds, addr=env.edge, ca=env.ca)


def traefik_drill_ids(env: Env) -> set[str]:
    """The X-Drill-Id of every request in Traefik's access log (JSON lines on its stdout)."""
    out = env.kube.kubectl("-n", "kube-system", "logs", "deployment/traefik", "--tail=-1", timeout=120).stdout
    ids = set()
    for line in out.splitlines():
        if line.startswith("{"):
            rid = json.loads(line).get("request_X-Drill-Id")
            if rid:
                ids.add(rid)
    return ids


def one_rollout(env: Env, load: ProcessLoad, label: str, logs_dir: str) -> dict:
    """`kubectl rollout restart` under the running load; what happened to every old pod, from the kubelet's own
    container statuses and the pod's own log."""
    old = {p["metadata"]["name"]: p for p in env.pods()}
    followers = {name: LogFollower(env, name, logs_dir) for name in old}
    watch = env.kube.watch(f"/api/v1/namespaces/{NS}/pods?labelSelector={SELECTOR.replace('=', '%3D')}")
    time.sleep(1)  # followers attached before the first SIGTERM
    t0 = time.monotonic()
    env.kube.kubectl("-n", NS, "rollout", "restart", "deployment/sre-mini")
    env.wait_settled()
    deadline = time.monotonic() + 60
    while any(n in {p["metadata"]["name"] for p in env.pods(live_only=False)} for n in old):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: old pods still present 60 s after the rollout completed")
        time.sleep(0.5)
    t1 = time.monotonic()
    events = watch.stop()
    pods = {}
    for name, f in followers.items():
        lines = f.lines(wait=5)
        f.stop()
        last_status = None
        for _, _, obj in events:
            if obj["metadata"]["name"] == name:
                for cs in obj["status"].get("containerStatuses", []):
                    if "terminated" in cs.get("state", {}):
                        last_status = cs["state"]["terminated"]
        sig = next((x for x in lines if x.get("msg") == "signal"), None)
        stopped = next((x for x in lines if x.get("msg") == "stopped"), None)
        via_edge = proxied(lines, env.traefik_pod_ip)
        propagation = None
        if sig and via_edge:
            # The last request Traefik sent: its arrival is the log line's time minus its duration.
            arrivals = [wall(x["ts"]) - x.get("duration_ms", 0) / 1000 for x in via_edge]
            propagation = max(arrivals) - wall(sig["ts"])
        pods[name] = {
            "exit_code": None if last_status is None else last_status.get("exitCode"),
            "reason": None if last_status is None else last_status.get("reason"),
            "sigterm_to_exit_s": None if not (sig and stopped) else round(wall(stopped["ts"]) - wall(sig["ts"]), 2),
            "abandoned": None if stopped is None else stopped.get("abandoned_requests"),
            "propagation_s": None if propagation is None else round(propagation, 3),
            "proxied_requests": len(via_edge),
        }
    return {"label": label, "t0": t0, "t1": t1, "seconds": round(t1 - t0, 1), "pods": pods}


def count_requests(r: dict, load: ProcessLoad) -> None:
    """The load's record of the rollout's window (the load's processes report when it stops)."""
    w = load.window(r.pop("t0"), r.pop("t1"))
    r.update(requests=w.requests, failed=w.failed, failures=dict(w.failures), reopened=w.reopened,
             p50_s=round(w.latency_p50, 3), p99_s=round(w.latency_p99, 3))


def _report_rollout(r: dict) -> None:
    log(f"  {r['label']}: {r['requests']} requests in {r['seconds']} s, {r['failed']} failed {r['failures'] or ''}"
        f" (reopened {r['reopened']}), latency p50 {r['p50_s']} s p99 {r['p99_s']} s")
    for name, p in r["pods"].items():
        log(f"    {name}: exit {p['exit_code']} ({p['reason']}), SIGTERM to exit {p['sigterm_to_exit_s']} s, abandoned "
            f"{p['abandoned']}, last request from Traefik {p['propagation_s']} s after SIGTERM ({p['proxied_requests']} in all)")


def drill_rollout(env: Env, args, fails: Failures) -> dict:
    spec = env.deployment()["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    delay_ms = next(int(e["value"]) for e in spec["containers"][0]["env"] if e["name"] == "SHUTDOWN_DELAY_MS")
    logs_dir = tempfile.mkdtemp(prefix="srekit-rollout-")
    rollouts, negative = [], None
    load = _load(env, "r", args.connections, 900)
    load.start()
    try:
        time.sleep(8)  # every connection open and cycling
        for i in range(ROLLOUTS):
            rollouts.append(one_rollout(env, load, f"rollout {i + 1}", logs_dir))
        # The negative control: the same rollout with the unready-but-serving window shorter than the propagation.
        env.kube.kubectl("-n", NS, "set", "env", "deployment/sre-mini", f"SHUTDOWN_DELAY_MS={args.short_delay_ms}")
        env.wait_settled()
        negative = one_rollout(env, load, f"rollout with SHUTDOWN_DELAY_MS={args.short_delay_ms}", logs_dir)
    finally:
        load.stop(60)
        env.reapply()
    for r in rollouts + [negative]:
        count_requests(r, load)
        _report_rollout(r)
    # The load sends a request again on a new connection only when the old one closed before any byte of the answer
    # (keepalive_load.py): the proxy must never have seen the first attempt. Traefik's access log says whether it did.
    seen = traefik_drill_ids(env)
    resent = [rid for _, rid in load.reopens]
    wrongly = [rid for rid in resent if rid in seen]
    log(f"  reopened keep-alive connections: {len(resent)}; of their first attempts, {len(wrongly)} in Traefik's "
        f"access log ({len(seen)} drill requests logged)")
    fails.check(not wrongly, f"requests sent again although Traefik had received them: {wrongly[:5]}")
    for r in rollouts:
        fails.check(r["requests"] >= MIN_REQUESTS, f"{r['label']}: {r['requests']} requests < {MIN_REQUESTS}")
        fails.check(r["failed"] == 0, f"{r['label']}: {r['failed']} failed requests {r['failures']}")
        for name, p in r["pods"].items():
            fails.check(p["exit_code"] == 0, f"{r['label']}: {name} exited {p['exit_code']} ({p['reason']})")
            fails.check(p["sigterm_to_exit_s"] is not None and p["sigterm_to_exit_s"] <= grace,
                        f"{r['label']}: {name} took {p['sigterm_to_exit_s']} s from SIGTERM to exit (grace {grace} s)")
            fails.check(p["abandoned"] == 0, f"{r['label']}: {name} abandoned {p['abandoned']} requests")
    prop = [p["propagation_s"] for r in rollouts for p in r["pods"].values() if p["propagation_s"] is not None]
    propagation = {"median": median(prop), "max": max(prop, default=None), "all": prop}
    log(f"  Traefik's propagation delay (SIGTERM to the last request it sent the old pod): median "
        f"{propagation['median']} s, max {propagation['max']} s over {len(prop)} pods; SHUTDOWN_DELAY_MS {delay_ms}")
    fails.check(bool(prop), "no propagation delay measured (no request from Traefik after any SIGTERM)")
    fails.check(max(prop, default=0) * 1000 < delay_ms,
                f"Traefik sent requests {max(prop, default=0)} s after SIGTERM, beyond SHUTDOWN_DELAY_MS {delay_ms}")
    fails.check(negative["failed"] > 0,
                f"the negative control did not fail: SHUTDOWN_DELAY_MS={args.short_delay_ms} lost none of "
                f"{negative['requests']} requests, so the drill cannot tell a too-short delay apart")
    return {"rollouts": rollouts, "propagation_s": propagation, "negative": negative}


# ---- probes under burst load ---------------------------------------------------------------------------------------

# The pod drills' shapes (one pod, bulkhead 512, one usable CPU), multiplied by the replicas: the Service spreads
# them, so each pod sees about the shape it was sized for.
SHAPES = (
    ("short CPU bursts", "/work?cpu_ms=5", 700, 3),
    ("long CPU requests", "/work?cpu_ms=200", 100, 1),
    ("plain /work past the bulkhead", "/work", 1000, 2),
)


def classify(results: list) -> dict:
    return {
        "ok": sum(1 for r in results if r.status == 200),
        "shed": sum(1 for r in results if r.status == 503),
        "shed_without_retry_after": sum(1 for r in results if r.status == 503 and not r.retry_after_valid),
        "other": sorted({r.status for r in results if r.status not in (0, 200, 503)}),
        "errors": sum(1 for r in results if r.status == 0),
        "first_errors": [r.error for r in results if r.status == 0][:3],
    }


def drill_probes(env: Env, args, fails: Failures) -> dict:
    replicas = len(env.wait_settled())
    before = env.restarts()
    since = time.time()
    out = {}
    for name, path, concurrency, waves in SHAPES:
        n = concurrency * replicas
        for w in range(waves):
            c = classify(asyncio.run(ahttp.burst(80, path, n, timeout_s=60, addr=env.svc)))
            out[f"{name}, wave {w + 1}"] = c
            log(f"  {name}: {n} x {path} through the Service, wave {w + 1}: {c['ok']} x 200, {c['shed']} x 503,"
                f" {c['errors']} errors {c['first_errors'] or ''} {c['other'] or ''}")
            fails.check(c["errors"] == 0 and not c["other"], f"{name} wave {w + 1}: {c}")
            fails.check(c["shed_without_retry_after"] == 0, f"{name} wave {w + 1}: 503 without a valid Retry-After")
    time.sleep(12)  # two readiness periods: a probe that failed during the last wave has been reported
    events = env.probe_events(since)
    after = env.restarts()
    out["probe_events"] = events
    out["restarts"] = {k: after.get(k, 0) - v for k, v in before.items()}
    fails.check(not events, f"the kubelet reported probe failures: {events[:5]}")
    fails.check(after == before, f"restarts during the bursts: {before} -> {after}")
    log(f"  kubelet: {len(events)} probe failures or kills; restarts {before} -> {after}")
    return out


# ---- node contention -----------------------------------------------------------------------------------------------


def _node_free_cpu(env: Env) -> float:
    node = env.kube.get("/api/v1/nodes")["items"][0]
    alloc = quantity_cpu(node["status"]["allocatable"]["cpu"])
    used = 0.0
    for p in env.kube.get("/api/v1/pods")["items"]:
        if p["status"].get("phase") in ("Succeeded", "Failed"):
            continue
        for c in p["spec"]["containers"]:
            used += quantity_cpu(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
    return alloc - used


def _hog(env: Env, cpu_m: int, threads: int) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cpu-hog", "namespace": DRILL_NS},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "hog", "image": open(env_image("busybox")).read().strip(),
                "command": ["/busybox", "sh", "-c",
                            f"for i in $(/busybox seq {threads}); do (while :; do :; done) & done; wait"],
                "resources": {"requests": {"cpu": f"{cpu_m}m", "memory": "16Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def env_image(name: str) -> str:
    return os.path.join(os.environ.get("KUBE_STATE", "/var/lib/sre-mini-kube"), "images", name)


def contention_run(env: Env, seconds: float, fails: Failures | None, label: str) -> dict:
    """/work at the bulkhead's full rate on every pod while the hog runs; the kubelet's probe verdicts."""
    pods = env.wait_settled()
    before = env.restarts()
    since = time.time()
    req = pods[0]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    slots = next(int(e["value"]) for e in pods[0]["spec"]["containers"][0]["env"] if e["name"] == "WORK_MAX_CONCURRENT")
    deadline = time.monotonic() + seconds
    waves = []
    while time.monotonic() < deadline:
        waves.append(classify(asyncio.run(ahttp.burst(80, "/work", slots * len(pods), timeout_s=60, addr=env.svc))))
    time.sleep(12)
    events = env.probe_events(since)
    after = env.restarts()
    answered = sum(w["ok"] for w in waves)
    r = {"cpu_request": req, "waves": len(waves), "ok": answered, "shed": sum(w["shed"] for w in waves),
         "errors": sum(w["errors"] for w in waves), "probe_events": events,
         "restarts": sum(after.get(k, 0) - v for k, v in before.items())}
    log(f"  {label}: request {req}, {len(waves)} waves of {slots * len(pods)} /work through the Service in {seconds:.0f} s:"
        f" {r['ok']} x 200, {r['shed']} x 503, {r['errors']} errors; kubelet: {len(events)} probe failures or kills,"
        f" {r['restarts']} restarts")
    for e in events[:6]:
        log(f"    {e}")
    if fails is not None:
        fails.check(not events, f"{label}: the kubelet reported probe failures: {events[:5]}")
        fails.check(r["restarts"] == 0, f"{label}: {r['restarts']} restarts")
    return r


def drill_contention(env: Env, args, fails: Failures) -> dict:
    out = {}
    env.kube.kubectl("create", "namespace", DRILL_NS)
    try:
        env.wait_settled()
        free = _node_free_cpu(env)
        hog_m = int(free * 1000)
        fails.check(hog_m > 0, f"no allocatable CPU left for the hog ({free})")
        threads = os.cpu_count() * 2
        env.kube.kubectl("apply", "-f", "-", input=json.dumps(_hog(env, hog_m, threads)))
        env.kube.kubectl("-n", DRILL_NS, "wait", "--for=condition=Ready", "pod/cpu-hog", "--timeout=60s")
        log(f"  hog: {threads} spinning threads, request {hog_m}m: the node's allocatable is now fully requested")
        time.sleep(5)
        out["hog_request_m"] = hog_m
        out["shipped"] = contention_run(env, args.contention_seconds, fails, "shipped request")
        # The negative control: the request the kit shipped before, 10m (10 cpu.shares), must show what this drill
        # guards against, or the drill could not tell a starved pod apart.
        env.kube.kubectl("-n", NS, "set", "resources", "deployment/sre-mini", "--requests=cpu=10m")
        low = out["request_10m"] = contention_run(env, args.contention_seconds, None, "10m request (the old kit)")
        fails.check(bool(low["probe_events"]) or low["restarts"] > 0,
                    "the negative control did not fail: at a 10m request no probe failed under contention, so the "
                    "drill cannot show what the request protects")
    finally:
        env.kube.kubectl("delete", "namespace", DRILL_NS, "--wait=true", "--timeout=120s", check=False)
        env.reapply()
    return out


# ---- self-healing --------------------------------------------------------------------------------------------------


def _wait_restarted(watch, name: str, count0: int, timeout: float) -> tuple[float | None, dict | None]:
    """The arrival time of the first event that shows `name` Ready again after a restart, and the last terminated
    state the kubelet reported for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t, _, obj in watch.snapshot():
            if obj["metadata"]["name"] != name:
                continue
            cs = obj["status"].get("containerStatuses", [{}])[0]
            if cs.get("restartCount", 0) > count0 and ready(obj):
                return t, cs.get("lastState", {}).get("terminated")
        time.sleep(0.2)
    return None, None


def drill_healing(env: Env, args, fails: Failures) -> dict:
    out = {}
    pods = env.wait_settled()
    hdrs = env.drill_headers
    watch = env.kube.watch(f"/api/v1/namespaces/{NS}/pods?labelSelector={SELECTOR.replace('=', '%3D')}")
    try:
        # /panic: the process exits 101; the kubelet restarts the container in place.
        p = pods[0]
        name, ip = p["metadata"]["name"], p["status"]["podIP"]
        count0 = p["status"]["containerStatuses"][0]["restartCount"]
        t0 = time.monotonic()
        try:
            status = request(ip, 8080, "POST", "/panic", hdrs, timeout=5)
        except (OSError, http.client.HTTPException):
            status = "connection closed"
        t, term = _wait_restarted(watch, name, count0, 60)
        out["panic"] = {"status": status, "ready_again_s": None if t is None else round(t - t0, 2),
                        "exit_code": None if term is None else term.get("exitCode")}
        log(f"  /panic on {name}: answered {status}; exit {out['panic']['exit_code']}; Ready again after "
            f"{out['panic']['ready_again_s']} s")
        fails.check(t is not None and term and term.get("exitCode") == 101, f"/panic: {out['panic']}")
        # SIGKILL to the container's process, as the OOM killer or a node agent would send it.
        p = pods[1]
        name = p["metadata"]["name"]
        count0 = p["status"]["containerStatuses"][0]["restartCount"]
        procs = container_cgroup(p, "cpu") / "cgroup.procs"
        pids = [int(x) for x in procs.read_text().split()]
        fails.check(len(pids) == 1, f"SIGKILL: expected the one sre-mini process in {procs}, found {pids}")
        t0 = time.monotonic()
        os.kill(pids[0], signal.SIGKILL)
        t, term = _wait_restarted(watch, name, count0, 60)
        out["sigkill"] = {"ready_again_s": None if t is None else round(t - t0, 2),
                          "exit_code": None if term is None else term.get("exitCode")}
        log(f"  SIGKILL to {name} (pid {pids[0]}): exit {out['sigkill']['exit_code']}; Ready again after "
            f"{out['sigkill']['ready_again_s']} s")
        fails.check(t is not None and term and term.get("exitCode") == 137, f"SIGKILL: {out['sigkill']}")
    finally:
        watch.stop()
    out["readiness"] = _readiness(env, fails)
    return out


def _readiness(env: Env, fails: Failures) -> dict:
    """/fail/ready on one pod under a light load through Traefik: when the EndpointSlice marks it not ready, and when
    Traefik sends it its last request."""
    pods = env.wait_settled()
    p = pods[2]
    name, ip = p["metadata"]["name"], p["status"]["podIP"]
    slices = env.kube.watch(f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dsre-mini")
    follower = LogFollower(env, name, tempfile.mkdtemp(prefix="srekit-ready-"))
    load = _load(env, "ready", 60, 300)
    load.start()
    try:
        time.sleep(5)
        t_fail = time.time()
        m0 = time.monotonic()
        status = request(ip, 8080, "POST", "/fail/ready", env.drill_headers)
        fails.check(status == 200, f"/fail/ready answered {status}")
        t_slice = None
        deadline = time.monotonic() + 60
        while t_slice is None and time.monotonic() < deadline:
            for t, _, obj in slices.snapshot():
                if t < m0:
                    continue
                for ep in obj.get("endpoints") or []:
                    if ip in ep["addresses"] and ep.get("conditions", {}).get("ready") is False:
                        t_slice = t
                        break
                if t_slice:
                    break
            time.sleep(0.2)
        time.sleep(10)  # Traefik's side: long enough for it to have acted on the slice
        lines = follower.lines()
        after_fail = [x for x in proxied(lines, env.traefik_pod_ip) if wall(x["ts"]) - x.get("duration_ms", 0) / 1000 >= t_fail]
        last = max((wall(x["ts"]) - x.get("duration_ms", 0) / 1000 for x in after_fail), default=None)
        request(ip, 8080, "POST", "/recover/ready", env.drill_headers)
        m1 = time.monotonic()
    finally:
        load.stop(60)
        slices.stop()
        follower.stop()
    window = load.window(m0, m1)
    out = {
        "endpointslice_not_ready_s": None if t_slice is None else round(t_slice - m0, 2),
        "last_proxied_request_s": None if last is None else round(last - t_fail, 2),
        "proxied_after_fail": len(after_fail),
        "load_requests": window.requests,
        "load_failed": window.failed,
    }
    log(f"  /fail/ready on {name}: EndpointSlice not ready after {out['endpointslice_not_ready_s']} s; Traefik's last "
        f"request to it {out['last_proxied_request_s']} s after the drill ({len(after_fail)} requests); load "
        f"{window.requests} requests, {window.failed} failed")
    fails.check(t_slice is not None, "the EndpointSlice never marked the unready pod not ready")
    fails.check(last is None or (t_slice is not None and last - t_fail <= t_slice - m0 + 5),
                f"Traefik kept routing to the unready pod: {out}")
    fails.check(window.failed == 0, f"requests failed while a pod turned unready: {window.failures}")
    env.wait_settled()
    return out


# ---- monitoring: the operator, Prometheus, Alertmanager, kube-state-metrics, prometheus-adapter -------------------

# The cluster's addresses, from cluster/lib.sh through scripts/check-cluster.sh.
PROM = f"http://{os.environ.get('PROMETHEUS_IP', '10.96.0.90')}:9090"
ALERTMANAGER = f"http://{os.environ.get('ALERTMANAGER_IP', '10.96.0.93')}:9093"
POD_NET = os.environ.get("POD_CIDR", "10.244.0.0/24")
SERVICE_NET = os.environ.get("SERVICE_CIDR", "10.96.0.0/24")
STAGING_NS = "sre-mini-staging"
TARGET_LABELS = ROOT / "alerts" / "tests" / "target-labels.json"


def prom_get(path: str, **params) -> dict:
    url = f"{PROM}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)["data"]


def prom_value(expr: str) -> float | None:
    res = prom_get("/api/v1/query", query=expr)["result"]
    return float(res[0]["value"][1]) if res else None


def wait(what: str, timeout: float, fn, step: float = 2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def drill_monitoring(env: Env, args, fails: Failures) -> dict:
    """The operator selects the kit's own objects as shipped: its targets are up with the label set the unit tests'
    series carry, and every rule of alerts/alerts.yaml is loaded and healthy."""
    pods = env.wait_settled()
    pool = f"serviceMonitor/{NS}/sre-mini/0"

    def targets():
        ts = [t for t in prom_get("/api/v1/targets", state="active")["activeTargets"] if t["scrapePool"] == pool]
        return ts if len(ts) == len(pods) and all(t["health"] == "up" for t in ts) else None
    ts = wait(f"{len(pods)} targets of {pool} up", 120, targets)
    want = json.loads(TARGET_LABELS.read_text())
    out = {"targets": len(ts), "labels": sorted(ts[0]["labels"])}
    for t in ts:
        have = t["labels"]
        same = set(have) == set(want) and all(have[k] == want[k] for k in want if k not in ("pod", "instance"))
        fails.check(same, f"target {have} does not carry the unit tests' label set {want} ({TARGET_LABELS})")
    log(f"  {len(ts)} targets of {pool} up, labels {out['labels']}: the unit tests' set ({TARGET_LABELS.name})")
    shipped = yaml.safe_load(open(ROOT / "alerts" / "alerts.yaml"))["spec"]["groups"]

    def loaded():
        got = {g["name"]: g for g in prom_get("/api/v1/rules")["groups"] if g["file"].find(f"/{NS}-") >= 0}
        return got if all(g["name"] in got for g in shipped) else None
    got = wait("the PrometheusRule's groups in Prometheus", 120, loaded)
    n = bad = 0
    for g in shipped:
        rules = got[g["name"]]["rules"]
        fails.check(len(rules) == len(g["rules"]), f"group {g['name']}: {len(rules)} rules loaded of {len(g['rules'])}")
        for r in rules:
            n += 1
            if r.get("health") not in ("ok", "unknown") or r.get("lastError"):
                bad += 1
                fails.check(False, f"rule {r['name']} in {g['name']}: health {r.get('health')} {r.get('lastError')}")
    out.update(rules=n, unhealthy=bad)
    log(f"  {n} rules of {len(shipped)} groups loaded from the kit's PrometheusRule, {bad} unhealthy")
    # The AlertmanagerConfig, once its receivers' Secret exists (the user creates it): the operator merges it into
    # Alertmanager's configuration, with the matcher on its own namespace.
    token = pathlib.Path(args.drill_token_file).read_text().strip() if args.drill_token_file else None
    _secrets(env, NS, args.webhook, token)

    def generated():
        secret = env.kube.get("/api/v1/namespaces/monitoring/secrets/alertmanager-main-generated")
        cfg = yaml.safe_load(gzip.decompress(base64.b64decode(secret["data"]["alertmanager.yaml.gz"])))
        mine = [r for r in cfg["route"].get("routes", []) if f'namespace="{NS}"' in r.get("matchers", [])]
        return cfg if mine else None
    try:
        cfg = wait("the kit's AlertmanagerConfig in the operator's generated configuration", 180, generated, step=5)
    except RuntimeError as e:
        fails.check(False, str(e))
        return out
    # The operator's translation of this namespace's part, with the receivers' URLs as the repository ships them:
    # alerts/alertmanager/alertmanager.yml must be exactly that (the offline checks test its routes with amtool).
    ours = f'namespace="{NS}"'
    placeholder = "https://alert-receivers.invalid/sre-mini/{}"
    receivers = [r for r in cfg["receivers"] if r["name"] == "null" or r["name"].startswith(f"{NS}/")]
    for r in receivers:
        for w in r.get("webhook_configs", []):
            w["url"] = placeholder.format(r["name"].rsplit("/", 1)[1])
    want = {"route": {**{k: v for k, v in cfg["route"].items() if k != "routes"},
                      "routes": [r for r in cfg["route"]["routes"] if ours in r.get("matchers", [])]},
            "inhibit_rules": [r for r in cfg.get("inhibit_rules", []) if ours in r.get("source_matchers", [])],
            "receivers": receivers, "templates": cfg.get("templates", [])}
    shipped_am = ROOT / "alerts" / "alertmanager" / "alertmanager.yml"
    same = yaml.safe_load(shipped_am.read_text()) == want
    if not same:
        redo = pathlib.Path(args.results or tempfile.mktemp()).with_name("alertmanager.yml")
        redo.write_text(shipped_am.read_text().split("\nroute:")[0] + "\n" + yaml.safe_dump(want, sort_keys=False))
        fails.check(False, f"{shipped_am} is not the operator's translation of the AlertmanagerConfig: the operator's "
                           f"is {redo} (copy it over if the AlertmanagerConfig changed on purpose)")
    out.update(alertmanager_yml_is_operators=same)
    log(f"  the operator merged the AlertmanagerConfig ({len(want['route']['routes'][0]['routes'])} routes, "
        f"{len(want['inhibit_rules'])} inhibit rules matching {ours}); alertmanager.yml is its translation: {same}")
    return out


ALERTS_NS = "sre-mini-alerts"
SLOW_ALERTS = ("SreMiniPodCrashLooping", "SreMiniRolloutStuck", "SreMiniPDBNotEnoughHealthyPods")


def _copy(env: Env, ns: str, hook: str, token: str | None) -> list[dict]:
    """Another copy of the kit (the applied kustomization, moved to NS, without the shared Ingress), with the Secrets
    a user creates, its pods Ready."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.30"}}}
    env.kube.kubectl("apply", "-f", "-", input=json.dumps(body))
    _secrets(env, ns, hook, token)
    d = tempfile.mkdtemp(prefix=f"srekit-{ns}-")
    pathlib.Path(d, "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": ns,
        "resources": [os.path.relpath(env.kit, d)],
        "patches": [{"patch": yaml.safe_dump({"$patch": "delete", "apiVersion": "networking.k8s.io/v1",
                                              "kind": "Ingress", "metadata": {"name": "sre-mini", "namespace": NS}})}],
    }))
    env.kube.kubectl("apply", "-k", d)
    env.kube.kubectl("-n", ns, "rollout", "status", "deployment/sre-mini", "--timeout=180s", timeout=200)
    return wait(f"3 pods Ready in {ns}", 180, lambda: (lambda ps: ps if len(ps) >= 3 and all(map(ready, ps)) else None)(
        [p for p in env.kube.get(f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dsre-mini")["items"]
         if not p["metadata"].get("deletionTimestamp")]))


def _secrets(env: Env, ns: str, hook: str, token: str | None) -> None:
    """The Secrets a user creates: the Alertmanager receivers' URLs (the drill's webhook) and the drill token."""
    receivers = {k: f"{hook}/{k}" for k in ("page", "ticket", "info")}
    for name, data in (("sre-mini-alert-receivers", receivers), ("sre-mini-drill-token", {"token": token} if token else None)):
        if data is None:
            continue
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
                  "stringData": data}
        env.kube.kubectl("apply", "-f", "-", input=json.dumps(secret))


def drill_burn(env: Env, args, fails: Failures) -> dict:
    """alerts/drill.py on the real stack: the fast-burn page from the real Prometheus through the real Alertmanager to
    the webhook; staging's page fired but inhibited by staging's real NoReadyPods; every PromQL of the docs runs."""
    token = pathlib.Path(args.drill_token_file).read_text().strip() if args.drill_token_file else None
    prod = env.wait_settled()
    staging = []
    try:
        staging = _copy(env, STAGING_NS, args.webhook, token)
        for p in staging:  # the staging copy has no ready pod: kube-state-metrics reports 0 available
            fails.check(request(p["status"]["podIP"], 8080, "POST", "/fail/ready", env.drill_headers) == 200,
                        f"staging /fail/ready on {p['metadata']['name']}")
        cmd = [sys.executable, str(ROOT / "alerts" / "drill.py"), "--mode", "cluster (scrape and rules every 15 s)",
               "--target", f"http://{prod[0]['status']['podIP']}:8080", "--prom", PROM,
               "--staging-target", f"http://{staging[0]['status']['podIP']}:8080",
               "--alertmanager", ALERTMANAGER, "--webhook", args.webhook, "--group-wait", "10",
               "--eval-interval", "15", "--ratio", "0.5", "--threads", "16", "--fire-timeout", "420",
               "--fall-timeout", "300", "--step", "10", "--setup-timeout", "240", "--check-docs", str(ROOT),
               "--target-labels", str(TARGET_LABELS), "--allow-net", POD_NET, "--allow-net", SERVICE_NET]
        t0 = time.monotonic()
        p = subprocess.run(cmd, text=True, capture_output=True, timeout=1200,
                           env=os.environ | ({"DRILL_TOKEN": token} if token else {}))
        for line in (p.stdout + p.stderr).splitlines():
            log(f"    {line}")
        fails.check(p.returncode == 0, f"the burn drill failed (exit {p.returncode}, above)")
        return {"exit": p.returncode, "seconds": round(time.monotonic() - t0, 1)}
    finally:
        for p in prod:
            request(p["status"]["podIP"], 8080, "POST", "/recover/work", env.drill_headers)
        env.kube.kubectl("delete", "namespace", STAGING_NS, "--wait=true", "--timeout=180s", check=False, timeout=200)


def drill_edge(env: Env, args, fails: Failures) -> dict:
    """One pod of three crash-looping (/panic each time it is up) under load through Traefik: the edge SLI, from
    Traefik's own counts, burns budget; the service SLI, from the pods' own counts, does not."""
    pods = env.wait_settled()
    victim = pods[0]["metadata"]["name"]
    load = _load(env, "edge", 200, 600)
    load.start()
    panics = 0
    edge_q = f'namespace:sremini_edge_errors:ratio_rate5m{{namespace="{NS}"}}'
    service_q = f'namespace_job:sremini_work_errors:ratio_rate5m{{namespace="{NS}",job="sre-mini"}}'
    try:
        # A clean window first: neither 5m window may hold an earlier drill's errors, or they would read as this one's.
        wait("both 5m error ratios at 0 under the load, before the crashes", 360,
             lambda: prom_value(edge_q) == 0 and prom_value(service_q) == 0, step=5)
        t_end = time.monotonic() + args.edge_seconds
        while time.monotonic() < t_end:
            # Crash it each time it is back in service, so that Traefik routes to it when it dies, as it would to a
            # pod that crashes under load.
            p = env.kube.get(f"/api/v1/namespaces/{NS}/pods/{victim}")
            if ready(p):
                time.sleep(2)
                try:
                    request(p["status"]["podIP"], 8080, "POST", "/panic", env.drill_headers, timeout=3)
                except (OSError, http.client.HTTPException):
                    pass
                panics += 1
            time.sleep(0.5)
        # One scrape and one evaluation later, the 5m ratios hold the last crash too.
        time.sleep(35)
        edge, service = prom_value(edge_q), prom_value(service_q)
    finally:
        load.stop(60)
        env.kube.kubectl("-n", NS, "delete", "pod", victim, "--wait=true", timeout=120)
        env.wait_settled()
    w = load.window(0, time.monotonic())
    out = {"panics": panics, "edge_ratio_5m": edge, "service_ratio_5m": service, "requests": w.requests,
           "client_failures": dict(w.failures)}
    log(f"  {panics} panics of {victim} in {args.edge_seconds:.0f} s under load ({w.requests} requests, failures seen by "
        f"the client {dict(w.failures)}): edge 5m error ratio {edge}, service 5m error ratio {service}")
    fails.check(edge is not None and edge > 0.001,
                f"the edge SLI did not burn budget (5m error ratio {edge}, the SLO allows 0.001)")
    fails.check(service is not None and service == 0, f"the service SLI saw the crashes (5m error ratio {service})")
    return out


def drill_pdb(env: Env, args, fails: Failures) -> dict:
    """`kubectl drain` of the node under load: the PDB lets exactly one pod go, then blocks the drain, since the
    evicted pod cannot be scheduled on a cordoned node."""
    env.wait_settled()
    node = env.kube.get("/api/v1/nodes")["items"][0]["metadata"]["name"]
    load = _load(env, "pdb", 100, 300)
    load.start()
    t0 = time.monotonic()
    try:
        time.sleep(5)
        p = env.kube.kubectl("drain", node, "--pod-selector=app=sre-mini", "--delete-emptydir-data",
                             "--timeout=60s", check=False, timeout=120)
        pdb = env.kube.get(f"/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/sre-mini-pdb")["status"]
        pods = env.pods()
    finally:
        env.kube.kubectl("uncordon", node)
        load.stop(60)
    evicted = p.stdout.count("evicted")
    blocked = "disruption budget" in p.stderr
    w = load.window(t0, time.monotonic())
    out = {"drain_exit": p.returncode, "evicted": evicted, "blocked": blocked, "pdb_status": pdb,
           "requests": w.requests, "failed": w.failed}
    log(f"  kubectl drain: exit {p.returncode}, {evicted} pod evicted, then blocked by the PDB: {blocked}; PDB status "
        f"healthy {pdb.get('currentHealthy')} of desired {pdb.get('desiredHealthy')}, {pdb.get('disruptionsAllowed')} "
        f"disruptions allowed; {sum(map(ready, pods))} of {len(pods)} pods ready; load {w.requests} requests, "
        f"{w.failed} failed")
    fails.check(p.returncode != 0 and evicted == 1 and blocked,
                f"the drain was not stopped after one eviction: exit {p.returncode}, evicted {evicted}, {p.stderr[-300:]}")
    fails.check(w.failed == 0, f"requests failed during the drain: {dict(w.failures)}")
    env.wait_settled()
    return out


def drill_alerts_setup(env: Env, args, fails: Failures) -> dict:
    """The start of the slow alerts' drill, in a copy of the kit in namespace sre-mini-alerts, left running while the
    other monitoring drills run (the alerts' `for` is 5 to 15 minutes): a rollout of a configuration the server
    refuses (it exits 2 at start) crash-loops and gets stuck with the Deployment's two old pods serving, the PDB's
    floor; then one of those turns unready (/fail/ready), leaving the PDB short of healthy pods."""
    token = pathlib.Path(args.drill_token_file).read_text().strip() if args.drill_token_file else None
    old_hash = _copy(env, ALERTS_NS, args.webhook, token)[0]["metadata"]["labels"]["pod-template-hash"]
    bad = "SHUTDOWN_DELAY_MS=0x10"  # not a decimal count of milliseconds: the server exits 2 naming the variable
    env.kube.kubectl("-n", ALERTS_NS, "set", "env", "deployment/sre-mini", bad)
    drill_alerts_setup.started = time.time()

    def pods(template_hash: str) -> list[dict]:
        return [p for p in env.kube.get(f"/api/v1/namespaces/{ALERTS_NS}/pods?labelSelector=app%3Dsre-mini%2C"
                                        f"pod-template-hash%3D{template_hash}")["items"]
                if not p["metadata"].get("deletionTimestamp")]
    # maxUnavailable 1: the rollout takes one old pod at once, and no more while the new ones never become ready.
    old = wait("the stuck rollout to leave two old pods Ready", 120,
               lambda: (lambda ps: ps if len(ps) == 2 and all(map(ready, ps)) else None)(pods(old_hash)), step=2)
    status = request(old[0]["status"]["podIP"], 8080, "POST", "/fail/ready", env.drill_headers, timeout=5)
    fails.check(status == 200, f"POST /fail/ready on {old[0]['metadata']['name']} answered {status}")
    log(f"  {ALERTS_NS}: a rollout with {bad} crash-loops and is stuck; {old[0]['metadata']['name']}, one of the two "
        f"old pods left, is unready; the alerts {', '.join(SLOW_ALERTS)} are due within their `for` (5 to 15 minutes)")
    return {"bad_config": bad, "unready": old[0]["metadata"]["name"]}


def drill_alerts_delivered(env: Env, args, fails: Failures) -> dict:
    """The end of the slow alerts' drill: each alert reached the webhook from namespace sre-mini-alerts, through the
    real kube-state-metrics, Prometheus and Alertmanager. Waits for the longest `for` to pass, bounded."""
    started = getattr(drill_alerts_setup, "started", None)
    if started is None:
        fails.check(False, "alerts-delivered runs only after alerts-setup in the same run")
        return {}
    with urllib.request.urlopen(f"{args.webhook}/received", timeout=10) as r:
        received = json.load(r)

    def arrived():
        with urllib.request.urlopen(f"{args.webhook}/received", timeout=10) as r:
            got = {}
            for n in json.load(r):
                for a in n["payload"].get("alerts", []):
                    lab = a.get("labels", {})
                    if lab.get("namespace") == ALERTS_NS and a.get("status") == "firing" and lab.get("alertname") in SLOW_ALERTS:
                        got.setdefault(lab["alertname"], (round(n["at"] - started), n["path"]))
            return got if len(got) == len(SLOW_ALERTS) else None
    out = {}
    try:
        got = wait("the slow alerts at the webhook", max(60, started + 1500 - time.time()), arrived, step=10)
        for name in SLOW_ALERTS:
            out[name] = {"seconds_after_fault": got[name][0], "receiver": got[name][1]}
            log(f"  {name}{{namespace={ALERTS_NS}}} at the webhook ({got[name][1]}) {got[name][0]} s after the fault")
            fails.check(got[name][1] == "/ticket", f"{name} (severity warning) reached {got[name][1]}, not /ticket")
    except RuntimeError as e:
        firing = [a["labels"]["alertname"] for a in prom_get("/api/v1/alerts")["alerts"]
                  if a["labels"].get("namespace") == ALERTS_NS]
        fails.check(False, f"{e}; firing in Prometheus for {ALERTS_NS}: {sorted(set(firing))}; received so far: "
                           f"{len(received)} notifications")
    finally:
        env.kube.kubectl("delete", "namespace", ALERTS_NS, "--wait=true", "--timeout=180s", check=False, timeout=200)
    return out


def drill_scaling(env: Env, args, fails: Failures) -> dict:
    """The HPA on the bulkhead's occupancy (deploy/components/hpa-occupancy), by the real HPA controller with metrics
    from prometheus-adapter: /work through Traefik ramps from 0 to 3x one pod's capacity, holds, and stops. The HPA must
    scale out before the 503s exceed 1% of what the pods it had could serve, settle without flapping, and scale back to
    its minimum within the scale-down policy. WORK_MAX_CONCURRENT is lowered for the drill so that one client process
    can drive 3x a pod's capacity; the occupancy it is measured against is lowered with it."""
    slots, delay = args.scaling_slots, 2.0
    per_pod = slots / delay  # /work per second one pod can take
    hpa_path = f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/sre-mini-hpa"
    hpa = env.kube.get(hpa_path)["spec"]
    floor, down = hpa["minReplicas"], hpa["behavior"]["scaleDown"]
    env.kube.kubectl("-n", NS, "set", "env", "deployment/sre-mini", f"WORK_MAX_CONCURRENT={slots}")
    env.wait_settled()
    peak = 3 * slots  # connections in flight at 3x one pod's capacity
    load = Load(port=443, path="/work", host=env.host, connections=peak, timeout=30, stagger=args.scaling_ramp,
                tag="scale", addr=env.edge, ca=env.ca, pause_after_503=1.0)
    timeline = []

    def sample(t0: float) -> dict:
        h = env.kube.get(hpa_path)["status"]
        dep = env.deployment()["status"]
        occ = prom_value(f'avg(sremini_work_active{{namespace="{NS}"}} / sremini_work_max_concurrent{{namespace="{NS}"}})')
        now = time.monotonic() - t0
        started = min(peak, int(peak * now / args.scaling_ramp)) if load_on[0] else 0
        row = {"t": round(now, 1), "replicas": dep.get("replicas", 0), "ready": dep.get("readyReplicas", 0),
               "desired": h.get("desiredReplicas"), "occupancy": None if occ is None else round(occ, 3),
               "load_rps": round(started / delay, 1)}
        timeline.append(row)
        return row

    load_on = [True]
    t0 = time.monotonic()
    load.start()
    try:
        while time.monotonic() - t0 < args.scaling_ramp + args.scaling_hold:
            sample(t0)
            time.sleep(5)
        load.stop(60)
        load_on[0] = False
        t_stop = time.monotonic() - t0
        # Back to the floor: the stabilisation window, then one step per period for every pod above it.
        top = max(r["replicas"] for r in timeline)
        bound = down["stabilizationWindowSeconds"] + max(0, top - floor) * min(p["periodSeconds"] for p in down["policies"]) + 90
        while time.monotonic() - t0 < t_stop + bound:
            r = sample(t0)
            if r["replicas"] == floor and r["ready"] == floor and time.monotonic() - t0 > t_stop + 30:
                break
            time.sleep(10)
    finally:
        if load_on[0]:
            load.stop(60)
        env.reapply()
    back = timeline[-1]["replicas"] == floor
    # The first scale-out, and the 503s up to it against what the pods there could have served.
    first_out = next((r for r in timeline if (r["desired"] or 0) > floor), None)
    t_out = first_out["t"] if first_out else t_stop
    w = load.window(t0, t0 + t_out)
    shed = w.failures.get("status:503", 0)
    servable = floor * per_pod * t_out
    share = shed / servable if servable else 0
    # Flapping: direction changes of the replica count while the load held.
    held = [r["replicas"] for r in timeline if args.scaling_ramp <= r["t"] <= t_stop]
    steps = [b - a for a, b in zip(held, held[1:]) if b != a]
    flips = sum(1 for a, b in zip(steps, steps[1:]) if (a > 0) != (b > 0))
    whole = load.window(t0, t0 + t_stop)
    out = {"slots": slots, "peak_rps": peak / delay, "per_pod_rps": per_pod, "first_scale_out_s": t_out,
           "shed_before_scale_out": shed, "servable_before_scale_out": round(servable), "share": round(share, 4),
           "max_replicas": top, "flips_while_held": flips, "load_stopped_s": round(t_stop, 1),
           "back_to_floor_s": round(timeline[-1]["t"] - t_stop, 1) if back else None, "requests": whole.requests,
           "failures": dict(whole.failures), "timeline": timeline}
    log(f"  load 0 -> {peak / delay:g} /work/s (3x a pod's {per_pod:g}) over {args.scaling_ramp:g} s, held "
        f"{args.scaling_hold:g} s: {whole.requests} requests, {dict(whole.failures)}")
    log(f"  HPA: first scale-out at {t_out:.0f} s (desired {first_out and first_out['desired']}), "
        f"{shed} x 503 before it = {share:.2%} of the {servable:.0f} the {floor} pods could serve; peak {top} replicas; "
        f"{flips} direction changes while the load held; back to {floor} "
        f"{out['back_to_floor_s']} s after the load stopped (bound {bound:.0f} s)")
    fails.check(first_out is not None, "the HPA never scaled out")
    fails.check(share <= 0.01, f"503s before the scale-out were {share:.2%} of what the pods could serve (bound 1%)")
    fails.check(flips <= 1, f"the replica count changed direction {flips} times while the load held")
    fails.check(back, f"the HPA did not scale back to {floor} within {bound:.0f} s of the load stopping")
    pathlib.Path(args.scaling_svg).write_text(timeline_svg(timeline, t_stop))
    log(f"  timeline: {args.scaling_svg}")
    return out


def timeline_svg(rows: list[dict], t_stop: float) -> str:
    """The scaling drill's timeline as an SVG line chart: replicas (desired and ready), the offered load as a share
    of the peak, and the bulkhead's occupancy."""
    w, h, m = 720, 300, 40
    tmax = max(r["t"] for r in rows) or 1
    rmax = max(max(r["replicas"], r["desired"] or 0) for r in rows) + 1

    def x(t):
        return m + (w - 2 * m) * t / tmax

    def y(v, top):
        return h - m - (h - 2 * m) * v / top

    def line(key, top, color, scale=1.0):
        pts = " ".join(f"{x(r['t']):.1f},{y((r[key] or 0) * scale, top):.1f}" for r in rows)
        return f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>'

    peak = max(r["load_rps"] for r in rows) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
             f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
             f'<line x1="{x(t_stop):.1f}" y1="{m}" x2="{x(t_stop):.1f}" y2="{h - m}" stroke="gray" stroke-dasharray="4"/>',
             line("desired", rmax, "#d62728"), line("ready", rmax, "#1f77b4"),
             line("load_rps", rmax, "#2ca02c", rmax * 0.9 / peak),
             line("occupancy", rmax, "#ff7f0e", rmax * 0.9)]
    for v in range(0, rmax + 1):
        parts.append(f'<text x="{m - 18}" y="{y(v, rmax) + 4:.1f}">{v}</text>')
    for t in range(0, int(tmax) + 1, 60):
        parts.append(f'<text x="{x(t) - 8:.1f}" y="{h - m + 16}">{t}s</text>')
    legend = [("#d62728", "HPA desired replicas"), ("#1f77b4", "ready replicas"),
              ("#2ca02c", f"offered load (peak {peak:g} /work/s)"), ("#ff7f0e", "bulkhead occupancy (0 to 1)")]
    for i, (c, label) in enumerate(legend):
        parts.append(f'<rect x="{w - m - 230}" y="{m + 16 * i - 10}" width="10" height="10" fill="{c}"/>'
                     f'<text x="{w - m - 215}" y="{m + 16 * i}">{label}</text>')
    parts.append(f'<text x="{x(t_stop) + 4:.1f}" y="{m + 80}" fill="gray">load stops</text></svg>')
    return "\n".join(parts) + "\n"


DRILLS = {"admission": drill_admission, "cgroups": drill_cgroups, "rollout": drill_rollout, "probes": drill_probes,
          "contention": drill_contention, "healing": drill_healing, "monitoring": drill_monitoring, "burn": drill_burn,
          "edge": drill_edge, "pdb": drill_pdb, "scaling": drill_scaling, "alerts-setup": drill_alerts_setup,
          "alerts-delivered": drill_alerts_delivered}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("drills", nargs="+", choices=list(DRILLS))
    ap.add_argument("--kit", required=True, help="the kustomization directory the check applied")
    ap.add_argument("--ca", required=True, help="the CA file of the Ingress's TLS certificate")
    ap.add_argument("--rendering", action="append", default=[], help="a rendered manifest to dry-run (repeatable)")
    ap.add_argument("--policy", default=str(ROOT / "deploy" / "platform" / "admission-policy.yaml"))
    ap.add_argument("--audit-log", default=str(ROOT / "target/cluster/logs/audit.log"))
    ap.add_argument("--drill-token-file")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--short-delay-ms", type=int, default=200)
    ap.add_argument("--contention-seconds", type=float, default=45)
    ap.add_argument("--edge-seconds", type=float, default=150)
    ap.add_argument("--scaling-slots", type=int, default=32, help="WORK_MAX_CONCURRENT during the scaling drill")
    ap.add_argument("--scaling-ramp", type=float, default=180)
    ap.add_argument("--scaling-hold", type=float, default=120)
    ap.add_argument("--scaling-svg", default=str(ROOT / "target" / "cluster" / "scaling.svg"))
    ap.add_argument("--webhook", help="the drill's webhook receiver, which the cluster's Alertmanager can reach")
    ap.add_argument("--results")
    args = ap.parse_args(argv)
    env = Env.discover(Kube(), args.kit, args.ca, args.drill_token_file)
    fails = Failures()
    results = {}
    for name in args.drills:
        log(f"\n[{name}]")
        t0 = time.monotonic()
        results[name] = DRILLS[name](env, args, fails)
        results[name]["seconds"] = round(time.monotonic() - t0, 1)
    if args.results:
        pathlib.Path(args.results).write_text(json.dumps(results, indent=2, default=str))
    if fails:
        print(f"\ncluster drills: {len(fails)} failures:", *fails, sep="\n  ")
        return 1
    print(f"\ncluster drills passed: {', '.join(args.drills)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
