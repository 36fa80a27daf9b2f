"""Offline test of admission-policy.yaml: its CEL, evaluated with cel-python, against the shipped workload.

    python3 -m srekit.policy POLICY MANIFEST [MANIFEST...]      (PYTHONPATH=tools)

What it proves, without a cluster:
  * the policy and its binding fit together: the binding names the policy, selects the Namespace of the first
    manifest, and matches CREATE and UPDATE of apps/v1 deployments;
  * the Deployment of every MANIFEST (k8s.yaml and its kustomize renderings) is admitted: every validation
    evaluates to true, none to an error;
  * every entry of MUTATIONS (a copy of that Deployment breaking exactly one control) is denied, and denied by
    exactly the validation that owns the control, which evaluates to false (not to an evaluation error, which
    Kubernetes would also turn into a denial, but with a message nobody could act on);
  * every validation is the owner of at least one mutation, so none of them is dead.

Evaluation follows the API server: `variables` are evaluated in order and visible to the later ones and to the
validations, as `variables.<name>`; `object` is the submitted object. cel-python stands in for cel-go, so the
policy keeps to CEL both implement (see the policy file's header). Kubernetes itself additionally type-checks
the expressions against the OpenAPI schema, which this test cannot do; kubernetes-validate --strict checks the
policy objects' own schema (scripts/check-policy.sh).
"""

from __future__ import annotations

import copy
import sys

import celpy
import yaml

# (what breaks, how, the message of the validation that must deny it: a distinctive substring)
MUTATIONS = [
    ("image by tag, no digest", lambda c, p: c.update(image="ghcr.io/sre-mini/sre-mini:0.1.0"), "pinned by digest"),
    ("image by a short digest", lambda c, p: c.update(image="ghcr.io/sre-mini/sre-mini@sha256:abc"), "pinned by digest"),
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
    ("privileged container", lambda c, p: c["securityContext"].update(privileged=True), "privileged"),
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
    ("image from another registry", lambda c, p: c.update(image="docker.io/library/busybox@sha256:" + "a" * 64), "images come only"),
    ("init container with a writable root", lambda c, p: p.update(initContainers=[
        copy.deepcopy(c) | {"name": "init", "securityContext": c["securityContext"] | {"readOnlyRootFilesystem": False}}]),
     "readOnlyRootFilesystem"),
]


class Policy:
    def __init__(self, path: str):
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        vaps = [d for d in docs if d.get("kind") == "ValidatingAdmissionPolicy"]
        bindings = [d for d in docs if d.get("kind") == "ValidatingAdmissionPolicyBinding"]
        if len(vaps) != 1 or len(bindings) != 1:
            raise SystemExit(f"FAIL: {path}: expected one policy and one binding, found {len(vaps)} and {len(bindings)}")
        self.vap, self.binding = vaps[0], bindings[0]
        env = celpy.Environment()
        spec = self.vap["spec"]
        self.variables = [(v["name"], env.program(env.compile(v["expression"]))) for v in spec.get("variables", [])]
        self.validations = [(v["message"], env.program(env.compile(v["expression"]))) for v in spec["validations"]]

    def evaluate(self, obj: dict) -> list[tuple[str, object]]:
        """(message, True | False | 'error: ...') for each validation, as the API server would evaluate them."""
        variables: dict = {}
        act = {"object": celpy.json_to_cel(obj), "oldObject": None}
        for name, prog in self.variables:
            act["variables"] = celpy.json_to_cel({}) if not variables else celpy.celtypes.MapType(variables)
            value = prog.evaluate(act)
            if isinstance(value, celpy.CELEvalError):
                raise SystemExit(f"FAIL: variable {name} does not evaluate: {value}")
            variables[celpy.celtypes.StringType(name)] = value
        act["variables"] = celpy.celtypes.MapType(variables)
        out = []
        for message, prog in self.validations:
            try:
                value = prog.evaluate(act)
            except celpy.CELEvalError as e:
                value = e
            if isinstance(value, celpy.CELEvalError):
                out.append((message, f"error: {value.args[0] if value.args else value}"))
            elif isinstance(value, celpy.celtypes.BoolType):
                out.append((message, bool(value)))
            else:
                out.append((message, f"error: not a bool: {value!r}"))
        return out


def deployment(path: str) -> tuple[dict, str]:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    deps = [d for d in docs if d.get("kind") == "Deployment"]
    nss = [d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace"]
    if len(deps) != 1 or len(nss) != 1:
        raise SystemExit(f"FAIL: {path}: expected one Deployment and one Namespace")
    return deps[0], nss[0]


def check_wiring(pol: Policy, namespace: str) -> list[str]:
    bad = []
    b, v = pol.binding["spec"], pol.vap["spec"]
    if b.get("policyName") != pol.vap["metadata"]["name"]:
        bad.append(f"the binding names policy {b.get('policyName')!r}, not {pol.vap['metadata']['name']!r}")
    if "Deny" not in b.get("validationActions", []):
        bad.append("the binding does not Deny")
    sel = b.get("matchResources", {}).get("namespaceSelector", {}).get("matchLabels", {})
    if sel != {"kubernetes.io/metadata.name": namespace}:
        bad.append(f"the binding selects namespaces {sel}, not exactly {namespace}")
    if v.get("failurePolicy") != "Fail":
        bad.append("failurePolicy is not Fail: an unevaluable policy would admit")
    rules = v.get("matchConstraints", {}).get("resourceRules", [])
    if not any("apps" in r.get("apiGroups", []) and "v1" in r.get("apiVersions", []) and "deployments" in r.get("resources", [])
               and {"CREATE", "UPDATE"} <= set(r.get("operations", [])) for r in rules):
        bad.append("matchConstraints do not cover CREATE and UPDATE of apps/v1 deployments")
    return bad


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__)
        return 2
    pol = Policy(argv[1])
    bad: list[str] = []
    base, namespace = deployment(argv[2])
    bad += check_wiring(pol, namespace)
    print(f"policy {pol.vap['metadata']['name']}: {len(pol.validations)} validations, {len(pol.variables)} variables; "
          f"binding to namespace {namespace}")
    for path in argv[2:]:
        dep, _ = deployment(path)
        results = pol.evaluate(dep)
        failing = [(m, r) for m, r in results if r is not True]
        if failing:
            bad += [f"{path}: the shipped Deployment is denied: {m} ({r})" for m, r in failing]
        else:
            print(f"  admitted: {path} ({len(results)}/{len(results)} validations true)")
    owners_hit = set()
    denied = 0
    for what, mutate, owner in MUTATIONS:
        owning = [m for m, _ in pol.validations if owner in m]
        if len(owning) != 1:
            bad.append(f"mutation '{what}': {len(owning)} validations match {owner!r}")
            continue
        dep = copy.deepcopy(base)
        pod = dep["spec"]["template"]["spec"]
        mutate(pod["containers"][0], pod)
        results = pol.evaluate(dep)
        errors = [(m, r) for m, r in results if isinstance(r, str)]
        false = [m for m, r in results if r is False]
        if errors:
            bad.append(f"mutation '{what}': evaluation errors instead of a clear answer: {errors}")
        elif false != owning:
            bad.append(f"mutation '{what}': denied by {false}, expected exactly {owning}")
        else:
            denied += 1
            owners_hit.add(owning[0])
            print(f"  denied:   {what:38} -> \"{owning[0]}\"")
    dead = [m for m, _ in pol.validations if m not in owners_hit]
    if dead:
        bad.append(f"validations no mutation exercises (they could be dead): {dead}")
    print(f"  {denied}/{len(MUTATIONS)} mutations denied by their own validation; "
          f"{len(owners_hit)}/{len(pol.validations)} validations shown to deny")
    for b in bad:
        print(f"FAIL: {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
