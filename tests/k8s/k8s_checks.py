#!/usr/bin/env python3
"""Offline checks that tie the kit (deploy/) to the sre-mini binary. Called by scripts/check-k8s.sh.

Subcommands:
  split CORE_OUT            write the core-kind documents of the manifest to CORE_OUT (for kubernetes-validate);
                            print "<count>" on stdout; fail on a kind that is neither core nor a known CRD.
  crd-files                 print the schema file names the CRD documents of the manifest need, one per line.
  crd SCHEMA_DIR            validate the CRD documents (ServiceMonitor, ...) against the JSON schemas in
                            SCHEMA_DIR, strictly: unknown fields are rejected like kubernetes-validate --strict does.
  static                    consistency of the manifest with itself: selectors, ports, names, grace arithmetic.
  self-test                 mutate the manifest in memory and prove that each static rule can fail.
  kustomize-image KUST      print the image a kustomization.yaml pins (newName:newTag@digest); fail unless it is
                            exactly one entry for the image in deploy/base/k8s.yaml, pinned by a sha256 digest.
  same-as-source RENDERED IMAGE [VAR=VALUE...]
                            the rendered kustomization equals deploy/base/k8s.yaml with the Deployment's image set to
                            IMAGE and the given env values set: k8s.yaml stays the single source of the workload.
  tenant-copy RENDERED NS [PREFIX]
                            a rendering moved to namespace NS (kustomize `namespace:`, and `namePrefix:` PREFIX if
                            given) keeps no reference to the namespace sre-mini (or to an object's old name): object
                            namespaces, selectors, PromQL matchers; the references between the objects hold.
  runtime BIN               start the real binary with the Deployment's env and request every probe, drill,
                            metrics and ingress path; check that env names are ones the binary reads; SIGTERM it
                            with a request in flight and check it exits 0 within the grace budget.
Every failure is printed as "FAIL: ..." and the exit status is 1.
The manifest is $K8S_MANIFEST: a rendering of the kit (scripts/check-k8s.sh renders the platform's part with an
overlay for `static` and `runtime`), or deploy/base/k8s.yaml when it is unset.
$SHIPPED_ARCHES (scripts/lib.sh: the architectures the image index holds) must be set for `static`: the
Deployment's required node affinity on kubernetes.io/arch must be exactly that list.
"""

import copy
import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCE = os.path.join(ROOT, "deploy", "base", "k8s.yaml")
MANIFEST = os.environ.get("K8S_MANIFEST") or SOURCE

CORE_KINDS = {
    "Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget",
    "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "ConfigMap",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}
CLUSTER_SCOPED = {"Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
# kind -> (apiVersion, schema file name in SCHEMA_DIR). AlertmanagerConfig has no offline schema here: the cluster
# step validates it, with the others, against prometheus-operator's own CRDs (a server-side dry run).
CRD_KINDS = {
    "ServiceMonitor": ("monitoring.coreos.com/v1", "servicemonitor_v1.json"),
    "PrometheusRule": ("monitoring.coreos.com/v1", "prometheusrule_v1.json"),
    "AlertmanagerConfig": ("monitoring.coreos.com/v1alpha1", None),
}
# Traefik's default backend idle timeout (serversTransport forwardingTimeouts.idleConnTimeout).
TRAEFIK_IDLE_TIMEOUT_MS = 90_000
# Upper bound of /work?cpu_ms= (contract) and our budget for an httpGet preStop round trip.
WORK_MAX_CPU_MS = 1000
PRESTOP_HTTP_BUDGET_S = 1
GRACE_MARGIN_S = 1


class _Loader(yaml.SafeLoader):
    """PyYAML reads a bare `=` as YAML 1.1's value tag and fails; kustomize writes YAML 1.2, where it is a string."""


_Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] != "tag:yaml.org,2002:value"] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(path=MANIFEST):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=_Loader) if d]


class Checker:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
        return cond


def one(docs, kind, name=None):
    found = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise LookupError(f"expected exactly one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


def subset(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def cpu_cores(q):
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def container(dep):
    cs = dep["spec"]["template"]["spec"]["containers"]
    return cs[0]


def env_of(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def named_port(c, port):
    """Resolve a probe/service port (name or number) to the container port number, or None."""
    for p in c.get("ports", []):
        if port == p.get("name") or port == p.get("containerPort"):
            return p["containerPort"]
    return None


def http_get_actions(c):
    """(label, httpGet) for every probe and lifecycle hook that uses httpGet."""
    out = []
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in c and "httpGet" in c[probe]:
            out.append((probe, c[probe]["httpGet"]))
    pre = c.get("lifecycle", {}).get("preStop", {})
    if "httpGet" in pre:
        out.append(("preStop", pre["httpGet"]))
    return out


def prestop_budget_s(c):
    pre = c.get("lifecycle", {}).get("preStop")
    if not pre:
        return 0
    if "httpGet" in pre:
        return PRESTOP_HTTP_BUDGET_S
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    return None  # exec: the distroless image has no shell, and its duration is unknown


def static_checks(docs):
    ck = Checker()
    ok = ck.ok
    try:
        ns = one(docs, "Namespace")
        dep = one(docs, "Deployment")
        svc = one(docs, "Service")
        sa = one(docs, "ServiceAccount")
        pdb = one(docs, "PodDisruptionBudget")
        hpa = one(docs, "HorizontalPodAutoscaler")
        ing = one(docs, "Ingress")
        sm = one(docs, "ServiceMonitor")
        vap = one(docs, "ValidatingAdmissionPolicy")
        binding = one(docs, "ValidatingAdmissionPolicyBinding")
        nps = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    except LookupError as e:
        ck.failures.append(str(e))
        return ck
    nsname = ns["metadata"]["name"]
    params = binding["spec"].get("paramRef", {})
    for d in docs:
        if d["kind"] in CLUSTER_SCOPED:
            continue
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == params.get("name"):
            continue  # the policy's parameter lives where the service team cannot write it
        ok(d["metadata"].get("namespace") == nsname, f"{d['kind']}/{d['metadata']['name']} is not in namespace {nsname}")

    # Admission policy: bound to this namespace, failing closed, its parameter present and outside the namespace.
    ok(binding["spec"].get("policyName") == vap["metadata"]["name"], "the binding does not name the policy")
    ok(binding["spec"].get("matchResources", {}).get("namespaceSelector", {}).get("matchLabels")
       == {"kubernetes.io/metadata.name": nsname}, f"the policy binding does not select namespace {nsname}")
    ok(vap["spec"].get("failurePolicy") == "Fail", "the policy's failurePolicy is not Fail")
    ok("Deny" in binding["spec"].get("validationActions", []), "the binding does not Deny")
    ok(params.get("parameterNotFoundAction") == "Deny", "a missing parameter does not deny")
    ok(params.get("namespace") not in (None, nsname), "the policy's parameter is in the service's own namespace")
    cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == params.get("name")
           and d["metadata"].get("namespace") == params.get("namespace")]
    ok(len(cms) == 1, f"no ConfigMap {params.get('namespace')}/{params.get('name')} for the binding's paramRef")
    prefixes = (cms[0].get("data", {}).get("allowedImagePrefixes", "") if cms else "").split(",")
    ok(prefixes != [""] and all(p.endswith("/") for p in prefixes),
       f"allowedImagePrefixes {prefixes} is empty or has a prefix without a trailing '/' (it would admit look-alikes)")

    # Namespace: Pod Security Standards restricted for enforce, audit and warn.
    nl = ns["metadata"].get("labels", {})
    for mode in ("enforce", "audit", "warn"):
        ok(nl.get(f"pod-security.kubernetes.io/{mode}") == "restricted", f"Namespace lacks pod-security {mode}=restricted")

    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    c = container(dep)
    env = env_of(c)

    # Selectors.
    ok(subset(spec["selector"].get("matchLabels"), pod_labels), "Deployment selector does not match its pod labels")
    ok(set(spec["selector"]) == {"matchLabels"}, "Deployment selector uses more than matchLabels (checked by hand only)")
    ok(subset(svc["spec"].get("selector"), pod_labels), "Service selector does not match the pod labels")
    ok(subset(pdb["spec"]["selector"].get("matchLabels"), pod_labels), "PDB selector does not match the pod labels")
    ref = hpa["spec"]["scaleTargetRef"]
    ok((ref.get("apiVersion"), ref.get("kind"), ref.get("name")) == (dep["apiVersion"], "Deployment", dep["metadata"]["name"]),
       "HPA scaleTargetRef does not name the Deployment")
    for term in pod.get("affinity", {}).get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", []):
        ok(subset(term["podAffinityTerm"]["labelSelector"].get("matchLabels"), pod_labels),
           "pod anti-affinity selector does not match the pod labels")
        ok(term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname", "anti-affinity is not on kubernetes.io/hostname")
    tsc = pod.get("topologySpreadConstraints", [])
    ok(any(t["topologyKey"] == "topology.kubernetes.io/zone" for t in tsc), "no topology spread over zones")
    for t in tsc:
        ok(subset(t["labelSelector"].get("matchLabels"), pod_labels), "topology spread selector does not match the pod labels")

    # Ports: PORT env == the named container port; Service targets it; probes/hooks resolve.
    port = named_port(c, "http")
    ok(port is not None, "container has no port named http")
    ok(env.get("PORT") == str(port), f"env PORT={env.get('PORT')} differs from containerPort {port}")
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    ok("http" in svc_ports and svc_ports["http"]["port"] == 80, "Service has no port http: 80")
    for p in svc["spec"]["ports"]:
        ok(named_port(c, p["targetPort"]) is not None, f"Service port {p['name']} targets {p['targetPort']}, not a container port")
    for label, hg in http_get_actions(c):
        ok(named_port(c, hg["port"]) == port, f"{label} port {hg['port']} is not the serving port {port}")
    ok(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness probe is not /readyz")
    ok(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness probe is not /healthz")
    ok(c.get("startupProbe", {}).get("httpGet", {}).get("path") == "/healthz", "startup probe is not /healthz")
    pre = c.get("lifecycle", {}).get("preStop", {})
    ok("exec" not in pre, "preStop uses exec, but the image has no shell")
    ok(env.get("DRILLS") in ("on", "off"), f"DRILLS is {env.get('DRILLS')!r}, not on or off")
    if pre.get("httpGet", {}).get("path", "").startswith(("/fail/", "/recover/")):
        ok(env.get("DRILLS") == "on", "preStop calls a drill route but DRILLS is not on (it would answer 404)")

    # Architectures: the scheduler may place the pod only on nodes whose architecture the image index holds.
    shipped = os.environ.get("SHIPPED_ARCHES", "").split()
    ok(bool(shipped), "SHIPPED_ARCHES is not set (scripts/check-k8s.sh sets it from scripts/lib.sh)")
    terms = (pod.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", {})
             .get("nodeSelectorTerms", []))
    ok(len(terms) >= 1, "no required node affinity: a node of an unshipped architecture could pull the image")
    for term in terms:
        arch = [e for e in term.get("matchExpressions", []) if e.get("key") == "kubernetes.io/arch"]
        ok(len(arch) == 1 and arch[0].get("operator") == "In" and sorted(arch[0].get("values", [])) == sorted(shipped),
           f"a node selector term does not require kubernetes.io/arch In {shipped}: {arch}")
        osx = [e for e in term.get("matchExpressions", []) if e.get("key") == "kubernetes.io/os"]
        ok(len(osx) == 1 and osx[0].get("operator") == "In" and osx[0].get("values") == ["linux"],
           "a node selector term does not require kubernetes.io/os In [linux]")

    # ServiceMonitor -> Service, in its own namespace: no namespaceSelector, which would name a namespace that a
    # kustomize override does not move, and which the operator's multi-tenant mode ignores anyway.
    sms = sm["spec"]
    ok("namespaceSelector" not in sms, "ServiceMonitor has a namespaceSelector (it must select its own namespace)")
    ok(sm["metadata"].get("namespace") == svc["metadata"]["namespace"], "ServiceMonitor is not in the Service's namespace")
    ok(subset(sms["selector"].get("matchLabels"), svc["metadata"].get("labels", {})),
       "ServiceMonitor selector does not match the Service labels")
    for ep in sms["endpoints"]:
        ok(ep.get("port") in svc_ports, f"ServiceMonitor endpoint port {ep.get('port')} is not a Service port name")
        ok(ep.get("path") == "/metrics", "ServiceMonitor path is not /metrics")
        ok("interval" in ep, "ServiceMonitor endpoint has no interval")

    # Ingress: only /work, to the Service's named port, TLS.
    paths = [(p["path"], p["pathType"], p["backend"]["service"]["name"], p["backend"]["service"]["port"].get("name"))
             for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    ok([p[0] for p in paths] == ["/work"], f"Ingress routes {[p[0] for p in paths]}, not only /work")
    for path, ptype, sname, pname in paths:
        ok(ptype in ("Exact", "Prefix"), "Ingress pathType must be Exact or Prefix")
        ok(sname == svc["metadata"]["name"] and pname in svc_ports, "Ingress backend is not the Service's named port")
    ok(ing["spec"].get("ingressClassName") == "traefik", "Ingress class is not traefik")
    ok(ing["spec"].get("tls") == [{"hosts": ["sre-mini.local"], "secretName": "sre-mini-tls"}], "Ingress TLS is not sre-mini-tls for sre-mini.local")
    ok([r["host"] for r in ing["spec"]["rules"]] == ["sre-mini.local"], "Ingress host is not sre-mini.local")

    # NetworkPolicy: default deny both ways; allow only 8080 from named namespaces; no egress anywhere.
    deny = [n for n in nps if n["spec"].get("podSelector") == {} and set(n["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not n["spec"].get("ingress") and not n["spec"].get("egress")]
    ok(len(deny) == 1, "no default-deny NetworkPolicy (podSelector {}, Ingress+Egress, no rules)")
    ok(all(not n["spec"].get("egress") for n in nps), "a NetworkPolicy allows egress; the service needs none")
    allow = [n for n in nps if n["spec"].get("ingress")]
    ok(len(allow) >= 1, "no NetworkPolicy allows ingress to the pods")
    allowed_ns = set()
    for n in allow:
        ok(subset(n["spec"]["podSelector"].get("matchLabels"), pod_labels), f"NetworkPolicy {n['metadata']['name']} does not select the pods")
        for rule in n["spec"]["ingress"]:
            ok([p.get("port") for p in rule.get("ports", [])] in ([port], ["http"]), "NetworkPolicy allows ports other than 8080")
            for peer in rule.get("from", []):
                name = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                ok(name is not None and "ipBlock" not in peer, "NetworkPolicy peer is not a named namespace")
                allowed_ns.add(name)
    ok(allowed_ns == {"kube-system", "monitoring"}, f"NetworkPolicy admits namespaces {sorted(allowed_ns)}")

    # Availability arithmetic: replicas, rollout, PDB, HPA.
    ok("replicas" not in spec, "Deployment sets spec.replicas: every re-apply would reset the HPA's scale")
    replicas = hpa["spec"]["minReplicas"]
    ru = spec["strategy"]["rollingUpdate"]
    ok(replicas == 3 and ru["maxUnavailable"] == 1 and ru["maxSurge"] == 1, "min replicas/rollout are not 3, maxUnavailable 1, maxSurge 1")
    for k in ("minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"):
        ok(k in spec, f"Deployment lacks {k}")
    hs = hpa["spec"]
    ok(pdb["metadata"]["name"] == "sre-mini-pdb" and hpa["metadata"]["name"] == "sre-mini-hpa", "PDB/HPA names changed")
    # At every replica count the HPA may pick, the PDB lets exactly one pod go at a time when all are healthy: none
    # would deadlock drains, more would let a drain take several at once. A rollout takes no more than that either.
    for n in range(hs["minReplicas"], hs["maxReplicas"] + 1):
        allowed = pdb_disruptions_allowed(pdb["spec"], n)
        ok(allowed >= 1, f"PDB allows no eviction at {n} healthy replicas: node drains would deadlock")
        ok(allowed <= 1, f"PDB lets a drain evict {allowed} of {n} replicas at once")
        ok(ru["maxUnavailable"] <= allowed, f"a rollout takes {ru['maxUnavailable']} of {n} replicas down, more than the PDB allows")
    ok((hs["minReplicas"], hs["maxReplicas"]) == (3, 10), "HPA range is not 3..10")
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hs["metrics"]
               if m["type"] == "Resource"}
    ok(targets == {"cpu": 70}, f"HPA targets are {targets}, not cpu 70 alone (a memory target here never fires)")
    # The occupancy metric, where deploy/components/hpa-occupancy adds it: 70% of the bulkhead's slots per pod.
    pods = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in hs["metrics"] if m["type"] == "Pods"}
    ok(pods in ({}, {"sremini_work_occupancy": {"type": "AverageValue", "averageValue": "700m"}}),
       f"HPA Pods metrics are {pods}, not none or sremini_work_occupancy at an average of 700m")
    ok({m["type"] for m in hs["metrics"]} <= {"Resource", "Pods"}, "HPA has a metric that is neither Resource nor Pods")
    up, down = hs["behavior"]["scaleUp"], hs["behavior"]["scaleDown"]
    pol = lambda b: sorted((p["type"], p["value"], p["periodSeconds"]) for p in b["policies"])  # noqa: E731
    ok(pol(up) == [("Percent", 100, 15), ("Pods", 4, 15)] and up["selectPolicy"] == "Max" and up["stabilizationWindowSeconds"] == 60,
       "HPA scaleUp is not 100% or 4 pods per 15 s, Max, 60 s")
    ok(pol(down) == [("Percent", 10, 60), ("Pods", 1, 60)] and down["selectPolicy"] == "Min" and down["stabilizationWindowSeconds"] == 300,
       "HPA scaleDown is not 10% or 1 pod per 60 s, Min, 300 s")

    # Resources.
    res = c.get("resources", {})
    ok(res.get("requests") == {"cpu": "100m", "memory": "128Mi"} and res.get("limits") == {"cpu": "500m", "memory": "256Mi"},
       "resources are not requests 100m/128Mi, limits 500m/256Mi")

    # Security context: Pod Security Standards "restricted", plus read-only root, no privilege escalation, no capabilities.
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    ok(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot", True) is True, "runAsNonRoot is not true")
    ok(psc.get("runAsUser") == 65532 and psc.get("runAsGroup") == 65532, "runAsUser/runAsGroup are not 65532")
    ok(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    ok(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    ok(csc.get("capabilities", {}).get("drop") == ["ALL"] and not csc.get("capabilities", {}).get("add"), "capabilities are not drop ALL")
    ok(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp is not RuntimeDefault")
    ok(pod.get("automountServiceAccountToken") is False and sa.get("automountServiceAccountToken") is False,
       "service account token is mounted")
    ok(pod.get("serviceAccountName") == sa["metadata"]["name"], "pod does not use the sre-mini ServiceAccount")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    ok(len(tmp) == 1 and "sizeLimit" in vols.get(tmp[0]["name"], {}).get("emptyDir", {}), "no emptyDir with sizeLimit at /tmp")
    ok(re.fullmatch(r"[a-z0-9./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", c["image"]) is not None, "image is not pinned by digest")

    # Grace-period arithmetic.
    ms = lambda k: int(env[k]) / 1000  # noqa: E731
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    budget = prestop_budget_s(c)
    ok(budget is not None, "preStop budget unknown (exec hook)")
    if budget is not None and all(k in env for k in ("SHUTDOWN_DELAY_MS", "DRAIN_TIMEOUT_MS", "WORK_DELAY_MS")):
        total = budget + ms("SHUTDOWN_DELAY_MS") + ms("DRAIN_TIMEOUT_MS") + GRACE_MARGIN_S
        ok(tgps == 15, f"terminationGracePeriodSeconds is {tgps}, not 15")
        ok(total <= tgps, f"preStop {budget} s + shutdown delay {ms('SHUTDOWN_DELAY_MS')} s + drain {ms('DRAIN_TIMEOUT_MS')} s "
           f"+ margin {GRACE_MARGIN_S} s = {total} s > terminationGracePeriodSeconds {tgps}")
        cpu = min(1.0, cpu_cores(res.get("limits", {}).get("cpu", "1")))
        # The slowest /work a full pod holds: admitted last, it waits for the whole CPU backlog (its own cpu_ms
        # included, and the backlog admits at least one cpu_ms=1000) to burn at the limit, then sleeps.
        ok("WORK_CPU_BACKLOG_MS" in env, "WORK_CPU_BACKLOG_MS is not set: the drain has no bound")
        backlog_ms = max(int(env.get("WORK_CPU_BACKLOG_MS", "0")), WORK_MAX_CPU_MS)
        longest_work = ms("WORK_DELAY_MS") + backlog_ms / 1000 / cpu
        ok(ms("DRAIN_TIMEOUT_MS") > longest_work,
           f"DRAIN_TIMEOUT_MS {env['DRAIN_TIMEOUT_MS']} does not exceed the slowest /work of a full pod ({longest_work:.1f} s)")
        ck.grace = (budget, ms("SHUTDOWN_DELAY_MS"), ms("DRAIN_TIMEOUT_MS"), GRACE_MARGIN_S, total, tgps, longest_work)
    else:
        ok(False, "SHUTDOWN_DELAY_MS, DRAIN_TIMEOUT_MS or WORK_DELAY_MS not set in env")
    ok(int(env.get("IDLE_TIMEOUT_MS", "0")) > TRAEFIK_IDLE_TIMEOUT_MS, "IDLE_TIMEOUT_MS is not above Traefik's 90 s idle timeout")
    return ck


def pdb_disruptions_allowed(spec, n):
    """Voluntary evictions a PDB allows with n healthy pods of n expected, as the disruption controller computes it:
    a percentage of minAvailable or maxUnavailable is taken of n and rounded up."""
    def scaled(v):
        if isinstance(v, str) and v.endswith("%"):
            return math.ceil(n * int(v[:-1]) / 100)
        return int(v)
    if "maxUnavailable" in spec:
        return max(0, scaled(spec["maxUnavailable"]))
    if "minAvailable" in spec:
        return max(0, n - scaled(spec["minAvailable"]))
    return 0


# --- self-test: each mutation must make the static checks fail ---------------------------------------------------
def _dep(d):
    return one(d, "Deployment")


def _set_env(d, name, value):
    for e in container(_dep(d))["env"]:
        if e["name"] == name:
            e["value"] = value


MUTATIONS = [
    ("ServiceMonitor port name", lambda d: one(d, "ServiceMonitor")["spec"]["endpoints"][0].update(port="metrics")),
    ("ServiceMonitor names a namespace", lambda d: one(d, "ServiceMonitor")["spec"].update(namespaceSelector={"matchNames": ["sre-mini"]})),
    ("ServiceMonitor elsewhere", lambda d: one(d, "ServiceMonitor")["metadata"].update(namespace="monitoring")),
    ("policy bound elsewhere", lambda d: one(d, "ValidatingAdmissionPolicyBinding")["spec"]["matchResources"][
        "namespaceSelector"].update(matchLabels={"kubernetes.io/metadata.name": "default"})),
    ("policy parameter missing", lambda d: d.remove(one(d, "ConfigMap"))),
    ("policy parameter in the tenant's namespace", lambda d: (
        one(d, "ValidatingAdmissionPolicyBinding")["spec"]["paramRef"].update(namespace="sre-mini"),
        one(d, "ConfigMap")["metadata"].update(namespace="sre-mini"))),
    ("a registry prefix without '/'", lambda d: one(d, "ConfigMap")["data"].update(allowedImagePrefixes="ghcr.io/sre-mini")),
    ("policy fails open", lambda d: one(d, "ValidatingAdmissionPolicy")["spec"].update(failurePolicy="Ignore")),
    ("occupancy target at 95%", lambda d: [m["pods"]["target"].update(averageValue="950m")
                                           for m in one(d, "HorizontalPodAutoscaler")["spec"]["metrics"] if m["type"] == "Pods"]),
    ("ServiceMonitor labels", lambda d: one(d, "ServiceMonitor")["spec"]["selector"].update(matchLabels={"app": "other"})),
    ("PDB selector", lambda d: one(d, "PodDisruptionBudget")["spec"]["selector"].update(matchLabels={"app": "x"})),
    ("Service selector", lambda d: one(d, "Service")["spec"].update(selector={"app": "x"})),
    ("HPA target", lambda d: one(d, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"].update(name="x")),
    ("pod labels", lambda d: _dep(d)["spec"]["template"]["metadata"].update(labels={"app": "renamed"})),
    ("grace period 10 s", lambda d: _dep(d)["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=10)),
    ("drain below /work", lambda d: _set_env(d, "DRAIN_TIMEOUT_MS", "3000")),
    ("CPU backlog beyond the drain", lambda d: _set_env(d, "WORK_CPU_BACKLOG_MS", "4000")),
    ("replicas set beside the HPA", lambda d: _dep(d)["spec"].update(replicas=3)),
    ("shutdown delay too long", lambda d: _set_env(d, "SHUTDOWN_DELAY_MS", "9000")),
    ("preStop sleep 5 s", lambda d: container(_dep(d)).update(lifecycle={"preStop": {"sleep": {"seconds": 5}}})),
    ("DRILLS off with drill preStop", lambda d: (_set_env(d, "DRILLS", "off"), container(_dep(d)).update(
        lifecycle={"preStop": {"httpGet": {"path": "/fail/ready", "port": "http"}}}))),
    ("DRILLS neither on nor off", lambda d: _set_env(d, "DRILLS", "yes")),
    ("no node affinity", lambda d: _dep(d)["spec"]["template"]["spec"]["affinity"].pop("nodeAffinity")),
    ("an unshipped architecture", lambda d: _dep(d)["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][1]["values"].append("s390x")),
    ("probe port", lambda d: container(_dep(d))["readinessProbe"]["httpGet"].update(port=9090)),
    ("PORT env", lambda d: _set_env(d, "PORT", "9090")),
    ("Ingress exposes /metrics", lambda d: one(d, "Ingress")["spec"]["rules"][0]["http"]["paths"].append(
        copy.deepcopy(one(d, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]) | {"path": "/metrics"})),
    ("egress allowed", lambda d: one(d, "NetworkPolicy", "sre-mini-allow-ingress")["spec"].update(egress=[{}])),
    ("HPA memory target", lambda d: one(d, "HorizontalPodAutoscaler")["spec"]["metrics"].append(
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 75}}})),
    ("PDB minAvailable 3", lambda d: (one(d, "PodDisruptionBudget")["spec"].pop("maxUnavailable"),
                                      one(d, "PodDisruptionBudget")["spec"].update(minAvailable=3))),
    ("PDB minAvailable 2 (8 of 10 evictable)", lambda d: (one(d, "PodDisruptionBudget")["spec"].pop("maxUnavailable"),
                                                          one(d, "PodDisruptionBudget")["spec"].update(minAvailable=2))),
    ("PDB maxUnavailable 20% (2 of 10 at once)", lambda d: one(d, "PodDisruptionBudget")["spec"].update(maxUnavailable="20%")),
    ("PDB maxUnavailable 0", lambda d: one(d, "PodDisruptionBudget")["spec"].update(maxUnavailable=0)),
    ("image by tag", lambda d: container(_dep(d)).update(image="ghcr.io/sre-mini/sre-mini:0.1.0")),
    ("root filesystem writable", lambda d: container(_dep(d))["securityContext"].update(readOnlyRootFilesystem=False)),
    ("idle timeout below Traefik", lambda d: _set_env(d, "IDLE_TIMEOUT_MS", "60000")),
]


def self_test(docs):
    bad = []
    base = static_checks(copy.deepcopy(docs))
    if base.failures:
        bad.append("the unmodified manifest fails: " + "; ".join(base.failures))
    for name, mutate in MUTATIONS:
        d = copy.deepcopy(docs)
        mutate(d)
        if not static_checks(d).failures:
            bad.append(f"mutation '{name}' was not detected")
    return bad


# --- CRD validation ----------------------------------------------------------------------------------------------
def strictify(schema):
    """Reject unknown fields like kubernetes-validate --strict: close every object schema that lists properties."""
    if isinstance(schema, dict):
        if (schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for v in schema.values():
            strictify(v)
    elif isinstance(schema, list):
        for v in schema:
            strictify(v)
    return schema


def crd_validate(docs, schema_dir):
    import jsonschema

    errors, n = [], 0
    for d in docs:
        kind = d.get("kind")
        if kind not in CRD_KINDS:
            continue
        api, fname = CRD_KINDS[kind]
        name = f"{kind}/{d.get('metadata', {}).get('name')}"
        if d.get("apiVersion") != api:
            errors.append(f"{name}: apiVersion {d.get('apiVersion')} is not {api}")
            continue
        if fname is None:
            print(f"  {name}: no offline schema; scripts/check-cluster.sh validates it against the operator's CRD")
            continue
        path = os.path.join(schema_dir, fname)
        if not os.path.isfile(path):
            errors.append(f"{name}: schema {path} is missing (set SCHEMA_DIR)")
            continue
        with open(path, encoding="utf-8") as f:
            schema = strictify(json.load(f))
        md = d.get("metadata", {})
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", str(md.get("name", ""))) or not md.get("namespace"):
            errors.append(f"{name}: metadata needs a DNS-1123 name and a namespace")
        v = jsonschema.Draft7Validator(schema)
        errs = sorted(v.iter_errors(d), key=lambda e: list(e.path))
        for e in errs:
            errors.append(f"{name}: {'/'.join(map(str, e.path)) or '<root>'}: {e.message}")
        if not errs:
            print(f"  {name} valid against {fname} (strict)")
        n += 1
    return n, errors


# --- runtime: the real binary ------------------------------------------------------------------------------------
def request(port, path, method="GET", timeout=5.0, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers={"Connection": "close", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def help_env_names(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError(f"{binary} --help exited {out.returncode}: {out.stderr.strip()}")
    text = out.stdout + out.stderr
    return text, set(re.findall(r"\b[A-Z][A-Z0-9_]*[A-Z0-9]\b", text))


def runtime_checks(docs, binary):
    ck = Checker()
    ok = ck.ok
    dep = one(docs, "Deployment")
    c = container(dep)
    env = env_of(c)
    port = named_port(c, "http")

    # Env names: each one the manifest sets must be one the binary reads (it lists them all in --help);
    # and each variable of the binary's help table must be set in the manifest.
    help_text, tokens = help_env_names(binary)
    for name in env:
        ok(name in tokens, f"env {name} is set in k8s.yaml but `sre-mini --help` does not list it")
    # Negative control: a misspelt name must not pass (the help text is not a catch-all).
    ok("WORK_DELAY" not in tokens and "PORTS" not in tokens, "the --help parse accepts names the binary does not read")
    listed = {m for m in re.findall(r"^\s*([A-Z][A-Z0-9_]*[A-Z0-9])\b", help_text, re.M)}
    missing = sorted(listed - set(env))
    ok(not missing, f"variables the binary reads but k8s.yaml leaves to defaults: {missing}")
    print(f"  env: {len(env)} names set in k8s.yaml, all listed by --help; help table lists {len(listed)}")

    # Start with exactly the manifest's env (PORT=0: a free port; the manifest's PORT was checked statically).
    run_env = {"PATH": "/usr/bin:/bin", **env, "PORT": "0"}
    # The drill token file, as the optional Secret volume provides it: missing until a user creates the Secret.
    token_dir = tempfile.mkdtemp(prefix="sre-mini-k8s-token-")
    if "DRILL_TOKEN_FILE" in env:
        run_env["DRILL_TOKEN_FILE"] = os.path.join(token_dir, "token")
    log = tempfile.NamedTemporaryFile(prefix="sre-mini-k8s-", suffix=".log", delete=False)
    t_exec = time.monotonic()
    proc = subprocess.Popen([binary], env=run_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        live = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and live is None:
            if proc.poll() is not None:
                break
            with open(log.name, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if '"msg":"ready"' in line:
                        m = re.search(r'"addr":"[^"]*:(\d+)"', line)
                        if m:
                            live = int(m.group(1))
            if live is None:
                time.sleep(0.005)
        if not ok(live is not None, f"binary did not log ready within 10 s with the manifest's env (exit {proc.poll()}); "
                  f"log: {open(log.name, encoding='utf-8', errors='replace').read()[-500:]}"):
            return ck
        # Start-up as the startup probe sees it: exec -> first 200 from /healthz and /readyz.
        t_ready = None
        while time.monotonic() < deadline:
            try:
                if request(live, "/readyz", timeout=1)[0] == 200:
                    t_ready = time.monotonic()
                    break
            except OSError:
                pass
            time.sleep(0.002)
        ok(t_ready is not None, "/readyz never answered 200 within 10 s")
        if t_ready is not None:
            startup_ms = (t_ready - t_exec) * 1000
            sp = c["startupProbe"]
            budget_s = sp.get("periodSeconds", 10) * sp.get("failureThreshold", 3)
            print(f"  start-up: ready {startup_ms:.1f} ms after exec; startup probe budget {budget_s} s")
            ok(startup_ms * 5 <= budget_s * 1000, f"start-up {startup_ms:.0f} ms does not fit the startup probe budget {budget_s} s with 5x headroom")
            ok(budget_s <= 30, f"startup probe budget {budget_s} s is far above the measured start-up")

        # Negative control: the router does say 404, so the 200s below mean something.
        ok(request(live, "/no-such-route-k8s-check")[0] == 404, "unknown path did not answer 404")
        # Probes: each httpGet path on the serving port.
        expect = {"/healthz": 200, "/readyz": 200}
        for label, hg in http_get_actions(c):
            if label == "preStop":
                continue
            st = request(live, hg["path"])[0]
            ok(st == expect.get(hg["path"], 200), f"{label} {hg['path']} answered {st}")
            print(f"  {label}: GET {hg['path']} -> {st}")
        # ServiceMonitor path.
        sm = one(docs, "ServiceMonitor")
        for ep in sm["spec"]["endpoints"]:
            st, body = request(live, ep["path"])
            ok(st == 200 and "http_requests_total" in body, f"ServiceMonitor path {ep['path']} answered {st} without http_requests_total")
            print(f"  ServiceMonitor: GET {ep['path']} -> {st}")
        # Drills: present with DRILLS=on (and put back), gone with DRILLS=off; shutdown below needs neither.
        if env.get("DRILLS") == "on":
            auth = {}
            if "DRILL_TOKEN_FILE" in env:
                st = request(live, "/fail/work?ratio=0")[0]
                ok(st == 404, f"DRILL_TOKEN_FILE set and no Secret: /fail/work answered {st}, not 404")
                with open(run_env["DRILL_TOKEN_FILE"], "w", encoding="utf-8") as f:
                    f.write("k8s-check-token\n")
                st = request(live, "/fail/work?ratio=0")[0]
                ok(st == 401, f"with the Secret and no token: /fail/work answered {st}, not 401")
                auth = {"Authorization": "Bearer k8s-check-token"}
            st = request(live, "/fail/work?ratio=0", headers=auth)[0]
            ok(st == 200, f"DRILLS=on but /fail/work answered {st}")
            ok(request(live, "/recover/work", headers=auth)[0] == 200, "DRILLS=on but /recover/work did not answer 200")
        else:
            for path in ("/fail/ready", "/recover/ready", "/fail/work", "/recover/work", "/panic"):
                st = request(live, path)[0]
                ok(st == 404, f"DRILLS=off but {path} answered {st}")
            ok(request(live, "/readyz")[0] == 200, "DRILLS=off: /readyz is not 200 after the drill requests")
        print(f"  drills: DRILLS={env.get('DRILLS')}, drill routes "
              f"{'answer' if env.get('DRILLS') == 'on' else 'answer 404 (all 5)'}")
        # Ingress path(s); /work sleeps WORK_DELAY_MS.
        for r in one(docs, "Ingress")["spec"]["rules"]:
            for p in r["http"]["paths"]:
                st = request(live, p["path"], timeout=int(env["WORK_DELAY_MS"]) / 1000 + 5)[0]
                ok(st == 200, f"Ingress path {p['path']} answered {st}")
                print(f"  Ingress: GET {p['path']} -> {st}")

        # Termination as the kubelet does it: /work in flight, preStop hook, SIGTERM; exit 0 within the budget.
        inflight = {}

        def work():
            try:
                inflight["status"] = request(live, "/work", timeout=30)[0]
            except OSError as e:
                inflight["status"] = repr(e)

        th = threading.Thread(target=work, daemon=True)
        th.start()
        time.sleep(0.2)
        pre = c.get("lifecycle", {}).get("preStop", {})
        t_pre = time.monotonic()
        if "httpGet" in pre:
            st = request(live, pre["httpGet"]["path"])[0]
            ok(200 <= st < 300, f"preStop {pre['httpGet']['path']} answered {st} (the kubelet would log FailedPreStopHook)")
            st = request(live, "/readyz")[0]
            ok(st == 503, f"/readyz answered {st} after the preStop hook, not 503")
            ok(request(live, "/healthz")[0] == 200, "/healthz is not 200 after the preStop hook")
            print(f"  preStop: GET {pre['httpGet']['path']} -> 200, then /readyz -> {st}")
        elif "sleep" in pre:
            time.sleep(int(pre["sleep"]["seconds"]))
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        st = request(live, "/readyz")[0]
        ok(st == 503, f"/readyz answered {st} during the shutdown delay, not 503")
        ok(request(live, "/healthz")[0] == 200, "/healthz is not 200 during the shutdown delay")
        tgps = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        try:
            rc = proc.wait(timeout=tgps + 5)
        except subprocess.TimeoutExpired:
            rc = None
        t_exit = time.monotonic()
        th.join(timeout=5)
        elapsed = t_exit - t_pre
        ok(rc == 0, f"exit status after SIGTERM was {rc}, not 0")
        ok(inflight.get("status") == 200, f"the in-flight /work ended with {inflight.get('status')}, not 200")
        ok(elapsed + GRACE_MARGIN_S <= tgps, f"preStop to exit took {elapsed:.2f} s (+{GRACE_MARGIN_S} s margin) > {tgps} s")
        print(f"  termination: preStop -> SIGTERM {t_term - t_pre:.2f} s, SIGTERM -> exit {t_exit - t_term:.2f} s, "
              f"exit {rc}, in-flight /work {inflight.get('status')}; grace {tgps} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)
        shutil.rmtree(token_dir, ignore_errors=True)
    return ck


def kustomize_image(path):
    with open(path, encoding="utf-8") as f:
        k = yaml.safe_load(f)
    src = container(one(load(SOURCE), "Deployment"))["image"]
    repo = src.split("@")[0].rsplit(":", 1)[0]
    imgs = k.get("images", [])
    if len(imgs) != 1 or imgs[0].get("name") != repo:
        raise SystemExit(f"FAIL: {path}: expected one images: entry named {repo}, found {imgs}")
    i = imgs[0]
    digest = i.get("digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise SystemExit(f"FAIL: {path}: the image is not pinned by a sha256 digest ({digest!r})")
    name = i.get("newName", repo)
    return f"{name}:{i['newTag']}@{digest}" if i.get("newTag") else f"{name}@{digest}"


def _normalised(docs):
    """Documents keyed by kind/namespace/name, env lists as name-sorted (kustomize's merge may reorder them)."""
    out = {}
    for d in copy.deepcopy(docs):
        if d.get("kind") == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                c["env"] = sorted(c.get("env", []), key=lambda e: e["name"])
        md = d.get("metadata", {})
        out[(d.get("kind"), md.get("namespace"), md.get("name"))] = d
    return out


def same_as_source(rendered_path, image, overrides):
    source = load(SOURCE)
    dep = one(source, "Deployment")
    container(dep)["image"] = image
    for kv in overrides:
        name, value = kv.split("=", 1)
        env = container(dep)["env"]
        if not any(e["name"] == name for e in env):
            raise SystemExit(f"FAIL: {name} is not in the Deployment's env")
        for e in env:
            if e["name"] == name:
                e["value"] = value
    want, got = _normalised(source), _normalised(load(rendered_path))
    bad = [f"{k} missing from the rendering" for k in want.keys() - got.keys()]
    bad += [f"{k} added by the kustomization" for k in got.keys() - want.keys()]
    bad += [f"{k} differs from k8s.yaml" for k in want.keys() & got.keys() if want[k] != got[k]]
    for b in bad:
        print(f"FAIL: {rendered_path}: {b}")
    if not bad:
        extra = f", {', '.join(overrides)}" if overrides else ""
        print(f"  {os.path.basename(rendered_path)}: the {len(want)} objects of k8s.yaml, image {image}{extra}")
    return 1 if bad else 0


# The labels whose values are object names (what a `namePrefix:` renames), as Prometheus' targets and
# kube-state-metrics carry them.
NAME_LABELS = ("job", "service", "deployment", "horizontalpodautoscaler", "poddisruptionbudget")


def tenant_copy(docs, ns, prefix, old="sre-mini"):
    """Everything a kustomize `namespace:` and `namePrefix:` override moved: no field or PromQL matcher still names
    the old namespace or an object by its old name, and the references between the objects follow the new names."""
    bad = []
    old_names = sorted({d["metadata"]["name"][len(prefix):] for d in docs if prefix and d["metadata"]["name"].startswith(prefix)},
                       key=len, reverse=True)
    # Without a prefix no name changes, and a matcher on a name is no reference to check.
    by_name = re.compile(r'\b(' + "|".join(NAME_LABELS) + r')\s*(=~?|!=)\s*"(' + "|".join(map(re.escape, old_names)) + r')"') \
        if old_names else None

    def walk(x, where):
        if isinstance(x, dict):
            for k, v in x.items():
                at = f"{where}.{k}"
                if (k == "namespace" and v == old) or (k == "kubernetes.io/metadata.name" and v == old):
                    bad.append(f"{at} is {old}")
                if k == "matchNames" and old in v:
                    bad.append(f"{at} lists {old}")
                walk(v, at)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]")
        elif isinstance(x, str):
            if re.search(r'namespace\s*(=~?|!=)\s*"[^"]*\b' + re.escape(old) + r'\b', x):
                bad.append(f"{where} matches namespace {old}: {x.strip()[:100]}")
            for m in (by_name.finditer(x) if by_name else ()):
                bad.append(f"{where} matches {m.group(1)} by the old name {m.group(3)!r}: a name prefix does not move it")

    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        walk(d, where)
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != ns:
            bad.append(f"{where} is in namespace {d['metadata'].get('namespace')}, not {ns}")
    dep, svc, hpa, ing = (one(docs, k) for k in ("Deployment", "Service", "HorizontalPodAutoscaler", "Ingress"))
    if hpa["spec"]["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
        bad.append("the HPA does not scale the renamed Deployment")
    if dep["spec"]["template"]["spec"]["serviceAccountName"] != one(docs, "ServiceAccount")["metadata"]["name"]:
        bad.append("the Deployment does not use the renamed ServiceAccount")
    if {p["backend"]["service"]["name"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]} != {svc["metadata"]["name"]}:
        bad.append("the Ingress does not route to the renamed Service")
    for b in bad:
        print(f"FAIL: tenant copy: {b}")
    if not bad:
        print(f"  tenant copy: {len(docs)} objects, all in {ns}, no reference to namespace {old}; the HPA, the Ingress "
              f"and the Deployment follow the new names ({dep['metadata']['name']})")
    return 1 if bad else 0


def report(ck, what):
    for f in ck.failures:
        print(f"FAIL: {what}: {f}")
    if not ck.failures:
        print(f"  {what}: {ck.passed} assertions passed")
    return 1 if ck.failures else 0


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    docs = load()
    cmd = argv[1]
    if cmd == "split":
        core, crd = [], []
        for d in docs:
            if d.get("kind") in CORE_KINDS:
                core.append(d)
            elif d.get("kind") in CRD_KINDS:
                crd.append(d)
            else:
                print(f"FAIL: {MANIFEST}: kind {d.get('kind')} is neither a validated core kind nor a known CRD", file=sys.stderr)
                return 1
        with open(argv[2], "w", encoding="utf-8") as f:
            yaml.safe_dump_all(core, f, sort_keys=False)
        print(len(core))
        return 0
    if cmd == "crd-files":
        print("\n".join(sorted({CRD_KINDS[d["kind"]][1] for d in docs if CRD_KINDS.get(d.get("kind"), (0, None))[1]})))
        return 0
    if cmd == "crd":
        n, errors = crd_validate(docs, argv[2])
        for e in errors:
            print(f"FAIL: {e}")
        if n == 0 and not errors:
            print(f"FAIL: no CRD documents found in {MANIFEST} (expected the ServiceMonitor)")
            return 1
        return 1 if errors else 0
    if cmd == "static":
        ck = static_checks(docs)
        g = getattr(ck, "grace", None)
        if g:
            print(f"  grace: preStop {g[0]} s + shutdown delay {g[1]:g} s + drain {g[2]:g} s + margin {g[3]} s = {g[4]:g} s "
                  f"<= {g[5]} s; drain {g[2]:g} s > longest /work {g[6]:g} s")
        return report(ck, "static consistency")
    if cmd == "self-test":
        bad = self_test(docs)
        for b in bad:
            print(f"FAIL: self-test: {b}")
        if not bad:
            print(f"  self-test: all {len(MUTATIONS)} mutations of the manifest were caught")
        return 1 if bad else 0
    if cmd == "kustomize-image":
        print(kustomize_image(argv[2]))
        return 0
    if cmd == "same-as-source":
        return same_as_source(argv[2], argv[3], argv[4:])
    if cmd == "tenant-copy":
        return tenant_copy(load(argv[2]), argv[3], argv[4] if len(argv) > 4 else "")
    if cmd == "runtime":
        return report(runtime_checks(docs, argv[2]), "runtime consistency")
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
