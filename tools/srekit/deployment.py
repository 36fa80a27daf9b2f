"""What a rolling update of the Deployment in k8s.yaml does, read from the manifest: the scale, the strategy, and the
Deployment controller's RollingUpdate arithmetic (how many pods to add and to take away at each step, from
maxSurge, maxUnavailable and which pods are available). The pod itself (env, limits, probes, preStop, grace
period) is srekit.manifest's PodSpec.

Pure: manifest documents in, values and decisions out. srekit.rollout runs the decisions against real processes.
The arithmetic follows the controller (pkg/controller/deployment/rolling.go): new pods may be created while the
pods that are not terminating stay within replicas + maxSurge; old pods may be deleted while the available pods
stay at or above replicas - maxUnavailable, counting the new ReplicaSet's unavailable pods against the budget.
A pod is available once it has been ready for minReadySeconds. Terminating pods count toward neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from srekit.ingress import ManifestError


def _one(docs, kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise ManifestError(f"expected exactly one {kind} in the manifest, found {len(found)}")
    return found[0]


def _scaled(value, total: int, round_up: bool) -> int:
    """An int-or-percent field (maxSurge, maxUnavailable) as a pod count, rounded as the controller does."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    raise ManifestError(f"{value!r} is neither a count nor a percentage")


def _replicas(docs, dep: dict) -> int:
    """The scale a rollout starts from: spec.replicas, or, when the manifest leaves the scale to an HPA (so a
    re-apply cannot reset it), the HPA's minReplicas, the scale an idle Deployment sits at."""
    if "replicas" in dep["spec"]:
        return int(dep["spec"]["replicas"])
    name = dep["metadata"]["name"]
    for d in docs:
        ref = d.get("spec", {}).get("scaleTargetRef", {}) if d.get("kind") == "HorizontalPodAutoscaler" else {}
        if ref.get("kind") == "Deployment" and ref.get("name") == name:
            return int(d["spec"].get("minReplicas", 1))
    return 1  # the API server's default


@dataclass(frozen=True)
class Rollout:
    replicas: int
    max_surge: int
    max_unavailable: int
    min_ready_seconds: float
    progress_deadline_seconds: float


def rollout_from_manifest(docs) -> Rollout:
    dep = _one(docs, "Deployment")
    spec = dep["spec"]
    strategy = spec.get("strategy", {})
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise ManifestError(f"strategy {strategy.get('type')!r}: the drill emulates RollingUpdate")
    ru = strategy.get("rollingUpdate", {})
    replicas = _replicas(docs, dep)
    surge = _scaled(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # the controller's own rule: a rollout must be able to make progress
    return Rollout(
        replicas=replicas,
        max_surge=surge,
        max_unavailable=unavailable,
        min_ready_seconds=float(spec.get("minReadySeconds", 0)),
        progress_deadline_seconds=float(spec.get("progressDeadlineSeconds", 600)),
    )


@dataclass(frozen=True)
class Step:
    """What the controller does now: create this many new pods, delete this many old ones."""

    create: int
    delete: int


def controller_step(r: Rollout, old_active: int, old_available: int, new_active: int, new_available: int) -> Step:
    """One sync of the Deployment controller during a RollingUpdate (terminating pods already excluded).

    As in the controller, a sync that scales the new ReplicaSet up does nothing else; the old ones are scaled
    down on a later sync, which then counts the pods just created.
    """
    if new_active < r.replicas:
        room = r.replicas + r.max_surge - (old_active + new_active)
        create = min(room, r.replicas - new_active)
        if create > 0:
            return Step(create, 0)
    if old_active == 0:
        return Step(0, 0)
    min_available = r.replicas - r.max_unavailable
    budget = (old_active + new_active) - min_available - (new_active - new_available)
    if budget <= 0:
        return Step(0, 0)
    # Unavailable old pods go first (cleanupUnhealthyReplicas), up to the budget; then available ones, as long
    # as the available pods stay at or above the floor (scaleDownOldReplicaSetsForRollingUpdate).
    unhealthy = min(old_active - old_available, budget)
    healthy = max(0, min(old_active - unhealthy, old_available + new_available - min_available))
    return Step(0, unhealthy + healthy)


def done(r: Rollout, old_active: int, new_available: int) -> bool:
    return old_active == 0 and new_available == r.replicas
