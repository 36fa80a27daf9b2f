"""The pod harness: runs the binary the way the kubelet would, inside a cgroup with the Deployment's CPU quota and
memory limit (v1 or v2), with the Deployment's env, probed at the probes' own period and timeout.

Where the emulation stops: one cgroup per pod (no pod/container split, no pause container), no network namespace
(the pod listens on 127.0.0.1 with PORT=0), no image or read-only root (the container contract covers those),
and probes are sent from this host's Python rather than the kubelet.

    PYTHONPATH=tools python3 -m srekit.pod run [--name N] [ENV=VALUE ...]   # serve inside the limits until Ctrl-C
    PYTHONPATH=tools python3 -m srekit.pod check                           # make and remove a cgroup, or fail

If the cgroup cannot be made (not root, no cpu or memory controller), the harness raises HarnessError saying
why; callers fail, they never skip.
"""

from __future__ import annotations

import dataclasses
import http.client
import multiprocessing
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

from .manifest import ROOT, PodSpec

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000  # the kubelet's default cpu-cfs-quota-period


class HarnessError(RuntimeError):
    pass


def cgroup_version() -> int:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return 2
    if (CGROUP_ROOT / "cpu").is_dir() and (CGROUP_ROOT / "memory").is_dir():
        return 1
    raise HarnessError(
        f"no usable cgroup hierarchy under {CGROUP_ROOT}: need cgroup2 (cgroup.controllers) or v1 cpu and memory"
    )


class Cgroup:
    """One pod's cgroup with a CFS quota and a memory limit. Removed (after killing what is left in it) on close."""

    def __init__(self, name: str, cpus: float, memory_bytes: int):
        if os.geteuid() != 0:
            raise HarnessError("the pod harness must run as root to create cgroups (CI and these machines are root)")
        self.version = cgroup_version()
        self.name = name
        quota_us = max(1000, round(cpus * CFS_PERIOD_US))
        if self.version == 2:
            self.dirs = [CGROUP_ROOT / name]
            enabled = (CGROUP_ROOT / "cgroup.subtree_control").read_text().split()
            missing = [c for c in ("cpu", "memory") if c not in enabled]
            if missing:
                self._write(CGROUP_ROOT / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
            self._mkdir(self.dirs[0])
            self._write(self.dirs[0] / "cpu.max", f"{quota_us} {CFS_PERIOD_US}")
            self._write(self.dirs[0] / "memory.max", str(memory_bytes))
            self._write_if_exists(self.dirs[0] / "memory.swap.max", "0")
        else:
            self.dirs = [CGROUP_ROOT / "cpu" / name, CGROUP_ROOT / "memory" / name]
            for d in self.dirs:
                self._mkdir(d)
            cpu, mem = self.dirs
            self._write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            self._write(cpu / "cpu.cfs_quota_us", str(quota_us))
            self._write(mem / "memory.limit_in_bytes", str(memory_bytes))
            self._write_if_exists(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
        self.quota_us = quota_us
        self.memory_bytes = memory_bytes

    @staticmethod
    def _mkdir(d: pathlib.Path) -> None:
        try:
            d.mkdir()
        except FileExistsError:
            raise HarnessError(f"{d} already exists: a drill left it behind (rmdir it once its procs are gone)")
        except OSError as e:
            raise HarnessError(f"cannot create cgroup {d}: {e}") from e

    @staticmethod
    def _write(f: pathlib.Path, value: str) -> None:
        try:
            f.write_text(value)
        except OSError as e:
            raise HarnessError(f"cannot write {value!r} to {f}: {e}") from e

    @classmethod
    def _write_if_exists(cls, f: pathlib.Path, value: str) -> None:
        if f.exists():
            cls._write(f, value)

    def procs_files(self) -> list[pathlib.Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def exec_inside(self, argv: list[str]) -> list[str]:
        """argv wrapped so the process joins the cgroup before it execs: a shell writes its own pid ($$, which exec
        keeps) to each cgroup.procs. Not preexec_fn, which can deadlock when the parent has threads."""
        script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *map(str, self.procs_files()), "--", *argv]

    def cpu_stat(self) -> dict[str, int]:
        d = self.dirs[0]
        out = {}
        for line in (d / "cpu.stat").read_text().splitlines():
            k, _, v = line.partition(" ")
            out[k] = int(v)
        return out

    def memory_peak(self) -> int | None:
        """Peak memory charged to the cgroup (RSS plus page cache), when the kernel reports it."""
        f = self.dirs[0] / "memory.peak" if self.version == 2 else self.dirs[1] / "memory.max_usage_in_bytes"
        return int(f.read_text()) if f.exists() else None

    def pids(self) -> list[int]:
        pids = set()
        for f in self.procs_files():
            if f.exists():
                pids.update(int(p) for p in f.read_text().split())
        return sorted(pids)

    def close(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            for p in self.pids():
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                for d in self.dirs:
                    if d.exists():
                        d.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"cannot remove cgroup {self.dirs}: processes {self.pids()} remain")
                time.sleep(0.05)


@dataclasses.dataclass
class Exit:
    code: int
    seconds: float  # from SIGTERM (or the call) to exit


class Pod:
    """The binary inside its pod limits. Use as a context manager; the cgroup and process are gone after it."""

    _seq = 0

    def __init__(self, spec: PodSpec, binary: str | os.PathLike, name: str | None = None, env: dict | None = None):
        Pod._seq += 1
        self.spec = spec
        self.name = name or f"sre-mini-pod-{os.getpid()}-{Pod._seq}"
        self.binary = str(binary)
        self.env = {**spec.env, "PORT": "0", **(env or {})}
        self.cgroup: Cgroup | None = None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path = pathlib.Path(tempfile.mkdtemp(prefix="sre-mini-pod-")) / "stdout.log"

    def __enter__(self) -> "Pod":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, ready_timeout_s: float = 10) -> None:
        self.cgroup = Cgroup(self.name, self.spec.cpu_limit, self.spec.memory_limit)
        log = open(self.log_path, "wb")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.env}
        self.proc = subprocess.Popen(
            self.cgroup.exec_inside([self.binary]), env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            m = re.search(r'"msg":"ready".*?"addr":"[^"]*:(\d+)"', self.log_text())
            if m:
                self.port = int(m.group(1))
                if self.proc.pid not in self.cgroup.pids():
                    raise HarnessError(f"pid {self.proc.pid} is not in its cgroup {self.cgroup.dirs}")
                return
            if self.proc.poll() is not None:
                raise HarnessError(f"sre-mini exited {self.proc.returncode} before ready:\n{self.log_text()}")
            time.sleep(0.02)
        raise HarnessError(f"sre-mini logged no ready line within {ready_timeout_s} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, msg: str) -> list[str]:
        return [line for line in self.log_text().splitlines() if f'"msg":"{msg}"' in line]

    def get(self, path: str, timeout_s: float = 5) -> tuple[int, dict, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def metrics(self) -> dict[str, float]:
        """Unlabelled samples plus labelled ones keyed by their full series text."""
        _, _, body = self.get("/metrics")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def peak_rss(self) -> int:
        """VmHWM of the server process: its peak resident set, the figure the memory limit is compared with."""
        status = pathlib.Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024

    def pre_stop(self) -> int | None:
        """The manifest's preStop httpGet, as the kubelet sends it before SIGTERM. Returns its status."""
        if not self.spec.pre_stop_path:
            return None
        return self.get(self.spec.pre_stop_path, timeout_s=self.spec.grace_s)[0]

    def terminate(self, grace_s: float | None = None) -> Exit:
        """SIGTERM, then wait up to the grace period; SIGKILL after it, as the kubelet does (code -9)."""
        grace = self.spec.grace_s if grace_s is None else grace_s
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return Exit(code, time.monotonic() - t0)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.cgroup:
            self.cgroup.close()
            self.cgroup = None


@dataclasses.dataclass
class ProbeResult:
    kind: str
    path: str
    timeout_s: float
    latencies_s: list[float]
    failures: list[str]

    @property
    def sent(self) -> int:
        return len(self.latencies_s) + len(self.failures)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


def _probe_loop(port, path, period_s, timeout_s, stop, conn):
    # A process of its own, so the load generator's GIL never delays a probe.
    latencies, failures = [], []
    next_at = time.monotonic()
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            dt = time.monotonic() - t0
            # The kubelet counts 200-399 as success, and a reply after the timeout as a failure.
            if 200 <= r.status < 400 and dt <= timeout_s:
                latencies.append(dt)
            else:
                failures.append(f"status {r.status} after {dt * 1000:.0f} ms")
        except OSError as e:
            failures.append(f"{type(e).__name__} after {(time.monotonic() - t0) * 1000:.0f} ms: {e}")
        next_at += period_s
        stop.wait(max(0.0, next_at - time.monotonic()))
    conn.send((latencies, failures))
    conn.close()


class Prober:
    """Sends one probe kind at its period (or `period_s`) until stopped, in its own process, with its timeout."""

    def __init__(self, pod: Pod, kind: str, period_s: float | None = None, label: str = ""):
        p = pod.spec.probe(kind)
        self.kind = label or kind
        self.path, self.timeout_s = p.path, p.timeout_s
        self.period_s = p.period_s if period_s is None else period_s
        self._stop = multiprocessing.Event()
        self._rx, tx = multiprocessing.Pipe(duplex=False)
        self._proc = multiprocessing.Process(
            target=_probe_loop, args=(pod.port, p.path, self.period_s, p.timeout_s, self._stop, tx), daemon=True
        )
        self._proc.start()

    def result(self) -> ProbeResult:
        self._stop.set()
        latencies, failures = self._rx.recv()
        self._proc.join()
        return ProbeResult(self.kind, self.path, self.timeout_s, latencies, failures)


def release_binary() -> pathlib.Path:
    env_bin = os.environ.get("SRE_MINI_BIN")
    if env_bin:
        return pathlib.Path(env_bin)
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
    return ROOT / "target" / "release" / "sre-mini"


def main(argv: list[str]) -> int:
    spec = PodSpec.from_manifest()
    if argv[:1] == ["check"]:
        c = Cgroup(f"sre-mini-check-{os.getpid()}", spec.cpu_limit, spec.memory_limit)
        print(f"cgroup v{c.version}: {c.dirs} quota {c.quota_us}/{CFS_PERIOD_US} us, memory {c.memory_bytes} bytes")
        c.close()
        return 0
    if argv[:1] == ["run"]:
        args = argv[1:]
        name = None
        if args[:1] == ["--name"]:
            name, args = args[1], args[2:]
        env = dict(a.split("=", 1) for a in args)
        with Pod(spec, release_binary(), name=name, env=env) as pod:
            print(f"serving on 127.0.0.1:{pod.port} in {pod.cgroup.dirs} (Ctrl-C stops)", flush=True)
            try:
                pod.proc.wait()
            except KeyboardInterrupt:
                print(pod.terminate())
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except HarnessError as e:
        print(f"pod harness: {e}", file=sys.stderr)
        sys.exit(1)
