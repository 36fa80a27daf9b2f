#!/usr/bin/env python3
"""Generate alerts/tests/burn.test.yaml: the threshold tests of the sixteen burn-rate rules.

Each burn threshold B x 0.1% (B = 14.4, 6, 3, 1) is tested twice per SLI (availability and latency, each measured
by the service and at the edge by Traefik), with a steady bad ratio 0.01 percentage
points below it and 0.01 points above it. Raw counters start at 0 and grow linearly, so every window's rate ratio
equals the injected ratio exactly, and each case separates one threshold from its neighbours: at 1.43% the 6x page
fires but the 14.4x page must not, and so on. The 1.45% and 0.31% cases also test the `for` delays.

The expected percentages are written out here by hand; only the fixed text of each description is read from
alerts.yaml (promtool compares annotations, and copying the prose by hand would just invite drift).
scripts/check-alerts.sh regenerates the file and fails when the committed copy differs.

Usage: gen-burn-tests.py [OUT]   (default: alerts/tests/burn.test.yaml next to this script's folder)
"""
import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ALERTS = os.path.join(HERE, "..", "alerts.yaml")
# The target labels prometheus-operator's scrape gives one pod of the kit (the cluster step checks them against a real
# Prometheus: scripts/check-cluster.sh, the monitoring drill).
with open(os.path.join(HERE, "target-labels.json"), encoding="utf-8") as f:
    POD = json.load(f)


def selector(labels, **extra):
    """A promtool series selector body: labels plus extra, sorted, as `{k="v",...}`."""
    items = {**labels, **extra}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(items.items())) + "}"


# Another Service's pod in the same namespace, scraped the same way: its /work errors are not ours.
OTHER = {**POD, "job": "other", "service": "other", "pod": "other-5d4c3b2a19-qwert", "instance": "10.244.1.99:8080"}
# A Traefik pod scraped through a ServiceMonitor: its target labels (its own namespace, its Service as `service`),
# so Traefik's own `service` label arrives as `exported_service` (the assumption alerts.yaml's edge rules state).
TRAEFIK = {"container": "traefik", "endpoint": "metrics", "instance": "10.42.0.7:9100", "job": "traefik-metrics",
           "namespace": "kube-system", "pod": "traefik-6b9f7d8c5d-q2w3e", "service": "traefik-metrics"}
OURS = "sre-mini-sre-mini-http@kubernetes"  # the Ingress backend of namespace sre-mini, Service sre-mini, port http
NOT_OURS = "sre-mini-billing-http@kubernetes"  # another backend in the same namespace
DEFAULT_OUT = os.path.join(HERE, "burn.test.yaml")

PER_MIN = 10000  # /work requests per minute in every case (all GET/HEAD /work responses, 4xx included)

# (bad requests per 10,000; expected percentage as humanizePercentage prints it; minutes of samples, just enough for
#  the `for` of the rule under test to elapse (promtool evaluates every rule each minute, so length costs CPU);
#  long windows of the FastBurn rules that must fire; the same for SlowBurn; None = not checked in this case)
CASES = [
    (145, "1.45%", 20, ["1h", "6h"], None),  # just above 14.4x (6x fires too)
    (143, "1.43%", 20, ["6h"], None),  # just below 14.4x: only the 6x rule
    (61, "0.61%", 20, ["6h"], None),  # just above 6x
    (59, "0.59%", 20, [], None),  # just below 6x
    (31, "0.31%", 65, [], ["1d"]),  # just above 3x (the 1x rule needs 3h of `for`, not reached)
    (29, "0.29%", 65, [], []),  # just below 3x
    (11, "0.11%", 185, [], ["3d"]),  # just above 1x
    (9, "0.09%", 185, [], []),  # just below 1x
]

SHORT = {"1h": "5m", "6h": "30m", "1d": "2h", "3d": "6h"}


def rules_by_key():
    with open(ALERTS, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    out = {}
    for group in doc["spec"]["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and "long" in rule.get("labels", {}):
                out[(rule["alert"], rule["labels"]["long"])] = rule
    return out


def counter(per_min, minutes):
    return f"0+{per_min}x{minutes}"


def availability_series(bad, minutes):
    # Errors spread over 500 and 503 (bulkhead rejections count) and over GET and HEAD; the noise series are outside
    # the SLI (probe and drill paths, client errors, another job) and must not move the ratio.
    e500_get = bad // 2
    e503_get = bad - e500_get - (bad // 4)
    e500_head = bad // 4
    ok_head = 1000
    client_err = 500  # GET /work answered 400 (bad cpu_ms): not a 5xx, so a good event
    ok_get = PER_MIN - bad - ok_head - client_err
    def s(method, code, route="/work", labels=POD):
        return "http_requests_total" + selector(labels, route=route, method=method, code=code)

    return [
        {"series": s("GET", "200"), "values": counter(ok_get, minutes)},
        {"series": s("GET", "500"), "values": counter(e500_get, minutes)},
        {"series": s("GET", "503"), "values": counter(e503_get, minutes)},
        {"series": s("HEAD", "200"), "values": counter(ok_head, minutes)},
        {"series": s("HEAD", "500"), "values": counter(e500_head, minutes)},
        {"series": s("HEAD", "503"), "values": counter(0, minutes)},
        {"series": s("GET", "400"), "values": counter(client_err, minutes)},
        {"series": s("POST", "405"), "values": counter(500, minutes)},
        {"series": s("GET", "503", route="/readyz"), "values": counter(5000, minutes)},
        {"series": s("POST", "500", route="/fail/work"), "values": counter(5000, minutes)},
        {"series": s("GET", "500", labels=OTHER), "values": counter(5000, minutes)},
    ]


def latency_series(bad, minutes):
    def b(method, le, route="/work", labels=POD):
        return "http_request_duration_seconds_bucket" + selector(labels, route=route, method=method, le=le)

    def c(method, route="/work", labels=POD):
        return "http_request_duration_seconds_count" + selector(labels, route=route, method=method)

    head = 1000
    get = PER_MIN - head
    return [
        {"series": b("GET", "2.1"), "values": counter(get - bad - 100, minutes)},
        {"series": b("GET", "2.5"), "values": counter(get - bad, minutes)},
        {"series": b("GET", "+Inf"), "values": counter(get, minutes)},
        {"series": c("GET"), "values": counter(get, minutes)},
        {"series": b("HEAD", "2.1"), "values": counter(head, minutes)},
        {"series": b("HEAD", "2.5"), "values": counter(head, minutes)},
        {"series": b("HEAD", "+Inf"), "values": counter(head, minutes)},
        {"series": c("HEAD"), "values": counter(head, minutes)},
        # Slow probes and another job's slow requests are outside the SLI.
        {"series": b("GET", "2.5", route="/readyz"),
         "values": counter(0, minutes)},
        {"series": c("GET", route="/readyz"),
         "values": counter(5000, minutes)},
        {"series": b("GET", "2.5", labels=OTHER),
         "values": counter(0, minutes)},
        {"series": c("GET", labels=OTHER),
         "values": counter(5000, minutes)},
    ]


def edge_availability_series(bad, minutes):
    # Traefik's own 502/504 (a refused or cut-off backend) and our 500s pass through alike; 499 (the client gave up)
    # and 405 are not 5xx; another backend's errors are not ours.
    e502 = bad // 2
    e504 = bad // 4
    e500 = bad - e502 - e504
    ok_head, client_gone = 1000, 500
    ok_get = PER_MIN - bad - ok_head - client_gone

    def s(method, code, svc=OURS):
        return "traefik_service_requests_total" + selector(TRAEFIK, exported_service=svc, method=method, code=code,
                                                           protocol="http")

    return [
        {"series": s("GET", "200"), "values": counter(ok_get, minutes)},
        {"series": s("GET", "502"), "values": counter(e502, minutes)},
        {"series": s("GET", "500"), "values": counter(e500, minutes)},
        {"series": s("HEAD", "200"), "values": counter(ok_head, minutes)},
        {"series": s("HEAD", "504"), "values": counter(e504, minutes)},
        {"series": s("GET", "499"), "values": counter(client_gone, minutes)},
        {"series": s("POST", "405"), "values": counter(500, minutes)},
        {"series": s("GET", "502", svc=NOT_OURS), "values": counter(5000, minutes)},
    ]


def edge_latency_series(bad, minutes):
    def b(method, le, svc=OURS):
        return "traefik_service_request_duration_seconds_bucket" + selector(
            TRAEFIK, exported_service=svc, method=method, code="200", protocol="http", le=le)

    head = 1000
    get = PER_MIN - head
    return [
        {"series": b("GET", "1.2"), "values": counter(get - bad - 100, minutes)},
        {"series": b("GET", "2.5"), "values": counter(get - bad, minutes)},
        {"series": b("GET", "+Inf"), "values": counter(get, minutes)},
        {"series": b("HEAD", "1.2"), "values": counter(head, minutes)},
        {"series": b("HEAD", "2.5"), "values": counter(head, minutes)},
        {"series": b("HEAD", "+Inf"), "values": counter(head, minutes)},
        # Another backend's slow requests are not ours.
        {"series": b("GET", "2.5", svc=NOT_OURS), "values": counter(0, minutes)},
        {"series": b("GET", "+Inf", svc=NOT_OURS), "values": counter(5000, minutes)},
    ]


# name in the test names: (slo label, fast alert, slow alert, input series, labels every alert of it carries)
SLIS = {
    "availability": ("availability", "SreMiniAvailabilityBudgetFastBurn", "SreMiniAvailabilityBudgetSlowBurn",
                     availability_series, {"job": POD["job"], "namespace": POD["namespace"]}),
    "latency": ("latency", "SreMiniLatencyBudgetFastBurn", "SreMiniLatencyBudgetSlowBurn",
                latency_series, {"job": POD["job"], "namespace": POD["namespace"]}),
    "edge availability": ("availability", "SreMiniEdgeAvailabilityBudgetFastBurn",
                          "SreMiniEdgeAvailabilityBudgetSlowBurn", edge_availability_series, {"namespace": "sre-mini"}),
    "edge latency": ("latency", "SreMiniEdgeLatencyBudgetFastBurn", "SreMiniEdgeLatencyBudgetSlowBurn",
                     edge_latency_series, {"namespace": "sre-mini"}),
}


def expected(rules, alert, slo, longs, pct, extra):
    out = []
    for long in longs:
        rule = rules[(alert, long)]
        labels = dict(rule["labels"])
        labels.update(extra)
        ann = dict(rule["annotations"])
        ann["description"] = ann["description"].replace("{{ $value | humanizePercentage }}", pct)
        assert labels["slo"] == slo and labels["short"] == SHORT[long]
        out.append({"exp_labels": labels, "exp_annotations": ann})
    return out


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    rules = rules_by_key()
    tests = []
    for sli, (slo, fast, slow, make, extra) in SLIS.items():
        for bad, pct, minutes, fast_longs, slow_longs in CASES:
            at = f"{minutes}m"
            alert_tests = []
            if bad == 145:
                # `for`: the rules are pending from 1m (the first two samples), so the 14.4x rule (for 2m) is not
                # firing at 2m but is at 4m; the 6x rule (for 15m) joins it from 16m.
                alert_tests += [
                    {"eval_time": "2m", "alertname": fast, "exp_alerts": []},
                    {"eval_time": "4m", "alertname": fast, "exp_alerts": expected(rules, fast, slo, ["1h"], pct, extra)},
                ]
            if bad == 31:
                # `for` of the 3x ticket rule: pending from 1m, for 1h -> not firing at 60m, firing at 62m.
                alert_tests += [
                    {"eval_time": "60m", "alertname": slow, "exp_alerts": []},
                    {"eval_time": "62m", "alertname": slow, "exp_alerts": expected(rules, slow, slo, ["1d"], pct, extra)},
                ]
            if fast_longs is not None:
                alert_tests.append({"eval_time": at, "alertname": fast, "exp_alerts": expected(rules, fast, slo, fast_longs, pct, extra)})
            if slow_longs is not None:
                alert_tests.append({"eval_time": at, "alertname": slow, "exp_alerts": expected(rules, slow, slo, slow_longs, pct, extra)})
            above = bad in (145, 61, 31, 11)
            tests.append({
                "name": f"{sli}: steady bad ratio {pct}, just {'above' if above else 'below'} a threshold",
                "interval": "1m",
                "input_series": make(bad, minutes),
                "alert_rule_test": alert_tests,
            })
    doc = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    header = (
        "# GENERATED by alerts/tests/gen-burn-tests.py; do not edit. Regenerate: python3 alerts/tests/gen-burn-tests.py\n"
        "# Threshold tests of the burn-rate alerts (just below and just above each threshold, for the four SLIs).\n"
        "# rules.yaml is the PrometheusRule's spec, extracted by scripts/check-alerts.sh next to a copy of this file.\n"
    )
    text = header + yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
