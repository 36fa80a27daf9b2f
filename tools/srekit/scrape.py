"""The Prometheus scrape job prometheus-operator generates from the kit's ServiceMonitor, for loopback targets.

The operator turns each ServiceMonitor endpoint into a `kubernetes_sd_configs` job (role endpoints) whose
relabel_configs keep the Service's selector labels and the endpoint's port name, then set `namespace`, `service`,
`pod`, `container`, `job` (the Service name, or the Service label named by jobLabel) and `endpoint` (the port
name); `instance` stays `__address__` (pod IP:port). There is no API server here, so the discovery step is
emulated: each loopback target gets the `__meta_kubernetes_*` labels endpoints discovery would attach for a pod of
the Deployment in k8s.yaml, and the relabel_configs (the part that makes the labels) run unchanged in a real
Prometheus. Where the emulation stops: discovery itself (Endpoints objects, pod phase, the namespaceSelector, which
decides which namespaces are discovered) and the operator's sharding step (hashmod over one shard keeps all).

The same derivation gives the label sets the promtool tests use (`target_labels`), so tests, drill and production
share one source: the manifest.

  python3 -m srekit.scrape config --manifest FILE... --target NAMESPACE=HOST:PORT ... [--interval 1s]
  python3 -m srekit.scrape labels --manifest FILE... --namespace NS [--pod-index N]   (JSON, what a test uses)
  (FILE: deploy/base/k8s.yaml and deploy/components/monitoring/servicemonitor.yaml, or a rendering holding both)
"""
import argparse
import hashlib
import json
import re
import sys

import yaml


def load(*manifests):
    docs = []
    for manifest in manifests:
        with open(manifest, encoding="utf-8") as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    return by_kind


def _one(by_kind, kind):
    items = by_kind.get(kind, [])
    if len(items) != 1:
        raise SystemExit(f"expected exactly one {kind} in the manifest, found {len(items)}")
    return items[0]


def _sanitize(name):
    # Kubernetes label keys become __meta_kubernetes_*_label_<key> with every invalid character as "_".
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


class Model:
    """The ServiceMonitor, the Service it selects and the Deployment behind it, read from the manifest."""

    def __init__(self, *manifests):
        k = load(*manifests)
        self.sm = _one(k, "ServiceMonitor")
        self.svc = _one(k, "Service")
        self.deploy = _one(k, "Deployment")
        want = self.sm["spec"]["selector"].get("matchLabels", {})
        have = self.svc["metadata"].get("labels", {})
        if any(have.get(key) != v for key, v in want.items()):
            raise SystemExit(f"ServiceMonitor selector {want} does not select Service {self.svc['metadata']['name']}")
        self.endpoints = self.sm["spec"]["endpoints"]
        for ep in self.endpoints:
            if "port" not in ep:
                raise SystemExit("every ServiceMonitor endpoint must name a Service port (port:), as ours do")

    def service_port(self, name):
        for p in self.svc["spec"]["ports"]:
            if p.get("name") == name:
                return p
        raise SystemExit(f"the ServiceMonitor names port {name!r}, which Service {self.svc['metadata']['name']} lacks")

    def container_for(self, target_port):
        for c in self.deploy["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                if target_port in (p.get("name"), p.get("containerPort")):
                    return c["name"], p["containerPort"]
        raise SystemExit(f"no container of the Deployment exposes targetPort {target_port!r}")

    def job_name(self, index):
        m = self.sm["metadata"]
        return f"serviceMonitor/{m['namespace']}/{m['name']}/{index}"

    def pod_name(self, namespace, index):
        # A Deployment pod is <deployment>-<pod-template-hash>-<5 chars>; both parts are made up but stable.
        d = self.deploy["metadata"]["name"]
        h = hashlib.sha256(f"{namespace}/{d}".encode()).hexdigest()
        return f"{d}-{h[:10]}-{h[10 + index * 5:15 + index * 5]}"

    def pod_ip(self, namespace, index):
        h = hashlib.sha256(namespace.encode()).digest()
        return f"10.244.{h[0]}.{10 + index}"

    def relabel_configs(self, ep):
        """What prometheus-operator writes for one endpoint (role endpoints), in its order."""
        rc = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
        for key, v in sorted(self.sm["spec"]["selector"].get("matchLabels", {}).items()):
            s = _sanitize(key)
            rc.append({"action": "keep",
                       "source_labels": [f"__meta_kubernetes_service_label_{s}",
                                         f"__meta_kubernetes_service_labelpresent_{s}"],
                       "regex": f"({v});true"})
        rc.append({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": ep["port"]})
        for kind, label in (("Node", "node"), ("Pod", "pod")):
            rc.append({"source_labels": ["__meta_kubernetes_endpoint_address_target_kind",
                                         "__meta_kubernetes_endpoint_address_target_name"],
                       "separator": ";", "regex": f"{kind};(.*)", "replacement": "${1}", "target_label": label})
        rc += [
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        ]
        for key in self.sm["spec"].get("targetLabels", []):
            rc.append({"source_labels": [f"__meta_kubernetes_service_label_{_sanitize(key)}"],
                       "target_label": _sanitize(key), "regex": "(.+)", "replacement": "${1}"})
        rc.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"})
        if self.sm["spec"].get("jobLabel"):
            rc.append({"source_labels": [f"__meta_kubernetes_service_label_{_sanitize(self.sm['spec']['jobLabel'])}"],
                       "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
        rc.append({"target_label": "endpoint", "replacement": ep["port"]})
        rc += [{"source_labels": ["__address__"], "target_label": "__tmp_hash", "modulus": 1, "action": "hashmod"},
               {"source_labels": ["__tmp_hash"], "regex": "0", "action": "keep"}]
        for r in ep.get("relabelings", []):
            raise SystemExit(f"endpoint relabelings are not emulated (found {r}); extend srekit.scrape first")
        return rc

    def discovery_labels(self, ep, namespace, index, address):
        """The __meta_kubernetes_* labels endpoints discovery attaches to one pod address of the Service."""
        port = self.service_port(ep["port"])
        container, _ = self.container_for(port.get("targetPort", port["port"]))
        pod = self.pod_name(namespace, index)
        labels = {
            "__address__": address,
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_service_name": self.svc["metadata"]["name"],
            "__meta_kubernetes_endpoint_port_name": port["name"],
            "__meta_kubernetes_endpoint_address_target_kind": "Pod",
            "__meta_kubernetes_endpoint_address_target_name": pod,
            "__meta_kubernetes_endpoint_ready": "true",
            "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_container_name": container,
        }
        for key, v in self.svc["metadata"].get("labels", {}).items():
            labels[f"__meta_kubernetes_service_label_{_sanitize(key)}"] = v
            labels[f"__meta_kubernetes_service_labelpresent_{_sanitize(key)}"] = "true"
        return labels

    def scrape_configs(self, targets, interval=None, timeout=None):
        """targets: [(namespace, address)], each one pod of that namespace's copy of the Service."""
        out = []
        for i, ep in enumerate(self.endpoints):
            groups, seen = [], {}
            for ns, addr in targets:
                n = seen.get(ns, 0)
                seen[ns] = n + 1
                disc = self.discovery_labels(ep, ns, n, addr)
                groups.append({"targets": [disc.pop("__address__")], "labels": disc})
            out.append({
                "job_name": self.job_name(i),
                "honor_labels": bool(ep.get("honorLabels", False)),
                "scrape_interval": interval or ep.get("interval", "30s"),
                "scrape_timeout": timeout or ep.get("scrapeTimeout", "10s"),
                "metrics_path": ep.get("path", "/metrics"),
                "scheme": ep.get("scheme", "http"),
                "static_configs": groups,
                "relabel_configs": self.relabel_configs(ep),
            })
        return out

    def target_labels(self, namespace, index=0):
        """The label set a scraped series of pod `index` in `namespace` carries in production (what the relabelling
        produces; instance is the pod IP and the container port)."""
        ep = self.endpoints[0]
        port = self.service_port(ep["port"])
        container, cport = self.container_for(port.get("targetPort", port["port"]))
        job = self.svc["metadata"]["name"]
        if self.sm["spec"].get("jobLabel"):
            job = self.svc["metadata"]["labels"][self.sm["spec"]["jobLabel"]]
        return {"container": container, "endpoint": ep["port"], "instance": f"{self.pod_ip(namespace, index)}:{cport}",
                "job": job, "namespace": namespace, "pod": self.pod_name(namespace, index),
                "service": self.svc["metadata"]["name"]}


def selector(labels, **extra):
    """A promtool series selector body: labels plus extra, sorted, as `{k="v",...}`."""
    items = {**labels, **extra}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(items.items())) + "}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("config")
    c.add_argument("--manifest", action="append", required=True)
    c.add_argument("--target", action="append", required=True, help="NAMESPACE=HOST:PORT, one per pod")
    c.add_argument("--interval")
    c.add_argument("--timeout")
    lab = sub.add_parser("labels")
    lab.add_argument("--manifest", action="append", required=True)
    lab.add_argument("--namespace", required=True)
    lab.add_argument("--pod-index", type=int, default=0)
    a = p.parse_args(argv)
    m = Model(*a.manifest)
    if a.cmd == "config":
        targets = []
        for t in a.target:
            ns, _, addr = t.partition("=")
            if not ns or not addr:
                raise SystemExit(f"--target {t!r}: expected NAMESPACE=HOST:PORT")
            targets.append((ns, addr))
        yaml.safe_dump({"scrape_configs": m.scrape_configs(targets, a.interval, a.timeout)}, sys.stdout,
                       sort_keys=False, width=1000)
    else:
        print(json.dumps(m.target_labels(a.namespace, a.pod_index), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
