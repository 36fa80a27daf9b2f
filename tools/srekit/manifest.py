"""What the Deployment in k8s.yaml asks of the pod: limits, env, probes, grace period, preStop and strategy.

Read from the manifest, never restated, so the drills run the pod the way the manifest says Kubernetes will.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = ROOT / "k8s.yaml"

_BINARY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL_SUFFIX = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_cpu(q: str | int | float) -> float:
    """A Kubernetes CPU quantity ("500m", "1", "0.5") in CPUs."""
    s = str(q)
    if s.endswith("m"):
        return int(s[:-1]) / 1000
    return float(s)


def parse_bytes(q: str | int) -> int:
    """A Kubernetes memory quantity ("256Mi", "128M", "1Gi", "1048576") in bytes."""
    s = str(q)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", s)
    if not m:
        raise ValueError(f"not a memory quantity: {q!r}")
    number, suffix = float(m.group(1)), m.group(2)
    scale = _BINARY_SUFFIX.get(suffix) or _DECIMAL_SUFFIX.get(suffix) or 1
    return int(number * scale)


@dataclasses.dataclass(frozen=True)
class Probe:
    kind: str  # startup, readiness, liveness
    path: str
    period_s: float
    timeout_s: float
    failure_threshold: int


@dataclasses.dataclass(frozen=True)
class PodSpec:
    name: str
    cpu_limit: float  # CPUs
    memory_limit: int  # bytes
    cpu_request: float
    memory_request: int
    env: dict[str, str]
    probes: tuple[Probe, ...]
    grace_s: float
    pre_stop_path: str | None
    max_surge: int
    max_unavailable: int

    def probe(self, kind: str) -> Probe:
        return next(p for p in self.probes if p.kind == kind)

    @staticmethod
    def from_manifest(path: str | pathlib.Path = DEFAULT_MANIFEST, deployment: str = "sre-mini") -> "PodSpec":
        docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
        dep = next(d for d in docs if d.get("kind") == "Deployment" and d["metadata"]["name"] == deployment)
        pod = dep["spec"]["template"]["spec"]
        (c,) = [c for c in pod["containers"] if c["name"] == deployment]
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        env = {}
        for e in c.get("env", []):
            if "value" not in e:
                raise ValueError(f"env {e['name']} is not a plain value; the harness cannot reproduce it")
            env[e["name"]] = str(e["value"])
        probes = []
        for kind in ("startup", "readiness", "liveness"):
            p = c.get(f"{kind}Probe")
            if not p:
                continue
            get = p["httpGet"]
            if get.get("port") not in ports and not isinstance(get.get("port"), int):
                raise ValueError(f"{kind}Probe port {get.get('port')!r} names no container port")
            probes.append(
                Probe(
                    kind=kind,
                    path=get["path"],
                    period_s=float(p.get("periodSeconds", 10)),
                    timeout_s=float(p.get("timeoutSeconds", 1)),
                    failure_threshold=int(p.get("failureThreshold", 3)),
                )
            )
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("httpGet", {}).get("path")
        rolling = dep["spec"].get("strategy", {}).get("rollingUpdate", {})
        res = c["resources"]
        return PodSpec(
            name=deployment,
            cpu_limit=parse_cpu(res["limits"]["cpu"]),
            memory_limit=parse_bytes(res["limits"]["memory"]),
            cpu_request=parse_cpu(res["requests"]["cpu"]),
            memory_request=parse_bytes(res["requests"]["memory"]),
            env=env,
            probes=tuple(probes),
            grace_s=float(pod.get("terminationGracePeriodSeconds", 30)),
            pre_stop_path=pre_stop,
            max_surge=int(rolling.get("maxSurge", 1)),
            max_unavailable=int(rolling.get("maxUnavailable", 0)),
        )
