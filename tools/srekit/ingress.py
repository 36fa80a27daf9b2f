"""The Ingress of k8s.yaml as routes, the Kubernetes matching rule for them, and an nginx config that routes the same.

Pure: manifest documents in, routes, decisions and config text out. The rollout drill (srekit.rollout) runs the
config in a real nginx and checks, path by path, that nginx routes exactly what `matches` says the Ingress routes.

Kubernetes semantics kept (networking.k8s.io/v1 Ingress):
- a rule with a host matches that Host only (case-insensitive, port ignored); a rule without one matches any host;
- pathType Exact matches the path exactly (the query string is not part of the path);
- pathType Prefix matches element-wise on `/`: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`;
  a trailing `/` in the rule is ignored, and `/` matches everything;
- the longest matching path wins, and Exact wins over Prefix for the same path;
- ImplementationSpecific has no portable meaning, so it is refused rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

# nginx answers what the Ingress does not route with this header, so the drill can tell a proxy 404 from a 404
# that the backend produced.
UNROUTED_HEADER = "X-Ingress-Stand-In"
UNROUTED_VALUE = "unrouted"


class ManifestError(ValueError):
    """The manifest does not say what the drill needs, or says something it cannot emulate faithfully."""


@dataclass(frozen=True)
class Route:
    host: str | None  # None: any host
    path: str
    path_type: str  # "Exact" or "Prefix"
    service: str
    service_port: int | str  # the Ingress backend's port number or name
    container_port: int  # what that resolves to on the Deployment's container (Service targetPort)


def _one(docs, kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise ManifestError(f"expected exactly one {kind} in the manifest, found {len(found)}")
    return found[0]


def _container_port(container: dict, target: int | str) -> int:
    for p in container.get("ports", []):
        if target in (p.get("name"), p.get("containerPort")):
            return int(p["containerPort"])
    if isinstance(target, int):
        return target
    raise ManifestError(f"targetPort {target!r} names no port of container {container.get('name')!r}")


def _service_target(docs, deployment: dict, name: str, port: int | str) -> int:
    services = [d for d in docs if d.get("kind") == "Service" and d["metadata"]["name"] == name]
    if len(services) != 1:
        raise ManifestError(f"the Ingress backend names Service {name!r}, which the manifest does not define once")
    svc = services[0]
    pod_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    selector = svc["spec"].get("selector") or {}
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        raise ManifestError(f"Service {name!r} does not select the Deployment's pods")
    for sp in svc["spec"].get("ports", []):
        if port in (sp.get("name"), sp.get("port")):
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            return _container_port(container, sp.get("targetPort", sp.get("port")))
    raise ManifestError(f"Service {name!r} has no port {port!r} (the Ingress backend's port)")


def routes_from_manifest(docs) -> list[Route]:
    """Every (host, path) the manifest's one Ingress routes, with its backend resolved to the container port."""
    ingress = _one(docs, "Ingress")
    deployment = _one(docs, "Deployment")
    spec = ingress.get("spec", {})
    if spec.get("defaultBackend"):
        raise ManifestError("the Ingress has a defaultBackend; the drill emulates path rules only")
    routes = []
    for rule in spec.get("rules", []):
        host = rule.get("host")
        if host is not None and host.startswith("*."):
            raise ManifestError(f"wildcard host {host!r} is not emulated")
        for p in rule.get("http", {}).get("paths", []):
            path_type = p.get("pathType")
            if path_type not in ("Exact", "Prefix"):
                raise ManifestError(f"pathType {path_type!r} on {p.get('path')!r}: only Exact and Prefix are portable")
            path = p.get("path", "")
            if not path.startswith("/"):
                raise ManifestError(f"path {path!r} must start with /")
            backend = p.get("backend", {}).get("service")
            if not backend:
                raise ManifestError(f"path {path!r} has no service backend")
            port = backend.get("port", {})
            port_ref = port.get("name", port.get("number"))
            if port_ref is None:
                raise ManifestError(f"path {path!r}: the backend names no port")
            target = _service_target(docs, deployment, backend["name"], port_ref)
            routes.append(Route(host, path, path_type, backend["name"], port_ref, target))
    if not routes:
        raise ManifestError("the Ingress routes nothing")
    return routes


def _prefix_matches(rule_path: str, path: str) -> bool:
    rule = rule_path.rstrip("/")
    if rule == "":
        return True
    return path == rule or path.startswith(rule + "/")


def matches(routes: list[Route], host: str, path: str) -> Route | None:
    """The route Kubernetes' Ingress semantics pick for a request (Host header, path without query), or None."""
    host = host.split(":")[0].lower()
    path = path.split("?", 1)[0]
    # A rule with a matching host takes precedence over rules without a host (the default server).
    for candidates in (
        [r for r in routes if r.host is not None and r.host.lower() == host],
        [r for r in routes if r.host is None],
    ):
        best = None
        for r in candidates:
            ok = path == r.path if r.path_type == "Exact" else _prefix_matches(r.path, path)
            if not ok:
                continue
            key = (len(r.path.rstrip("/")) if r.path_type == "Prefix" else len(r.path), r.path_type == "Exact")
            if best is None or key > best[0]:
                best = (key, r)
        if best is not None:
            return best[1]
        if candidates:
            # Kubernetes: a request whose Host matches a rule is decided by that rule's paths alone.
            return None
    return None


def upstream_name(route: Route) -> str:
    return f"backend_{route.service}_{route.service_port}".replace("-", "_")


def _location(route: Route) -> list[str]:
    if route.path_type == "Exact":
        return [f"location = {route.path}"]
    rule = route.path.rstrip("/")
    if rule == "":
        return ["location /"]
    # `^~` stops regex lookup; the element-wise rule needs both the bare path and everything under it.
    return [f"location = {rule}", f"location ^~ {rule}/"]


@dataclass(frozen=True)
class ProxySettings:
    listen_port: int
    control_port: int
    keepalive: int  # idle upstream connections each worker keeps (nginx `keepalive N`)
    worker_connections: int
    workers: int = 1  # nginx worker processes


def nginx_conf(prefix: str, routes: list[Route], upstreams: dict[str, list[int]], proxy: ProxySettings,
               generation: int) -> str:
    """An nginx.conf that routes `routes` and answers everything else 404 with UNROUTED_HEADER.

    `upstreams` maps each route's upstream_name to the loopback ports of the replicas routed now. `generation`
    is served on the control port so the drill can tell when a reload has taken effect. Every path nginx writes
    is under `prefix`; nothing goes to /var.
    """
    names = sorted({upstream_name(r) for r in routes})
    for n in names:
        if not upstreams.get(n):
            raise ValueError(f"upstream {n} would have no server")
    out = [
        "# Generated by srekit.ingress from the Ingress in k8s.yaml; do not edit.",
        f"worker_processes {proxy.workers};",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log warn;",
        "events {",
        f"    worker_connections {proxy.worker_connections};",
        "}",
        "http {",
        f"    client_body_temp_path {prefix}/tmp/body;",
        f"    proxy_temp_path {prefix}/tmp/proxy;",
        f"    fastcgi_temp_path {prefix}/tmp/fastcgi;",
        f"    uwsgi_temp_path {prefix}/tmp/uwsgi;",
        f"    scgi_temp_path {prefix}/tmp/scgi;",
        # The first three fields are what the drill reads back: time, status, the load's X-Drill-Id.
        "    log_format drill '$msec $status $http_x_drill_id $connection $connection_requests $upstream_status "
        "$upstream_addr $pid \"$request\" $request_time';",
        f"    access_log {prefix}/access.log drill buffer=64k flush=1s;",
        "    server_tokens off;",
    ]
    for n in names:
        out.append(f"    upstream {n} {{")
        # max_fails=0: no passive health check. Traefik has none by default, and nginx's (one failure takes a
        # server out for 10 s) would hide all but the first failed request from the drill.
        out += [f"        server 127.0.0.1:{p} max_fails=0;" for p in upstreams[n]]
        out.append(f"        keepalive {proxy.keepalive};")
        out.append("    }")
    hosts: dict[str | None, list[Route]] = {}
    for r in routes:
        hosts.setdefault(r.host, []).append(r)
    if None not in hosts:
        hosts[None] = []
    for host, rs in hosts.items():
        out.append("    server {")
        if host is None:
            out.append(f"        listen 127.0.0.1:{proxy.listen_port} default_server;")
            out.append("        server_name _;")
        else:
            out.append(f"        listen 127.0.0.1:{proxy.listen_port};")
            out.append(f"        server_name {host};")
        catch_all = False
        for r in rs:
            for loc in _location(r):
                catch_all = catch_all or loc == "location /"
                out += [
                    f"        {loc} {{",
                    f"            proxy_pass http://{upstream_name(r)};",
                    # Keep-alive to the backends, as Traefik does; HTTP/1.0 (nginx's default) would close each.
                    "            proxy_http_version 1.1;",
                    '            proxy_set_header Connection "";',
                    "            proxy_set_header Host $host;",
                    # Retries off: a failed attempt is the client's failure, so the drill sees it.
                    "            proxy_next_upstream off;",
                    "        }",
                ]
        if not catch_all:
            out += [
                "        location / {",
                f"            add_header {UNROUTED_HEADER} {UNROUTED_VALUE} always;",
                "            return 404;",
                "        }",
            ]
        out.append("    }")
    out += [
        "    server {",
        f"        listen 127.0.0.1:{proxy.control_port};",
        f'        location = /generation {{ return 200 "{generation}\\n"; }}',
        "    }",
        "}",
    ]
    return "\n".join(out) + "\n"
