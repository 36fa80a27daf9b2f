"""A kube-state-metrics stand-in for the burn drill: the Deployment series the alerts and dashboard read, in KSM v2's
names and labels, for each namespace the drill runs (there is no API server here).

It serves fixed values on 127.0.0.1 (/metrics, Prometheus text format): per --deployment NAMESPACE=SPEC/AVAILABLE,
kube_deployment_spec_replicas, kube_deployment_status_replicas_available, kube_deployment_status_replicas_updated
and the Progressing condition (true). The drill uses it to make the real SreMiniNoReadyPods rule fire for one
namespace (AVAILABLE 0) so Alertmanager's inhibition can be watched; what a real KSM adds (every other object, its
own labels) is out of scope. Exits after --lifetime seconds.

  python3 -m srekit.ksm --port-file FILE --deployment sre-mini=3/3 --deployment sre-mini-staging=1/0
"""
import argparse
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .standin import serve_for


def exposition(deployments, name):
    out = []
    fams = (
        ("kube_deployment_spec_replicas", "gauge", "Number of desired pods for a deployment.", 0),
        ("kube_deployment_status_replicas_available", "gauge", "The number of available replicas per deployment.", 1),
        ("kube_deployment_status_replicas_updated", "gauge", "The number of updated replicas per deployment.", 0),
    )
    for metric, kind, help_, idx in fams:
        out.append(f"# HELP {metric} {help_}")
        out.append(f"# TYPE {metric} {kind}")
        for ns, counts in deployments:
            out.append(f'{metric}{{namespace="{ns}",deployment="{name}"}} {counts[idx]}')
    out.append("# HELP kube_deployment_status_condition The current status conditions of a deployment.")
    out.append("# TYPE kube_deployment_status_condition gauge")
    for ns, _ in deployments:
        for status, v in (("true", 1), ("false", 0), ("unknown", 0)):
            out.append(f'kube_deployment_status_condition{{namespace="{ns}",deployment="{name}",'
                       f'condition="Progressing",status="{status}"}} {v}')
    return ("\n".join(out) + "\n").encode()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port-file", required=True)
    p.add_argument("--deployment", action="append", required=True, help="NAMESPACE=SPEC/AVAILABLE")
    p.add_argument("--name", default="sre-mini")
    p.add_argument("--lifetime", type=float, default=900)
    a = p.parse_args(argv)
    deps = []
    for d in a.deployment:
        ns, _, counts = d.partition("=")
        spec, _, avail = counts.partition("/")
        deps.append((ns, (int(spec), int(avail))))
    body = exposition(deps, a.name)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def do_GET(self):
            ok = self.path == "/metrics"
            data = body if ok else b"not found\n"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    return serve_for(srv, a.port_file, a.lifetime)


if __name__ == "__main__":
    sys.exit(main())
