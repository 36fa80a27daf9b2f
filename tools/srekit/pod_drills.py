"""Drills under the pod's own limits, with the Deployment's env, CPU quota, memory limit and probe timing read
from k8s.yaml (see pod.py for where the emulation stops). Loopback only, bounded, and every pod is removed.

    PYTHONPATH=tools python3 -m srekit.pod_drills [--runs N] [--env VAR=VALUE]... [shapes] [sigterm] [capacity]
    (default: all three, once; --env overrides one of the manifest's variables, to show what a drill catches)

- shapes: several /work burst shapes beyond the bulkhead and the core count. Not one probe may miss its timeout;
  every /work gets 200, or 503 with a valid Retry-After; the sampler's probe p99 stays under a wide 250 ms bound
  (the target is 100 ms, reported over --runs); the /work
  pool starts at most WORK_MAX_CONCURRENT threads over two 1,000-request waves; peak RSS stays at or below a
  quarter of the memory limit.
- sigterm: the bulkhead full and the CPU saturated, then preStop and SIGTERM as the kubelet sends them. The pod
  exits 0 within terminationGracePeriodSeconds, every request it accepted is answered, none is abandoned.
- capacity: CPU per /work request as measured here, against where the HPA's CPU target sits: the pod must reach
  the HPA target before its bulkhead saturates, or the HPA never sees the load it is failing.

Set SRE_MINI_BIN to drill a prebuilt binary (for example an older build, to see what the drill catches).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import sys
import time

import yaml

from . import http
from .manifest import DEFAULT_MANIFEST, PodSpec, parse_cpu
from .pod import Pod, Prober, ProbeResult, release_binary

SAMPLER_PERIOD_S = 0.1
# The HPA acts only when usage / target leaves 1 ± this (kube-controller-manager's default tolerance).
HPA_TOLERANCE = 0.1
# The pass criterion is the kubelet's: no probe misses its timeout. The p99 bound is wide (a quarter of the
# tightest timeout), so a host busy with other work does not fail the drill; the target, 100 ms, is reported
# as the median of several runs (--runs 3), which is how the figures in docs/capacity.md were taken.
PROBE_P99_BOUND_S = 0.250
PROBE_P99_TARGET_S = 0.100


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    path: str
    concurrency: int
    waves: int


SHAPES = (
    Shape("short CPU bursts", "/work?cpu_ms=5", 700, 3),
    Shape("long CPU requests", "/work?cpu_ms=200", 100, 1),
    Shape("plain /work past the bulkhead", "/work", 1000, 2),
)


class Failures(list):
    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.append(what)


def _classify(results: list[http.Result]) -> dict:
    ok = [r for r in results if r.status == 200]
    shed = [r for r in results if r.status == 503]
    bad_shed = [r for r in shed if not r.retry_after_valid]
    other = [r for r in results if r.status not in (0, 200, 503)]
    errors = [r for r in results if r.status == 0]
    return {
        "ok": len(ok),
        "shed": len(shed),
        "shed_without_retry_after": len(bad_shed),
        "other_status": sorted({r.status for r in other}),
        "errors": len(errors),
        "first_errors": [r.error for r in errors[:3]],
        "slowest_ok_s": max((r.seconds for r in ok), default=0.0),
        "slowest_shed_s": max((r.seconds for r in shed), default=0.0),
    }


def _probe_summary(p: ProbeResult) -> str:
    p50, p99 = p.percentile(0.5), p.percentile(0.99)
    fmt = lambda v: "-" if v is None else f"{v * 1000:.1f} ms"  # noqa: E731
    return (
        f"{p.kind} {p.path} (timeout {p.timeout_s:g} s): {p.sent} sent, {len(p.failures)} missed, "
        f"p50 {fmt(p50)}, p99 {fmt(p99)}, max {fmt(max(p.latencies_s, default=None))}"
    )


def _check_probes(probes: list[ProbeResult], fails: Failures, label: str) -> None:
    for p in probes:
        fails.check(not p.failures, f"{label}: {p.kind} probe missed {len(p.failures)} times: {p.failures[:3]}")
        fails.check(p.sent >= 1, f"{label}: {p.kind} probe never ran")
        if p.kind == "sampler":
            p99 = p.percentile(0.99)
            fails.check(p99 is not None and p99 < PROBE_P99_BOUND_S, f"{label}: sampler p99 {p99} s")


def _start_probers(pod: Pod) -> list[Prober]:
    probers = [Prober(pod, p.kind) for p in pod.spec.probes if p.kind != "startup"]
    # The manifest's periods give a handful of probes per drill; the sampler adds a dense series on the liveness
    # path with the tightest timeout, for a meaningful p99.
    tightest = min(pod.spec.probes, key=lambda p: p.timeout_s)
    probers.append(Prober(pod, tightest.kind, period_s=SAMPLER_PERIOD_S, label="sampler"))
    return probers


def drill_shapes(spec: PodSpec, binary, fails: Failures) -> dict:
    out = {}
    max_concurrent = int(spec.env["WORK_MAX_CONCURRENT"])
    for shape in SHAPES:
        with Pod(spec, binary) as pod:
            stat0 = pod.cgroup.cpu_stat()
            probers = _start_probers(pod)
            time.sleep(0.3)
            waves, started = [], []
            t0 = time.monotonic()
            for _ in range(shape.waves):
                results = asyncio.run(http.burst(pod.port, shape.path, shape.concurrency))
                waves.append(_classify(results))
                started.append(pod.metrics().get("sremini_work_threads_started_total", float("nan")))
            took = time.monotonic() - t0
            time.sleep(0.3)
            probes = [p.result() for p in probers]
            stat1 = pod.cgroup.cpu_stat()
            peak_rss = pod.peak_rss()
            cg_peak = pod.cgroup.memory_peak()
            label = shape.name
            for i, w in enumerate(waves):
                fails.check(w["errors"] == 0, f"{label} wave {i + 1}: {w['errors']} without a response: {w['first_errors']}")
                fails.check(not w["other_status"], f"{label} wave {i + 1}: statuses {w['other_status']}")
                fails.check(w["shed_without_retry_after"] == 0, f"{label} wave {i + 1}: 503 without a valid Retry-After")
                fails.check(w["ok"] > 0, f"{label} wave {i + 1}: no /work answered 200")
            _check_probes(probes, fails, label)
            fails.check(started[-1] <= max_concurrent, f"{label}: {started[-1]} /work threads for {max_concurrent} slots")
            fails.check(peak_rss <= spec.memory_limit / 4, f"{label}: peak RSS {peak_rss} > a quarter of the limit")
            periods = stat1["nr_periods"] - stat0["nr_periods"]
            throttled = stat1["nr_throttled"] - stat0["nr_throttled"]
            out[label] = {
                "path": shape.path,
                "concurrency": shape.concurrency,
                "waves": waves,
                "seconds": round(took, 2),
                "threads_started_after_each_wave": started,
                "probes": [_probe_summary(p) for p in probes],
                "probes_missed": sum(len(p.failures) for p in probes),
                "probes_sent": sum(p.sent for p in probes),
                "sampler_p99_ms": round(next(p for p in probes if p.kind == "sampler").percentile(0.99) * 1000, 2),
                "probe_max_ms": round(max(max(p.latencies_s, default=0.0) for p in probes) * 1000, 2),
                "throttled_periods": f"{throttled}/{periods}",
                "peak_rss_mib": round(peak_rss / 2**20, 2),
                "cgroup_memory_peak_mib": None if cg_peak is None else round(cg_peak / 2**20, 2),
            }
            print(f"\n[{label}] {shape.concurrency} x {shape.path}, {shape.waves} wave(s) in {took:.1f} s", flush=True)
            for i, w in enumerate(waves):
                print(
                    f"  wave {i + 1}: {w['ok']} x 200 (slowest {w['slowest_ok_s']:.2f} s), {w['shed']} x 503 "
                    f"(slowest {w['slowest_shed_s'] * 1000:.0f} ms, all with Retry-After: "
                    f"{w['shed_without_retry_after'] == 0}), {w['errors']} errors; threads started so far {started[i]:.0f}"
                )
            for p in probes:
                print(f"  {_probe_summary(p)}")
            print(f"  CFS throttled {throttled} of {periods} periods; peak RSS {peak_rss / 2**20:.1f} MiB"
                  f" (limit/4 = {spec.memory_limit / 4 / 2**20:.0f} MiB)", flush=True)
    return out


async def _steady_load(port: int, paths: list[str], stop_at: list[float]) -> list[http.Result]:
    """One looping client per path: request, answer, again, until `stop_at[0]`; on 503 wait briefly, as a client
    honouring Retry-After would, but sooner, to keep the bulkhead full."""
    results: list[http.Result] = []

    async def client(path: str) -> None:
        c = http.Connection(port)
        try:
            while time.monotonic() < stop_at[0]:
                r = await c.get(path, timeout_s=60)
                results.append(r)
                if r.status != 200:
                    await asyncio.sleep(0.2)
        finally:
            c.close()

    await asyncio.gather(*(client(p) for p in paths))
    return results


FULL_LOAD_WAIT_S = 30


def drill_sigterm(spec: PodSpec, binary, fails: Failures) -> dict:
    max_concurrent = int(spec.env["WORK_MAX_CONCURRENT"])
    shutdown_delay = int(spec.env["SHUTDOWN_DELAY_MS"]) / 1000
    # More clients than slots keeps the bulkhead full; one in eight asks for CPU, enough to keep the quota spent.
    paths = ["/work?cpu_ms=20" if i % 8 == 0 else "/work" for i in range(max_concurrent + max_concurrent // 8)]
    with Pod(spec, binary) as pod:
        stop_at = [float("inf")]

        async def run() -> tuple[list[http.Result], dict, tuple]:
            load = asyncio.ensure_future(_steady_load(pod.port, paths, stop_at))
            # SIGTERM only once the bulkhead is full and CPU is owed: a busy host may take a while to connect
            # every client.
            deadline = time.monotonic() + FULL_LOAD_WAIT_S
            while True:
                await asyncio.sleep(0.25)
                m = await asyncio.to_thread(pod.metrics)
                full = m.get("sremini_work_active", 0) >= max_concurrent
                if (full and m.get("sremini_work_cpu_backlog_seconds", 0) > 0) or time.monotonic() > deadline:
                    break
            # Kubernetes stops routing new requests about when the endpoint removal propagates; stop a second
            # before the listener closes, so every request sent reaches an open listener (the rollout drill
            # covers the propagation race itself).
            stop_at[0] = time.monotonic() + max(0.0, shutdown_delay - 1.0)
            pre_stop = await asyncio.to_thread(pod.pre_stop)
            exit_ = await asyncio.to_thread(pod.terminate)
            return await load, m, (pre_stop, exit_)

        results, m, (pre_stop, exit_) = asyncio.run(run())
        stopped = [json.loads(line) for line in pod.log_events("stopped")]
    c = _classify(results)
    active = m.get("sremini_work_active", float("nan"))
    backlog = m.get("sremini_work_cpu_backlog_seconds", float("nan"))
    fails.check(active >= max_concurrent, f"sigterm: bulkhead not full within {FULL_LOAD_WAIT_S} s ({active:.0f} active)")
    fails.check(backlog > 0, "sigterm: no CPU backlog before SIGTERM")
    fails.check(exit_.code == 0, f"sigterm: exit code {exit_.code}")
    fails.check(exit_.seconds <= spec.grace_s, f"sigterm: exit after {exit_.seconds:.2f} s > grace {spec.grace_s} s")
    fails.check(c["errors"] == 0, f"sigterm: {c['errors']} requests without a response: {c['first_errors']}")
    fails.check(not c["other_status"], f"sigterm: statuses {c['other_status']}")
    fails.check(c["shed_without_retry_after"] == 0, "sigterm: 503 without a valid Retry-After")
    fails.check(len(stopped) == 1 and stopped[0].get("abandoned_requests") == 0, f"sigterm: stopped line {stopped}")
    drain_s = exit_.seconds - shutdown_delay
    print(
        f"\n[SIGTERM at full load] {len(paths)} looping clients; before SIGTERM {active:.0f}/{max_concurrent} /work"
        f" active, CPU backlog {backlog:.2f} s; preStop {pre_stop}; exit {exit_.code}"
        f" after {exit_.seconds:.2f} s (grace {spec.grace_s:g} s; drain after the {shutdown_delay:g} s delay:"
        f" {drain_s:.2f} s); {c['ok']} x 200, {c['shed']} x 503, {c['errors']} errors;"
        f" stopped: {stopped[0] if stopped else None}",
        flush=True,
    )
    return {
        "clients": len(paths),
        "active_before_sigterm": active,
        "exit_code": exit_.code,
        "exit_seconds": round(exit_.seconds, 2),
        "drain_seconds": round(drain_s, 2),
        "answered": c,
        "stopped": stopped,
    }


def _hpa_cpu_target(manifest=DEFAULT_MANIFEST) -> float:
    docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
    hpa = next(d for d in docs if d.get("kind") == "HorizontalPodAutoscaler")
    (cpu,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    return cpu["resource"]["target"]["averageUtilization"] / 100


def drill_capacity(spec: PodSpec, binary, fails: Failures) -> dict:
    """Sleep-only /work at the bulkhead's full rate, CPU per request from the cgroup's own accounting."""
    max_concurrent = int(spec.env["WORK_MAX_CONCURRENT"])
    delay_s = int(spec.env["WORK_DELAY_MS"]) / 1000
    per_request = []
    with Pod(spec, binary) as pod:
        asyncio.run(http.burst(pod.port, "/work", max_concurrent))  # warm the pool
        for _ in range(3):
            cpu0 = pod.metrics()["process_cpu_seconds_total"]
            results = asyncio.run(http.burst(pod.port, "/work", max_concurrent))
            cpu1 = pod.metrics()["process_cpu_seconds_total"]
            c = _classify(results)
            fails.check(c["ok"] == max_concurrent, f"capacity: {c['ok']}/{max_concurrent} answered 200")
            per_request.append((cpu1 - cpu0) / max(1, c["ok"]))
    cpu_per_request = statistics.median(per_request)
    saturation_rps = max_concurrent / delay_s
    saturation_cpu = saturation_rps * cpu_per_request
    target = _hpa_cpu_target() * spec.cpu_request
    trigger = target * (1 + HPA_TOLERANCE)
    fails.check(
        saturation_cpu > trigger,
        f"capacity: the bulkhead saturates at {saturation_rps:.0f} /work/s using {saturation_cpu * 1000:.0f}m CPU,"
        f" not above the HPA's scale-out point of {trigger * 1000:.0f}m (target {target * 1000:.0f}m + 10%"
        f" tolerance): the HPA cannot see the saturation",
    )
    print(
        f"\n[capacity] CPU per sleep-only /work: {cpu_per_request * 1000:.3f} ms (median of 3 x {max_concurrent},"
        f" {[round(x * 1000, 3) for x in per_request]}); bulkhead saturates at {max_concurrent} / {delay_s:g} s ="
        f" {saturation_rps:.0f} /work/s = {saturation_cpu * 1000:.0f}m CPU; HPA target {_hpa_cpu_target():.0%} of"
        f" {spec.cpu_request * 1000:.0f}m = {target * 1000:.0f}m, scale-out above {trigger * 1000:.0f}m, at"
        f" {trigger / saturation_cpu:.0%} of the bulkhead's capacity; limit {spec.cpu_limit * 1000:.0f}m",
        flush=True,
    )
    return {
        "cpu_per_request_ms": round(cpu_per_request * 1000, 4),
        "saturation_rps": saturation_rps,
        "saturation_cpu_m": round(saturation_cpu * 1000, 1),
        "hpa_target_m": round(target * 1000, 1),
        "hpa_scale_out_m": round(trigger * 1000, 1),
    }


DRILLS = {"shapes": drill_shapes, "sigterm": drill_sigterm, "capacity": drill_capacity}


def _median_summary(reports: list[dict]) -> list[str]:
    med = lambda xs: statistics.median(xs)  # noqa: E731
    lines = []
    if all("shapes" in r for r in reports):
        for label in reports[0]["shapes"]:
            rs = [r["shapes"][label] for r in reports]
            ok = [sum(w["ok"] for w in x["waves"]) for x in rs]
            shed = [sum(w["shed"] for w in x["waves"]) for x in rs]
            lines.append(
                f"{label}: probes missed {[x['probes_missed'] for x in rs]} of {[x['probes_sent'] for x in rs]};"
                f" sampler p99 median {med([x['sampler_p99_ms'] for x in rs]):.1f} ms (target"
                f" {PROBE_P99_TARGET_S * 1000:.0f} ms; runs"
                f" {[x['sampler_p99_ms'] for x in rs]}); slowest probe median {med([x['probe_max_ms'] for x in rs]):.1f} ms;"
                f" 200s median {med(ok):.0f}, 503s median {med(shed):.0f}; threads started"
                f" {[x['threads_started_after_each_wave'] for x in rs]}; peak RSS median"
                f" {med([x['peak_rss_mib'] for x in rs]):.1f} MiB"
            )
    if all("sigterm" in r for r in reports):
        rs = [r["sigterm"] for r in reports]
        lines.append(
            f"SIGTERM at full load: exit codes {[x['exit_code'] for x in rs]}; exit after median"
            f" {med([x['exit_seconds'] for x in rs]):.2f} s (runs {[x['exit_seconds'] for x in rs]}); drain after the"
            f" delay median {med([x['drain_seconds'] for x in rs]):.2f} s; unanswered {[x['answered']['errors'] for x in rs]};"
            f" abandoned {[x['stopped'][0]['abandoned_requests'] if x['stopped'] else None for x in rs]}"
        )
    if all("capacity" in r for r in reports):
        rs = [r["capacity"] for r in reports]
        lines.append(
            f"capacity: CPU per /work median {med([x['cpu_per_request_ms'] for x in rs]):.3f} ms (runs"
            f" {[x['cpu_per_request_ms'] for x in rs]}); saturation median {med([x['saturation_cpu_m'] for x in rs]):.0f}m"
            f" against the HPA scale-out point {rs[0]['hpa_scale_out_m']}m"
        )
    return lines


def main(argv: list[str]) -> int:
    runs, overrides = 1, {}
    while argv[:1] in (["--runs"], ["--env"]):
        if argv[0] == "--runs":
            runs = int(argv[1])
        else:
            k, _, v = argv[1].partition("=")
            overrides[k] = v
        argv = argv[2:]
    chosen = argv or list(DRILLS)
    unknown = [a for a in chosen if a not in DRILLS]
    if unknown or runs < 1:
        print(f"unknown drill {unknown} or --runs {runs}; drills: {list(DRILLS)}", file=sys.stderr)
        return 2
    spec = PodSpec.from_manifest()
    if overrides:
        # For showing what a drill catches: break one setting and watch the drill fail.
        spec = dataclasses.replace(spec, env={**spec.env, **overrides})
    binary = release_binary()
    print(
        f"pod: {spec.cpu_limit * 1000:.0f}m CPU, {spec.memory_limit / 2**20:.0f} MiB, env from {DEFAULT_MANIFEST.name};"
        f" probes {[(p.kind, p.path, p.period_s, p.timeout_s) for p in spec.probes]}; binary {binary}",
        flush=True,
    )
    fails = Failures()
    reports = []
    for run in range(runs):
        if runs > 1:
            print(f"\n=== run {run + 1} of {runs}", flush=True)
        reports.append({name: DRILLS[name](spec, binary, fails) for name in chosen})
    out = os.environ.get("POD_DRILLS_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(reports if runs > 1 else reports[0], f, indent=1)
    if runs > 1:
        print(f"\n=== medians of {runs} runs")
        for line in _median_summary(reports):
            print(f"- {line}")
    if fails:
        print("\nFAILED:\n- " + "\n- ".join(fails), file=sys.stderr)
        return 1
    print(f"\npod drills passed: {', '.join(chosen)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
