"""Table tests for the pure halves of the rollout drill: Ingress matching and translation, controller arithmetic.

Run: PYTHONPATH=tools python3 -m unittest srekit.test_rollout
"""

import asyncio
import os
import unittest

import yaml

from srekit import deployment, ingress, keepalive_load
from srekit.ingress import Route

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def manifest():
    with open(os.path.join(ROOT, "k8s.yaml")) as f:
        return [d for d in yaml.safe_load_all(f) if d]


class IngressTest(unittest.TestCase):
    def test_the_manifest_routes_exactly_work(self):
        routes = ingress.routes_from_manifest(manifest())
        self.assertEqual([(r.host, r.path, r.path_type, r.container_port) for r in routes],
                         [("sre-mini.local", "/work", "Exact", 8080)])

    def test_matching(self):
        routes = [Route("a.example", "/work", "Exact", "s", "http", 1),
                  Route("a.example", "/api/", "Prefix", "s", "http", 1),
                  Route(None, "/", "Prefix", "s", "http", 1)]
        cases = [
            ("a.example", "/work", "/work"), ("A.example:443", "/work?cpu_ms=1", "/work"),
            ("a.example", "/work/", None), ("a.example", "/workx", None),
            ("a.example", "/api", "/api/"), ("a.example", "/api/x", "/api/"), ("a.example", "/apix", None),
            ("a.example", "/healthz", None),  # the host's own rules decide; the catch-all is another host's
            ("b.example", "/healthz", "/"), ("b.example", "/work", "/"),
        ]
        for host, path, want in cases:
            got = ingress.matches(routes, host, path)
            self.assertEqual(got.path if got else None, want, f"{host}{path}")

    def test_exact_beats_prefix_and_longest_prefix_wins(self):
        routes = [Route(None, "/a", "Prefix", "s", 1, 1), Route(None, "/a/b", "Prefix", "t", 1, 1),
                  Route(None, "/a/b", "Exact", "u", 1, 1)]
        self.assertEqual(ingress.matches(routes, "h", "/a/b").service, "u")
        self.assertEqual(ingress.matches(routes, "h", "/a/b/c").service, "t")
        self.assertEqual(ingress.matches(routes, "h", "/a/c").service, "s")

    def test_implementation_specific_is_refused(self):
        docs = manifest()
        ing = [d for d in docs if d["kind"] == "Ingress"][0]
        ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "ImplementationSpecific"
        with self.assertRaises(ingress.ManifestError):
            ingress.routes_from_manifest(docs)

    def test_a_backend_port_the_service_lacks_is_refused(self):
        docs = manifest()
        ing = [d for d in docs if d["kind"] == "Ingress"][0]
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "nope"}
        with self.assertRaises(ingress.ManifestError):
            ingress.routes_from_manifest(docs)

    def test_config_keeps_retries_off_and_keepalive_on(self):
        routes = ingress.routes_from_manifest(manifest())
        conf = ingress.nginx_conf("/d", routes, {ingress.upstream_name(routes[0]): [1, 2]},
                                  ingress.ProxySettings(80, 81, 16, 256), 7)
        for needle in ("location = /work {", "proxy_next_upstream off;", "keepalive 16;", "proxy_http_version 1.1;",
                       'proxy_set_header Connection "";', "server 127.0.0.1:1 max_fails=0;",
                       "server 127.0.0.1:2 max_fails=0;",
                       "server_name sre-mini.local;", "default_server", 'return 200 "7\\n"', "pid /d/nginx.pid;"):
            self.assertIn(needle, conf)
        self.assertNotIn("/var/", conf)


def simulate(plan):
    """Runs the controller with pods that become available at once; returns the create/delete sequence."""
    old_active, new_active, new_available, seq = plan.replicas, 0, 0, []
    for _ in range(50):
        if deployment.done(plan, old_active, new_available):
            return seq
        step = deployment.controller_step(plan, old_active, old_active, new_active, new_available)
        if step.create == 0 and step.delete == 0:
            new_available = new_active  # time passes: the new pods become available
            seq.append("available")
            continue
        seq.append(f"+{step.create}" if step.create else f"-{step.delete}")
        new_active += step.create
        old_active -= step.delete
    raise AssertionError(f"no progress: {seq}")


class ControllerTest(unittest.TestCase):
    def plan(self, surge, unavailable, replicas=3):
        return deployment.Rollout(replicas, surge, unavailable, 5, 120)

    def test_the_manifest_strategy(self):
        r = deployment.rollout_from_manifest(manifest())
        self.assertEqual((r.replicas, r.max_surge, r.max_unavailable, r.min_ready_seconds), (3, 1, 1, 5))

    def test_without_spec_replicas_the_hpa_floor_is_the_scale(self):
        docs = manifest()
        dep = [d for d in docs if d["kind"] == "Deployment"][0]
        dep["spec"].pop("replicas", None)
        hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"][0]
        self.assertEqual(deployment.rollout_from_manifest(docs).replicas, hpa["spec"]["minReplicas"])

    def test_surge_one_unavailable_one(self):
        # One new pod, one old deleted at once, a second new pod; once both are available the two remaining
        # old pods go together, then the third new pod.
        self.assertEqual(simulate(self.plan(1, 1)), ["+1", "-1", "+1", "available", "-2", "+1", "available"])

    def test_surge_one_unavailable_zero_is_one_at_a_time(self):
        self.assertEqual(simulate(self.plan(1, 0)),
                         ["+1", "available", "-1", "+1", "available", "-1", "+1", "available", "-1"])

    def test_percentages_round_as_the_controller_does(self):
        self.assertEqual(deployment._scaled("25%", 3, round_up=True), 1)
        self.assertEqual(deployment._scaled("25%", 3, round_up=False), 0)

    def test_unavailable_old_pods_go_first(self):
        step = deployment.controller_step(self.plan(1, 1), old_active=3, old_available=1, new_active=1,
                                          new_available=0)
        self.assertEqual(step.delete, 1)  # budget 4 - 2 - 1 = 1, spent on an unavailable pod


if __name__ == "__main__":
    unittest.main()


class ResponseReaderTest(unittest.TestCase):
    """The load's reader decides what is a failure and what may be sent again, so its edges are pinned here."""

    def read(self, data: bytes, eof: bool = True):
        async def go():
            r = asyncio.StreamReader()
            r.feed_data(data)
            if eof:
                r.feed_eof()
            return await keepalive_load._read_response(r)

        return asyncio.run(go())

    def test_cases(self):
        cases = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", (200, False)),
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", (200, True)),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", (200, True)),
            (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\nnope", (502, False)),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", (200, False)),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil close", (200, True)),
        ]
        for data, want in cases:
            self.assertEqual(self.read(data), want, data)

    def test_nothing_before_eof_may_be_sent_again(self):
        with self.assertRaises(keepalive_load._Closed):
            self.read(b"")

    def test_a_partial_response_is_a_failure_not_a_reopen(self):
        with self.assertRaises(ConnectionError):
            self.read(b"HTTP/1.1 200 OK\r\nContent-")
        with self.assertRaises(ValueError):
            self.read(b"SSH-2.0-x\r\n\r\n")
