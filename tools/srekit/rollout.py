"""The rolling-update drill: 3 replicas of the release binary behind a real nginx standing in for the Ingress,
rolled the way the Deployment controller and the kubelet roll them, under a steady keep-alive load.

Everything is read from k8s.yaml: the routes (srekit.ingress), the pod's env, probes, preStop hook, grace period,
minReadySeconds, progressDeadlineSeconds and the RollingUpdate arithmetic (srekit.deployment). This module is the
I/O shell: it starts the processes, runs the controller's decisions, and counts.

A pod's termination, as the kubelet and the endpoints machinery do it:
  deletion -> preStop httpGet -> SIGTERM -> (propagation delay) -> nginx reload without the pod -> exit,
  SIGKILL if the exit has not come by deletion + terminationGracePeriodSeconds.
The new pod joins the upstreams as soon as its readiness path answers 200.

Pass: no failed client request over every positive rollout, each under at least --min-requests of load; every old
pod exits 0 within the grace period. Then the negative case: the same rollout with SHUTDOWN_DELAY_MS shorter
than the propagation delay must show failed requests (502s at the proxy, connection refused in its error log),
or the drill could not see the failure it exists for.

Loopback only; bounded by --max-seconds; every process it starts is in its own process group and is killed with
it on the way out, whatever the exit path.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import yaml

from srekit import deployment, ingress
from srekit.keepalive_load import ProcessLoad

# Unprivileged identities when the drill runs as root: nginx as nobody (as a non-root CI runner would run it),
# the replicas as the pod's runAsUser.
NOBODY = 65534


class DrillFailed(Exception):
    pass


def log(msg: str) -> None:
    print(msg, flush=True)


def _unprivileged(uid: int | None, gid: int | None) -> list[str]:
    """A setpriv prefix: dies with the drill (PDEATHSIG), and drops to uid:gid when the drill runs as root."""
    cmd = ["setpriv", "--pdeathsig", "KILL"]
    if os.geteuid() == 0 and uid is not None:
        cmd += [f"--reuid={uid}", f"--regid={gid if gid is not None else uid}", "--clear-groups"]
    return cmd + ["--"]


def _http_get(port: int, path: str, timeout: float, host: str = "127.0.0.1") -> tuple[int, dict[str, str]]:
    status, headers, _ = _http_get_body(port, path, timeout, host)
    return status, headers


def _http_get_body(port: int, path: str, timeout: float, host: str = "127.0.0.1"):
    """One GET on a new connection (as the kubelet probes): status, lower-cased headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


# --- replicas ------------------------------------------------------------------------------------------------


class Replica:
    """One pod's process: the release binary with the Deployment's env, PORT=0, in its own process group.

    The same surface as the pod harness (port, pid, wait, signal), so a launcher that adds cgroup limits can take
    its place. Started only from the main thread: PDEATHSIG follows the thread that forked.
    """

    def __init__(self, binary: str, name: str, env: dict[str, str], logdir: str, uid: int | None,
                 gid: int | None):
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, "PORT": "0"}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(_unprivileged(uid, gid) + [binary], env=full_env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.pid = self.proc.pid
        try:
            self.port = self._await_ready(10.0)
        except BaseException:
            self.close()  # not yet in anyone's ExitStack
            raise

    def _await_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get("msg") == "ready" and "addr" in rec:
                        return int(rec["addr"].rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                raise DrillFailed(f"{self.name} exited {self.proc.returncode} before its ready line: "
                                  f"{self.tail()}")
            time.sleep(0.02)
        raise DrillFailed(f"{self.name} logged no ready line within {timeout} s")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code (128+N for a signal), or None if still running after `timeout`."""
        try:
            rc = self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None
        return 128 - rc if rc < 0 else rc

    def tail(self, n: int = 5) -> str:
        with open(self.log_path, "rb") as f:
            return b" | ".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- nginx ---------------------------------------------------------------------------------------------------


class Nginx:
    """An nginx master in the foreground, unprivileged, with every file it writes in `prefix`."""

    def __init__(self, prefix: str, routes, proxy: ingress.ProxySettings):
        self.prefix = prefix
        self.routes = routes
        self.proxy = proxy
        self.generation = 0
        self.lock = threading.Lock()
        for d in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
        if os.geteuid() == 0:
            for root, dirs, files in os.walk(prefix):
                for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(n, NOBODY, NOBODY)
        self.proc: subprocess.Popen | None = None

    def _cmd(self, *extra: str) -> list[str]:
        return _unprivileged(NOBODY, NOBODY) + ["nginx", "-p", self.prefix, "-c", "nginx.conf", "-e",
                                                 os.path.join(self.prefix, "error.log"), *extra]

    def _write(self, upstreams: dict[str, list[int]]) -> None:
        self.generation += 1
        text = ingress.nginx_conf(self.prefix, self.routes, upstreams, self.proxy, self.generation)
        path = os.path.join(self.prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(text)
        if os.geteuid() == 0:
            os.chown(path, NOBODY, NOBODY)

    def start(self, ports: list[int]) -> None:
        self._write(self._upstreams(ports))
        test = subprocess.run(self._cmd("-t", "-q"), capture_output=True, text=True)
        if test.returncode != 0:
            raise DrillFailed(f"nginx -t rejected the generated config: {test.stderr.strip()}")
        with open(os.path.join(self.prefix, "stderr.log"), "wb") as err:
            self.proc = subprocess.Popen(self._cmd("-g", "daemon off;"), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        self._await_generation(10.0)

    def _upstreams(self, ports: list[int]) -> dict[str, list[int]]:
        # The Ingress backends all name the one Service in front of the Deployment's pods.
        return {ingress.upstream_name(r): sorted(ports) for r in self.routes}

    def reload(self, ports: list[int]) -> float:
        """Routes to `ports` only; returns when new connections get the new config (seconds taken)."""
        with self.lock:
            t0 = time.monotonic()
            self._write(self._upstreams(ports))
            r = subprocess.run(self._cmd("-s", "reload"), capture_output=True, text=True)
            if r.returncode != 0:
                raise DrillFailed(f"nginx -s reload failed: {r.stderr.strip()}")
            self._await_generation(10.0)
            return time.monotonic() - t0

    def _await_generation(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = str(self.generation)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise DrillFailed(f"nginx exited {self.proc.returncode}: {self.error_log_tail()}")
            try:
                status, _, body = _http_get_body(self.proxy.control_port, "/generation", 1.0)
                if status == 200 and body.decode().strip() == want:
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise DrillFailed(f"nginx did not take config generation {want} within {timeout} s")

    def error_log_tail(self, n: int = 5) -> str:
        try:
            with open(os.path.join(self.prefix, "error.log"), "rb") as f:
                return b" | ".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no error log)"

    def error_log(self) -> str:
        try:
            with open(os.path.join(self.prefix, "error.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown: the master stops its workers
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Workers are in the master's process group; none may outlive the drill.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the rollout ---------------------------------------------------------------------------------------------


@dataclass
class Pod:
    replica: Replica
    revision: int
    started: float
    ready_at: float | None = None
    next_probe: float = 0.0
    deleted_at: float | None = None
    routed: bool = False
    # filled in by the termination
    pre_stop_status: int | str | None = None
    sigterm_at: float | None = None
    removed_at: float | None = None
    sigterm_wall: float | None = None  # time.time(), to match nginx's $msec
    removed_wall: float | None = None
    exit_code: int | None = None
    exit_seconds: float | None = None  # from deletion, the clock terminationGracePeriodSeconds runs on
    killed: bool = False

    @property
    def name(self) -> str:
        return self.replica.name


@dataclass
class RolloutResult:
    revision: int
    started: float
    finished: float
    actions: list[str] = field(default_factory=list)
    old: list[Pod] = field(default_factory=list)


class Fleet:
    def __init__(self, stack: ExitStack, binary: str, plan: deployment.Rollout, nginx: Nginx, workdir: str,
                 propagation: float, progress_deadline: float, env_overrides: dict[str, str], uid, gid):
        self.stack = stack
        self.binary = binary
        self.plan = plan
        self.nginx = nginx
        self.workdir = workdir
        self.propagation = propagation
        self.progress_deadline = progress_deadline
        self.env = {**plan.env, **env_overrides}
        self.uid, self.gid = uid, gid
        self.pods: list[Pod] = []
        self.serial = 0
        self.lock = threading.Lock()
        self.errors: list[str] = []

    def start_pod(self, revision: int) -> Pod:
        self.serial += 1
        name = f"rev{revision}-pod{self.serial}"
        r = self.stack.enter_context(Replica(self.binary, name, self.env, self.workdir, self.uid, self.gid))
        pod = Pod(r, revision, time.monotonic())
        self.pods.append(pod)
        return pod

    def routed_ports(self) -> list[int]:
        with self.lock:
            return [p.replica.port for p in self.pods if p.routed]

    def probe_ready(self, pod: Pod, now: float) -> None:
        """The readiness probe, at the kubelet's period (first probe at once), with the probe's own timeout."""
        if pod.ready_at is not None or pod.deleted_at is not None or now < pod.next_probe:
            return
        pod.next_probe = now + self.plan.readiness_period
        try:
            status, _ = _http_get(pod.replica.port, self.plan.readiness.path, self.plan.readiness_timeout)
        except OSError:
            return
        if status == 200:
            pod.ready_at = time.monotonic()
            with self.lock:
                pod.routed = True
            self.nginx.reload(self.routed_ports())

    def available(self, pod: Pod, now: float) -> bool:
        return pod.ready_at is not None and now - pod.ready_at >= self.plan.min_ready_seconds

    def bootstrap(self, revision: int) -> None:
        """The Deployment as it stands before a rollout: all replicas ready and available."""
        for _ in range(self.plan.replicas):
            pod = self.start_pod(revision)
            status, _ = _http_get(pod.replica.port, self.plan.readiness.path, self.plan.readiness_timeout)
            if status != 200:
                raise DrillFailed(f"{pod.name}: readiness answered {status} after the ready line")
            pod.ready_at = time.monotonic() - self.plan.min_ready_seconds
            pod.routed = True
        self.nginx.start(self.routed_ports())

    def terminate(self, pod: Pod) -> None:
        """The kubelet's termination of one pod, plus the endpoint removal reaching the proxy later."""
        try:
            grace_end = pod.deleted_at + self.plan.grace_seconds
            if self.plan.pre_stop is not None:
                try:
                    pod.pre_stop_status, _ = _http_get(pod.replica.port, self.plan.pre_stop.path,
                                                       max(0.1, grace_end - time.monotonic()))
                except OSError as e:
                    pod.pre_stop_status = type(e).__name__
            elif self.plan.pre_stop_sleep:
                time.sleep(self.plan.pre_stop_sleep)
            pod.replica.signal(signal.SIGTERM)
            pod.sigterm_at, pod.sigterm_wall = time.monotonic(), time.time()
            time.sleep(self.propagation)
            with self.lock:
                pod.routed = False
            self.nginx.reload(self.routed_ports())
            pod.removed_at, pod.removed_wall = time.monotonic(), time.time()
            code = pod.replica.wait(grace_end - time.monotonic())
            if code is None:
                pod.replica.signal(signal.SIGKILL)
                pod.killed = True
                code = pod.replica.wait(5.0)
            pod.exit_code = code
            pod.exit_seconds = time.monotonic() - pod.deleted_at
        except Exception as e:  # reported by the rollout
            self.errors.append(f"{pod.name}: {e!r}")

    def rollout(self, revision: int) -> RolloutResult:
        """One RollingUpdate to `revision`, step by step as the controller decides; returns once every old pod
        has exited."""
        res = RolloutResult(revision, time.monotonic(), 0.0)
        old = [p for p in self.pods if p.deleted_at is None]
        threads = []
        deadline = res.started + self.progress_deadline
        while True:
            now = time.monotonic()
            if now > deadline:
                raise DrillFailed(f"rollout to revision {revision}: no completion within progressDeadlineSeconds "
                                  f"{self.progress_deadline:g} (ProgressDeadlineExceeded)")
            new = [p for p in self.pods if p.revision == revision]
            for p in new:
                self.probe_ready(p, now)
            old_active = [p for p in old if p.deleted_at is None]
            old_available = sum(1 for p in old_active if self.available(p, now))
            new_available = sum(1 for p in new if self.available(p, now))
            if deployment.done(self.plan, len(old_active), new_available):
                break
            step = deployment.controller_step(self.plan, len(old_active), old_available, len(new), new_available)
            for _ in range(step.create):
                p = self.start_pod(revision)
                res.actions.append(f"+{time.monotonic() - res.started:5.2f}s create {p.name}")
            # The controller scales an old ReplicaSet down by deleting unready pods first, then the youngest.
            victims = sorted(old_active, key=lambda p: (p.ready_at is not None, -p.started))[:step.delete]
            for p in victims:
                p.deleted_at = time.monotonic()
                res.actions.append(f"+{p.deleted_at - res.started:5.2f}s delete {p.name}")
                # Daemon: on an abort the ExitStack kills the pods, and nothing may keep the drill alive after it.
                t = threading.Thread(target=self.terminate, args=(p,), name=f"terminate-{p.name}", daemon=True)
                t.start()
                threads.append(t)
            time.sleep(0.05)
        for t in threads:
            t.join(self.plan.grace_seconds + self.propagation + 10)
            if t.is_alive():
                raise DrillFailed(f"{t.name} did not finish")
        res.finished = time.monotonic()
        res.old = old
        res.actions.append(f"+{res.finished - res.started:5.2f}s done: {len(old)} old pods exited")
        return res


# --- the drill -----------------------------------------------------------------------------------------------


def route_check(routes, port: int) -> list[str]:
    """nginx must route exactly what the Ingress routes: every probe's fate must be what `matches` says."""
    hosts = sorted({r.host for r in routes if r.host} | {"other.invalid"})
    paths = {"/", "/healthz", "/readyz", "/metrics", "/nonexistent"}
    for r in routes:
        base = r.path.rstrip("/") or ""
        paths |= {r.path, r.path + "?cpu_ms=0", base + "/", base + "x", base + "/x", r.path.upper()}
    hosts += [f"{r.host}:443" for r in routes if r.host][:1]
    probes = [(h, p) for h in hosts for p in sorted(paths)]
    problems = []

    def one(probe):
        host, path = probe
        want = ingress.matches(routes, host, path) is not None
        try:
            status, headers = _http_get(port, path, 10.0, host=host)
        except OSError as e:
            return f"{host}{path}: {e!r}"
        got = headers.get(ingress.UNROUTED_HEADER.lower()) != ingress.UNROUTED_VALUE
        if got != want:
            return f"{host}{path}: {'routed' if got else 'not routed'} by nginx (status {status}), the Ingress " \
                   f"{'routes' if want else 'does not route'} it"
        if not got and status != 404:
            return f"{host}{path}: unrouted but answered {status}, not 404"
        if got and status >= 500:
            return f"{host}{path}: routed, but the backend answered {status}"
        return None

    with ThreadPoolExecutor(max_workers=len(probes)) as ex:
        problems = [p for p in ex.map(one, probes) if p]
    routed = sum(1 for h, p in probes if ingress.matches(routes, h, p))
    log(f"route check: {len(probes)} requests through nginx, {routed} routed as the Ingress routes them, "
        f"{len(probes) - routed} answered 404 by the proxy; mismatches: {len(problems)}")
    return problems


def describe(pods: list[Pod]) -> str:
    return ", ".join(
        f"{p.name} exit {p.exit_code} in {p.exit_seconds:.2f}s" + (" (SIGKILL)" if p.killed else "")
        if p.exit_seconds is not None else f"{p.name} exit ?" for p in pods)


def session(fleet: Fleet, load, first_revision: int, count: int, ramp: float, pause: float, stop_wait: float):
    """Runs `count` rollouts under the running load, then stops it; returns (results, windows, whole session)."""
    t0 = time.monotonic()
    time.sleep(ramp)
    results = []
    for i in range(count):
        res = fleet.rollout(first_revision + i)
        if fleet.errors:
            raise DrillFailed("; ".join(fleet.errors))
        results.append(res)
        for a in res.actions:
            log(f"    {a}")
        log(f"  rollout to revision {res.revision}: {res.finished - res.started:.1f} s; old pods: {describe(res.old)}")
        time.sleep(pause)
    load.stop(stop_wait)
    windows = [load.window(r.started, r.finished) for r in results]
    for res, w in zip(results, windows):
        log(f"  rollout to revision {res.revision}: {w.requests} requests (client latency p50 {w.latency_p50:.2f} s, "
            f"p99 {w.latency_p99:.2f} s), {w.failed} failed {dict(w.failures) or ''}, {w.reopened} keep-alive "
            "reopens")
    return results, windows, load.window(t0, time.monotonic())


def run(args) -> int:
    with open(args.manifest) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    routes = ingress.routes_from_manifest(docs)
    plan = deployment.rollout_from_manifest(docs)
    dep = [d for d in docs if d.get("kind") == "Deployment"][0]
    progress_deadline = float(dep["spec"].get("progressDeadlineSeconds", 600))
    pod_sc = dep["spec"]["template"]["spec"].get("securityContext", {})
    uid, gid = pod_sc.get("runAsUser"), pod_sc.get("runAsGroup")
    overrides = {} if args.work_delay_ms is None else {"WORK_DELAY_MS": str(args.work_delay_ms)}
    work_delay = float(overrides.get("WORK_DELAY_MS", plan.env.get("WORK_DELAY_MS", "0"))) / 1000
    shutdown_delay = float(plan.env.get("SHUTDOWN_DELAY_MS", "0")) / 1000
    if not 1.0 <= args.propagation <= 2.0:
        raise DrillFailed("--propagation must be 1-2 s (the endpoint propagation being emulated)")
    if shutdown_delay <= args.propagation:
        raise DrillFailed(f"the manifest's SHUTDOWN_DELAY_MS ({shutdown_delay:g} s) is not longer than the "
                          f"propagation delay ({args.propagation:g} s): the positive case would fail by design")
    if args.negative_shutdown_delay_ms / 1000 >= args.propagation:
        raise DrillFailed("--negative-shutdown-delay-ms must be shorter than the propagation delay")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        raise DrillFailed("setpriv (util-linux) is needed to run nginx and the replicas unprivileged")
    log(f"manifest: {plan.replicas} replicas, maxSurge {plan.max_surge}, maxUnavailable {plan.max_unavailable}, "
        f"minReadySeconds {plan.min_ready_seconds:g}, terminationGracePeriodSeconds {plan.grace_seconds:g}, "
        f"preStop {f'GET {plan.pre_stop.path}' if plan.pre_stop else f'sleep {plan.pre_stop_sleep:g} s'}, readiness {plan.readiness.path} every "
        f"{plan.readiness_period:g} s, WORK_DELAY_MS {work_delay * 1000:g}, SHUTDOWN_DELAY_MS "
        f"{shutdown_delay * 1000:g}")
    log("routes: " + ", ".join(f"{r.host or '*'} {r.path} ({r.path_type}) -> service {r.service}:{r.service_port} "
                               f"-> container port {r.container_port}" for r in routes))

    work = tempfile.mkdtemp(prefix="sremini-rollout-")
    ports = [_free_port(), _free_port()]
    proxy = ingress.ProxySettings(listen_port=ports[0], control_port=ports[1], keepalive=args.connections,
                                  worker_connections=4 * args.connections + 64,
                                  workers=min(2, os.cpu_count() or 1))
    # The load is the workload the Ingress exists for: /work, with the Host the Ingress routes it for.
    route_path = "/work"
    route = ingress.matches(routes, next((r.host for r in routes if r.host), "127.0.0.1"), route_path)
    if route is None:
        raise DrillFailed("the Ingress does not route /work; the load has nothing to send through it")
    host = route.host or "127.0.0.1"
    summary: dict = {"connections": args.connections, "propagation_s": args.propagation,
                     "work_delay_ms": work_delay * 1000}
    failures: list[str] = []
    loads: dict[str, ProcessLoad] = {}
    rolled: dict[str, list[RolloutResult]] = {}
    try:
        with ExitStack() as stack:
            nginx = stack.enter_context(Nginx(work, routes, proxy))
            fleet = Fleet(stack, args.binary, plan, nginx, work, args.propagation, progress_deadline, overrides,
                          uid, gid)
            fleet.bootstrap(0)
            log(f"nginx {_nginx_version()} on 127.0.0.1:{proxy.listen_port}: {len(fleet.routed_ports())} replicas "
                f"(ports {', '.join(map(str, fleet.routed_ports()))}), keepalive {proxy.keepalive}, retries off")
            failures += route_check(routes, proxy.listen_port)

            load = ProcessLoad(proxy.listen_port, route_path, host, args.connections, timeout=work_delay + 8.0,
                               stagger=max(work_delay, 1.0), tag="p", processes=args.load_processes,
                               max_seconds=args.max_seconds)
            stack.callback(load.kill)
            log(f"positive case: {args.rollouts} rollouts under {args.connections} keep-alive connections of "
                f"GET {route_path} (Host {host}) through nginx")
            load.start()
            results, windows, whole = session(fleet, load, 1, args.rollouts, ramp=work_delay + 1.0, pause=1.0,
                                              stop_wait=work_delay + 15)
            loads["positive"], rolled["positive"] = load, results
            summary["positive"] = _figures(results, windows, whole)
            for res, w in zip(results, windows):
                if w.failed:
                    failures.append(f"rollout {res.revision}: {w.failed} failed requests {dict(w.failures)}")
                if w.requests < args.min_requests:
                    failures.append(f"rollout {res.revision}: only {w.requests} requests of load "
                                    f"(at least {args.min_requests} wanted)")
                for p in res.old:
                    if p.exit_code != 0 or p.exit_seconds is None or p.exit_seconds > plan.grace_seconds or p.killed:
                        failures.append(f"rollout {res.revision}: {p.name} exit {p.exit_code} after "
                                        f"{p.exit_seconds} s (grace {plan.grace_seconds:g} s): {p.replica.tail(2)}")
            if whole.failed:
                failures.append(f"{whole.failed} requests failed in the positive session (outside the rollouts "
                                f"too): {dict(whole.failures)}")

            # The negative case: a fresh Deployment whose pods close their listener before the proxy has
            # stopped routing to them.
            neg_env = {**overrides, "SHUTDOWN_DELAY_MS": str(args.negative_shutdown_delay_ms)}
            nfleet = Fleet(stack, args.binary, plan, nginx, work, args.propagation, progress_deadline, neg_env,
                           uid, gid)
            for _ in range(plan.replicas):
                p = nfleet.start_pod(100)
                p.ready_at = time.monotonic() - plan.min_ready_seconds
                p.routed = True
            nginx.reload(nfleet.routed_ports())
            # The positive fleet is out of the proxy now; it stops in the background, as pods of a deleted
            # Deployment would, and must still exit 0.
            leftovers = [p for p in fleet.pods if p.deleted_at is None]
            for p in leftovers:
                p.replica.signal(signal.SIGTERM)
            err_before = len(nginx.error_log())
            log(f"negative case: SHUTDOWN_DELAY_MS={args.negative_shutdown_delay_ms} against a propagation delay "
                f"of {args.propagation:g} s, same load")
            nload = ProcessLoad(proxy.listen_port, route_path, host, args.connections, timeout=work_delay + 8.0,
                                stagger=max(work_delay, 1.0), tag="n", processes=args.load_processes,
                                max_seconds=args.max_seconds)
            stack.callback(nload.kill)
            nload.start()
            nres, nwin, nwhole = session(nfleet, nload, 101, 1, ramp=work_delay + 1.0, pause=0.5,
                                         stop_wait=work_delay + 15)
            loads["negative"], rolled["negative"] = nload, nres
            refused = sum(1 for line in nginx.error_log()[err_before:].splitlines()
                          if "Connection refused" in line and "upstream" in line)
            summary["negative"] = {**_figures(nres, nwin, nwhole), "nginx_connection_refused": refused,
                                   "shutdown_delay_ms": args.negative_shutdown_delay_ms}
            proxy_502 = nwin[0].failures.get("status:502", 0)
            if proxy_502 == 0 or refused == 0:
                failures.append(f"negative case: expected 502s at the proxy with 'Connection refused' upstream, "
                                f"saw {dict(nwin[0].failures)} and {refused} refused connects: the drill cannot "
                                "see the failure it exists for")
            for p in leftovers:
                code = p.replica.wait(plan.grace_seconds)
                if code != 0:
                    failures.append(f"{p.name} (positive fleet, stopped at the end) exit {code}")
            log(f"  negative case: {nwin[0].failed} failed requests {dict(nwin[0].failures)} out of "
                f"{nwin[0].requests}; nginx logged {refused} upstream connects refused")
        # nginx has stopped, so its buffered access log is complete.
        seen = _access_log(os.path.join(work, "access.log"))
        for name, load_ in loads.items():
            figures, problems = cross_check(seen, load_)
            summary[name]["nginx_access_log"] = figures
            log(f"nginx access log, {name} session: {figures}")
            failures += [f"{name} session: {p}" for p in problems]
        # The positive case proves something only if the terminating pods were still sent requests in the window
        # between SIGTERM and their removal: those are the requests a too-short SHUTDOWN_DELAY_MS drops.
        for name, rs in rolled.items():
            for res, fig in zip(rs, summary[name]["rollouts"]):
                for p, pf in zip(res.old, fig["old_pods"]):
                    ok, bad, last = served_while_terminating(seen, p)
                    pf["served_after_sigterm_2xx"], pf["refused_after_sigterm_5xx"] = ok, bad
                    pf["last_routed_after_sigterm_s"] = last
                    if name == "positive" and pf["served_after_sigterm_2xx"] == 0:
                        failures.append(f"rollout {res.revision}: {p.name} got no request between SIGTERM and its "
                                        "removal, so the shutdown window was not exercised")
                log(f"{name} rollout {res.revision}, requests nginx sent to each old pod after its SIGTERM: "
                    + ", ".join(f"{pf['name']} {pf['served_after_sigterm_2xx']} answered 2xx"
                                f"{', ' + str(pf['refused_after_sigterm_5xx']) + ' 5xx' if pf['refused_after_sigterm_5xx'] else ''}"
                                f" (reload at +{pf['propagation_s']} s, last request sent at "
                                f"+{pf['last_routed_after_sigterm_s']} s)" for pf in fig["old_pods"]))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    _print_summary(summary, plan, args)
    if args.results:
        with open(args.results, "w") as f:
            json.dump(summary, f, indent=2)
    if failures:
        log("FAIL:")
        for f_ in failures:
            log(f"  - {f_}")
        return 1
    log("rollout drill: passed")
    return 0


@dataclass
class Logged:
    start: float  # wall clock: $msec - $request_time
    status: str
    upstream: str  # $upstream_addr


def _access_log(path: str) -> dict[str, Logged]:
    """X-Drill-Id -> what nginx logged for it, for every request that carried one."""
    seen = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 9 and parts[2] != "-":
                seen[parts[2]] = Logged(float(parts[0]) - float(parts[-1]), parts[1], parts[6])
    return seen


# After the reload that removes a pod, nginx's old workers still route a few requests until each has handled
# its QUIT; measured up to ~0.7 s on a machine with load average 19. Requests to the pod's address are attributed
# to it up to this long after the reload, and no new pod is created that soon after a removal.
ROUTING_TAIL_S = 2.0


def served_while_terminating(seen: dict[str, "Logged"], pod: Pod) -> tuple[int, int, float | None]:
    """Requests nginx sent to `pod` from its SIGTERM on: (answered 2xx, answered 5xx, seconds from SIGTERM to
    the last one sent), i.e. the endpoint propagation as the proxy actually applied it."""
    if pod.sigterm_wall is None or pod.removed_wall is None:
        return 0, 0, None
    addr = f"127.0.0.1:{pod.replica.port}"
    hits = [e for e in seen.values()
            if e.upstream == addr and pod.sigterm_wall <= e.start <= pod.removed_wall + ROUTING_TAIL_S]
    last = max((e.start for e in hits), default=None)
    return (sum(1 for e in hits if e.status.startswith("2")), sum(1 for e in hits if e.status.startswith("5")),
            None if last is None else round(last - pod.sigterm_wall, 2))


def cross_check(seen: dict[str, Logged], load: ProcessLoad) -> tuple[dict, list[str]]:
    """The client's records against nginx's log: each counted request reached nginx exactly as the client saw
    it, and no reopened attempt reached it at all."""
    problems = []
    missing = mismatched = 0
    for r in load.records:
        entry = seen.get(r.rid)
        got = entry.status if entry else None
        if r.outcome == "ok":
            want_ok = got is not None and got.startswith("2")
        elif r.outcome.startswith("status:"):
            want_ok = got == r.outcome.split(":")[1]
        else:
            continue  # a connection-level failure may or may not have reached nginx
        if got is None:
            missing += 1
        elif not want_ok:
            mismatched += 1
    reached = sorted(rid for _, rid in load.reopens if rid in seen)
    figures = {"client_requests": len(load.records), "logged": sum(1 for k in seen if k.startswith(load.tag)),
               "missing_from_log": missing, "status_mismatch": mismatched, "reopened": len(load.reopens),
               "reopened_that_reached_nginx": len(reached)}
    if missing or mismatched:
        problems.append(f"{missing} answered requests missing from nginx's log, {mismatched} with another status")
    if reached:
        problems.append(f"{len(reached)} reopened attempts had reached nginx (e.g. {reached[:3]} -> "
                        f"{[seen[x].status for x in reached[:3]]}): the reopen rule would hide them")
    return figures, problems


def _figures(results: list[RolloutResult], windows, whole) -> dict:
    return {
        "rollouts": [
            {"revision": r.revision, "seconds": round(r.finished - r.started, 2), "requests": w.requests,
             "rps": round(w.requests / max(0.001, r.finished - r.started)), "latency_p50_s": round(w.latency_p50, 3),
             "latency_p99_s": round(w.latency_p99, 3), "failed": w.failed, "failures": dict(w.failures), "keepalive_reopens": w.reopened,
             "old_pods": [{"name": p.name, "exit_code": p.exit_code, "seconds": round(p.exit_seconds or -1, 2),
                           "propagation_s": round(p.removed_at - p.sigterm_at, 2) if p.removed_at else None,
                           "sigterm_to_exit": round((p.exit_seconds or 0) - (p.sigterm_at - p.deleted_at), 2)
                           if p.sigterm_at else None, "pre_stop": p.pre_stop_status, "sigkill": p.killed}
                          for p in r.old]}
            for r, w in zip(results, windows)],
        "session": {"requests": whole.requests, "failed": whole.failed, "failures": dict(whole.failures),
                    "keepalive_reopens": whole.reopened},
    }


def _print_summary(s: dict, plan, args) -> None:
    log("\n==> rollout drill summary")
    pos = s.get("positive")
    if pos:
        reqs = [r["requests"] for r in pos["rollouts"]]
        log(f"positive (SHUTDOWN_DELAY_MS from the manifest, propagation {args.propagation:g} s, "
            f"{args.connections} connections):")
        for r in pos["rollouts"]:
            pods = ", ".join(f"{p['name']} exit {p['exit_code']} {p['seconds']:.2f}s" for p in r["old_pods"])
            log(f"  rollout {r['revision']}: {r['requests']} requests, {r['failed']} failed, "
                f"{r['keepalive_reopens']} reopens, {r['seconds']:.1f} s; {pods}")
        exits = [p["seconds"] for r in pos["rollouts"] for p in r["old_pods"]]
        log(f"  median requests per rollout {statistics.median(reqs):.0f}; old pods' exit seconds median "
            f"{statistics.median(exits):.2f} (max {max(exits):.2f}, grace {plan.grace_seconds:g}); whole session "
            f"{pos['session']['requests']} requests, {pos['session']['failed']} failed")
    neg = s.get("negative")
    if neg:
        r = neg["rollouts"][0]
        pods = ", ".join(f"{p['name']} exit {p['exit_code']} {p['seconds']:.2f}s" for p in r["old_pods"])
        log(f"negative (SHUTDOWN_DELAY_MS={neg['shutdown_delay_ms']}): {r['requests']} requests, {r['failed']} "
            f"failed {r['failures']}, nginx upstream connects refused {neg['nginx_connection_refused']}; {pods}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nginx_version() -> str:
    r = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return r.stderr.strip().split("/")[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default="k8s.yaml")
    ap.add_argument("--binary", required=True)
    ap.add_argument("--rollouts", type=int, default=3)
    ap.add_argument("--connections", type=int, default=1200)
    ap.add_argument("--load-processes", type=int, default=2, help="client processes sharing the connections")
    ap.add_argument("--work-delay-ms", type=int, help="WORK_DELAY_MS for every pod (default: the manifest's)")
    ap.add_argument("--propagation", type=float, default=1.5, help="seconds from SIGTERM to the proxy reload")
    ap.add_argument("--negative-shutdown-delay-ms", type=int, default=200)
    ap.add_argument("--min-requests", type=int, default=5000)
    ap.add_argument("--max-seconds", type=int, default=220, help="the whole drill, start to cleanup")
    ap.add_argument("--results", help="write the figures as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, nginx.conf)")
    args = ap.parse_args(argv)

    def abort(signum, _frame):
        raise DrillFailed(f"stopped by signal {signum}" if signum != signal.SIGALRM
                          else f"the drill ran past --max-seconds {args.max_seconds}")

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, abort)
    signal.alarm(args.max_seconds)
    try:
        return run(args)
    except (DrillFailed, ingress.ManifestError) as e:
        log(f"FAIL: {e}")
        return 1
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
