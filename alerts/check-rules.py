#!/usr/bin/env python3
"""Static and live checks of alerts/alerts.yaml, run by scripts/check-alerts.sh (see there for the whole list).

Subcommands (each prints what it checked and exits 1 with one "FAIL:" line per problem):
  schema     ALERTS SCHEMA                 the PrometheusRule validates against the CRD's JSON schema; kind, apiVersion,
                                           namespace (the service's own) and the labels the usual rule selectors need
  structure  ALERTS RUNBOOK                labels and annotations of every alert; every runbook_url anchor resolves to
                                           a heading of the runbook (GitHub's slug rules)
  coverage   ALERTS TESTDIR                every alerting rule has a unit test in which it fires and one in which its
                                           alert must not fire; every recording rule is read by an alert
  testlabels FIXTURE TESTDIR               every input series of a scraped metric (http_*, sremini_*, up) in the unit
                                           tests carries exactly the target labels of FIXTURE (a pod's, as the
                                           operator's scrape gives them; the cluster step checks it against a real
                                           Prometheus)
  tenant     ALERTS                        no rule names a namespace: no selector matches on it, no alert sets it, so a
                                           kustomize `namespace:` override or the operator's enforced namespace label
                                           moves the rules with the objects
  routes     ALERTS ALERTMANAGER.yml       `amtool config routes test` for every alerting rule: in namespace sre-mini it
                                           reaches the receiver its severity names; the same alert from another
                                           namespace reaches none of ours
  metrics    ALERTS FRESH.txt LIVE.txt     every metric a rule names is recorded by a rule, exported by the binary or
                                           in the documented allow-list below; every selector on an exported metric
                                           matches a live series; every exported series an *Absent alert or an
                                           absent() expects exists on a fresh binary (before any traffic)
"""
import json
import os
import re
import sys

import yaml

BASE_URL = "https://github.com/sre-mini/sre-mini/blob/main/runbooks/incident.md#"
# The ecosystem's severities (kube-prometheus, the mixins) and what each means here (label urgency).
SEVERITIES = {"critical": "page", "warning": "ticket", "info": "none"}

# Metrics the rules may name that the sre-mini binary does not export. Each one is documented upstream:
# - up: synthesised by Prometheus for every scrape target
#   (https://prometheus.io/docs/concepts/jobs_instances/#automatically-generated-labels-and-time-series)
# - kube_*: kube-state-metrics v2 (https://github.com/kubernetes/kube-state-metrics/tree/main/docs/metrics),
#   files workload/horizontalpodautoscaler-metrics.md, workload/pod-metrics.md, workload/deployment-metrics.md,
#   policy/poddisruptionbudget-metrics.md. Labels used: namespace, horizontalpodautoscaler, pod, container, reason,
#   deployment, poddisruptionbudget.
# - traefik_*: Traefik's own metrics of a service (https://doc.traefik.io/traefik/observability/metrics/overview/),
#   labels code, method, protocol, service (renamed exported_service by a ServiceMonitor scrape) and le. The edge
#   SLIs read them in one rule group (alerts.yaml, sre-mini-edge.rules), which says what is assumed.
ALLOW = {
    "up": "Prometheus: synthesised per target",
    "traefik_service_requests_total": "Traefik: requests per service, by code and method",
    "traefik_service_request_duration_seconds_bucket": "Traefik: request duration histogram per service",
    "kube_horizontalpodautoscaler_status_current_replicas": "kube-state-metrics: HPA current replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas": "kube-state-metrics: HPA maxReplicas",
    "kube_horizontalpodautoscaler_spec_min_replicas": "kube-state-metrics: HPA minReplicas",
    "kube_horizontalpodautoscaler_status_desired_replicas": "kube-state-metrics: HPA desired replicas",
    "kube_pod_container_status_last_terminated_reason": "kube-state-metrics: container's last termination reason",
    "kube_poddisruptionbudget_status_current_healthy": "kube-state-metrics: PDB healthy pods",
    "kube_poddisruptionbudget_status_desired_healthy": "kube-state-metrics: PDB minimum healthy pods it needs",
    "kube_pod_container_status_restarts_total": "kube-state-metrics: container restarts",
    "kube_pod_container_status_waiting_reason": "kube-state-metrics: container waiting reason",
    "kube_deployment_status_replicas_available": "kube-state-metrics: available replicas",
    "kube_deployment_spec_replicas": "kube-state-metrics: desired replicas",
    "kube_deployment_status_replicas_updated": "kube-state-metrics: replicas running the current template",
    "kube_deployment_status_condition": "kube-state-metrics: Deployment conditions (condition, status labels)",
}
# Labels Prometheus attaches to every scraped series (target labels), so /metrics itself never carries them.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}

KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "atan2",
    "inf", "nan",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}

problems = []


def fail(msg):
    problems.append(msg)
    print(f"FAIL: {msg}", file=sys.stderr)


def finish(what):
    if problems:
        print(f"{len(problems)} problem(s) in {what}", file=sys.stderr)
        sys.exit(1)


def load_rule(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    rules = [d for d in docs if isinstance(d, dict) and d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        fail(f"{path}: expected exactly one PrometheusRule document, found {len(rules)}")
        finish("loading")
    return rules[0]


def all_rules(obj):
    for group in obj["spec"]["groups"]:
        for rule in group["rules"]:
            yield group["name"], rule


def rule_id(rule):
    """A readable identity: alert name plus the labels that tell same-named rules apart."""
    if "record" in rule:
        return rule["record"]
    labels = rule.get("labels", {})
    extra = ",".join(f"{k}={labels[k]}" for k in ("long", "short") if k in labels)
    return f"{rule['alert']}{{{extra}}}" if extra else rule["alert"]


# --------------------------------------------------------------------------------------------------- schema ----
def cmd_schema(alerts, schema_path):
    import jsonschema

    obj = load_rule(alerts)
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    # No check_schema(): the CRD's patterns are Go RE2 (`^(?i)...` puts a flag mid-pattern, which Python's
    # meta-schema format check rejects although Kubernetes accepts it). Validation itself compiles only the
    # patterns of fields present in the document.
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    errors = sorted(cls(schema).iter_errors(obj), key=lambda e: list(e.absolute_path))
    for e in errors:
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        fail(f"{alerts}: schema {os.path.basename(schema_path)}: at {where}: {e.message}")
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(f"{alerts}: apiVersion must be monitoring.coreos.com/v1, is {obj.get('apiVersion')!r}")
    meta = obj.get("metadata") or {}
    if meta.get("namespace") != "sre-mini":
        fail(f"{alerts}: metadata.namespace must be the service's own, sre-mini (a kustomize namespace override moves it), is {meta.get('namespace')!r}")
    labels = meta.get("labels") or {}
    want = {"release": "kube-prometheus-stack", "prometheus": "k8s", "role": "alert-rules"}
    for k, v in want.items():
        if labels.get(k) != v:
            fail(f"{alerts}: metadata.labels.{k} must be {v!r} for the usual rule selectors, is {labels.get(k)!r}")
    finish("schema")
    print(f"schema: {alerts} is a valid PrometheusRule ({os.path.basename(schema_path)}), namespace sre-mini, "
          f"selector labels {', '.join(f'{k}={v}' for k, v in want.items())}")


# ------------------------------------------------------------------------------------------------ structure ----
def github_slugs(markdown_path):
    """Anchors GitHub generates for the ATX headings of a Markdown file (fenced code blocks skipped)."""
    slugs, seen, fence = [], {}, None
    with open(markdown_path, encoding="utf-8") as f:
        for line in f:
            stripped = line.strip()
            m = re.match(r"^(`{3,}|~{3,})", stripped)
            if m:
                if fence is None:
                    fence = m.group(1)[0]
                elif stripped.startswith(fence * 3):
                    fence = None
                continue
            if fence is not None:
                continue
            m = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            text = m.group(2)
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
            slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            slugs.append(slug if n == 0 else f"{slug}-{n}")
    return slugs


def cmd_structure(alerts, runbook):
    obj = load_rule(alerts)
    anchors = set(github_slugs(runbook))
    n_alerts = 0
    for group, rule in all_rules(obj):
        if "alert" not in rule:
            continue
        n_alerts += 1
        rid = rule_id(rule)
        labels = rule.get("labels") or {}
        ann = rule.get("annotations") or {}
        if labels.get("severity") not in SEVERITIES:
            fail(f"{rid}: label severity must be one of {sorted(SEVERITIES)}, is {labels.get('severity')!r}")
        elif labels.get("urgency") != SEVERITIES[labels["severity"]]:
            fail(f"{rid}: severity {labels['severity']} needs urgency {SEVERITIES[labels['severity']]!r}, "
                 f"has {labels.get('urgency')!r}")
        is_burn = re.search(r"Budget(Fast|Slow)Burn$", rule["alert"]) is not None
        if is_burn and not ("long" in labels and "short" in labels):
            fail(f"{rid}: a burn-rate alert needs labels long and short (the windows it compares)")
        if is_burn:
            windows = re.findall(r"ratio_rate(\w+)", rule["expr"])
            if sorted(windows) != sorted([labels.get("long"), labels.get("short")]):
                fail(f"{rid}: labels long/short {labels.get('long')}/{labels.get('short')} do not match the windows "
                     f"in the expression {windows}")
        for key in ("summary", "description", "runbook_url"):
            if not str(ann.get(key, "")).strip():
                fail(f"{rid}: annotation {key} is missing or empty")
        if "$value" not in str(ann.get("description", "")):
            fail(f"{rid}: annotation description must show the value ({{{{ $value }}}})")
        url = str(ann.get("runbook_url", ""))
        if not url.startswith(BASE_URL):
            fail(f"{rid}: runbook_url must start with {BASE_URL}, is {url!r}")
            continue
        anchor = url[len(BASE_URL):]
        if anchor not in anchors:
            fail(f"{rid}: runbook_url anchor #{anchor} matches no heading in {runbook} "
                 f"(add a heading whose GitHub slug is {anchor!r})")
    finish("structure")
    print(f"structure: {n_alerts} alerting rules have severity, long/short where they burn, summary, a description "
          f"with $value and a runbook_url whose anchor is a heading of {runbook} ({len(anchors)} headings)")


# ------------------------------------------------------------------------------------------------- coverage ----
def cmd_coverage(alerts, testdir):
    obj = load_rule(alerts)
    alerting = [r for _, r in all_rules(obj) if "alert" in r]
    records = [r["record"] for _, r in all_rules(obj) if "record" in r]
    fired = {}  # alertname -> list of expected label sets
    quiet = set()
    files = sorted(f for f in os.listdir(testdir) if f.endswith(".yaml"))
    n_cases = 0
    for name in files:
        with open(os.path.join(testdir, name), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for test in doc.get("tests", []):
            for case in test.get("alert_rule_test", []) or []:
                n_cases += 1
                exp = case.get("exp_alerts") or []
                if exp:
                    fired.setdefault(case["alertname"], []).extend(e.get("exp_labels") or {} for e in exp)
                else:
                    quiet.add(case["alertname"])
    for rule in alerting:
        rid = rule_id(rule)
        static = {k: str(v) for k, v in (rule.get("labels") or {}).items()}
        cases = fired.get(rule["alert"], [])
        if not any(all(str(c.get(k)) == v for k, v in static.items()) for c in cases):
            fail(f"{rid}: no unit test in {testdir} expects this rule to fire (exp_alerts with labels {static})")
        if rule["alert"] not in quiet:
            fail(f"{rid}: no unit test in {testdir} expects alert {rule['alert']} NOT to fire (exp_alerts: [])")
    known = {r["alert"] for r in alerting}
    for name in sorted(set(fired) | quiet):
        if name not in known:
            fail(f"unit tests name alert {name}, which alerts.yaml does not define")
    # A recording rule is read when an alert reads it, or a recording rule that is read does (transitively).
    exprs = " ".join(r["expr"] for r in alerting)
    rec_expr = {r["record"]: r["expr"] for _, r in all_rules(obj) if "record" in r}
    read, changed = set(), True
    while changed:
        changed = False
        text = exprs + " " + " ".join(rec_expr[r] for r in read)
        for rec in records:
            if rec not in read and re.search(re.escape(rec) + r"(?![\w:])", text):
                read.add(rec)
                changed = True
    for rec in records:
        if rec not in read:
            fail(f"recording rule {rec} is read by no alert")
    finish("coverage")
    print(f"coverage: {len(alerting)} alerting rules ({len(known)} alerts) each fire in a unit test and have a "
          f"must-not-fire case ({n_cases} alert cases in {', '.join(files)}); {len(records)} recording rules all read")


# -------------------------------------------------------------------------------------------------- metrics ----
def selectors(expr):
    """(metric name, [(label, op, value)]) for every vector selector in a PromQL expression."""
    out, i, n = [], 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" else 1
            i = j + 1
        elif c == "[":
            i = expr.index("]", i) + 1
        elif c == "{":
            raise ValueError(f"selector without a metric name at: {expr[i:i + 40]!r}")
        elif re.match(r"[A-Za-z_:]", c) and (i == 0 or not re.match(r"[\w.]", expr[i - 1])):
            m = re.match(r"[A-Za-z_:][\w:]*", expr[i:])
            ident = m.group(0)
            i += len(ident)
            j = i
            while j < n and expr[j].isspace():
                j += 1
            nxt = expr[j] if j < n else ""
            if ident in GROUPING and nxt == "(":
                i = expr.index(")", j) + 1
            elif ident in KEYWORDS or nxt == "(":
                pass  # aggregation, keyword or function call
            elif nxt == "{":
                end = expr.index("}", j)
                body = expr[j + 1:end]
                matchers = re.findall(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?', body)
                if re.sub(r'\s*[A-Za-z_]\w*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*,?', "", body).strip():
                    raise ValueError(f"cannot parse matchers {body!r}")
                out.append((ident, matchers))
                i = end + 1
            else:
                out.append((ident, []))
        else:
            i += 1
    return out


def parse_exposition(path):
    """{metric sample name: [label dict, ...]} from Prometheus text format."""
    series = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([A-Za-z_:][\w:]*)(\{(.*)\})?\s+\S+", line)
            if not m:
                continue
            labels = dict((k, bytes(v, "utf-8").decode("unicode_escape"))
                          for k, v in re.findall(r'([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            series.setdefault(m.group(1), []).append(labels)
    return series


def matches(labels, matchers):
    for name, op, value in matchers:
        have = labels.get(name, "")
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "=~" and not re.fullmatch(value, have):
            return False
        if op == "!~" and re.fullmatch(value, have):
            return False
    return True


def cmd_metrics(alerts, fresh_path, live_path):
    obj = load_rule(alerts)
    fresh = parse_exposition(fresh_path)
    live = parse_exposition(live_path)
    if not live.get("http_requests_total"):
        fail(f"{live_path}: no http_requests_total samples; is this the binary's /metrics output?")
        finish("metrics")
    records = {r["record"] for _, r in all_rules(obj) if "record" in r}
    used = {}
    n_sel = 0
    for _, rule in all_rules(obj):
        rid = rule_id(rule)
        try:
            sels = selectors(rule["expr"])
        except ValueError as e:
            fail(f"{rid}: {e}")
            continue
        for name, matchers in sels:
            n_sel += 1
            used.setdefault(name, set()).add(rid)
            if name in records or name in ALLOW:
                continue
            if name not in live:
                fail(f"{rid}: metric {name} is not in the binary's /metrics output, not recorded by a rule and not "
                     f"in the allow-list of kube-state-metrics/Prometheus metrics")
                continue
            own = [(k, op, v) for k, op, v in matchers if k not in TARGET_LABELS]
            if not any(matches(s, own) for s in live[name]):
                shown = ",".join(f'{k}{op}"{v}"' for k, op, v in own)
                fail(f"{rid}: selector {name}{{{shown}}} matches no series of the live /metrics output "
                     f"(a label value or bucket boundary the binary does not export)")
        # The series an *Absent alert (or an absent()) expects must exist on a binary that has served nothing yet,
        # or it fires on idle pods.
        expects = list(sels) if rule.get("alert", "").endswith("Absent") else []
        for inner in re.findall(r"absent\(([^()]*)\)", rule["expr"]):
            expects += selectors(inner)
        for name, matchers in expects:
            if name in ALLOW or name in records:
                continue
            own = [(k, op, v) for k, op, v in matchers if k not in TARGET_LABELS]
            if not any(matches(s, own) for s in fresh.get(name, [])):
                shown = ",".join(f'{k}{op}"{v}"' for k, op, v in own)
                fail(f"{rid}: would fire on an idle pod: a fresh binary does not export {name}{{{shown}}} before its "
                     f"first request")
    unknown = sorted(n for n in used if n not in records and n not in ALLOW and n not in live)
    finish("metrics")
    exported = sorted(n for n in used if n in live)
    allowed = sorted(n for n in used if n in ALLOW)
    print(f"metrics: {n_sel} selectors in {len(used)} metric names; exported by the binary and matched by live "
          f"series: {', '.join(exported)}; allow-listed (kube-state-metrics / Prometheus): {', '.join(allowed)}; "
          f"recorded by rules: {len([n for n in used if n in records])}; unknown: {len(unknown)}")


# --------------------------------------------------------------------------------------------------- tenant ----
def cmd_tenant(alerts):
    obj = load_rule(alerts)
    n_sel = n_rules = 0
    for _, rule in all_rules(obj):
        n_rules += 1
        rid = rule_id(rule)
        try:
            sels = selectors(rule["expr"])
        except ValueError as e:
            fail(f"{rid}: {e}")
            continue
        for name, matchers in sels:
            n_sel += 1
            for k, op, v in matchers:
                if k == "namespace":
                    fail(f'{rid}: selector {name}{{namespace{op}"{v}"}} names a namespace: a copy of the kit in another '
                         f"namespace would not see it (aggregate by namespace instead)")
        if "namespace" in (rule.get("labels") or {}):
            fail(f"{rid}: sets label namespace={rule['labels']['namespace']!r}: every copy's alert would carry it")
    finish("tenant")
    print(f"tenant: {n_rules} rules, {n_sel} selectors; none names a namespace, no alert sets one")


# ------------------------------------------------------------------------------------------------ testlabels ----
def cmd_testlabels(fixture, testdir):
    with open(fixture, encoding="utf-8") as f:
        want = json.load(f)
    n, namespaces = 0, set()
    for name in sorted(f for f in os.listdir(testdir) if f.endswith(".yaml")):
        with open(os.path.join(testdir, name), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for test in doc.get("tests", []):
            for inp in test.get("input_series", []):
                m = re.match(r"([A-Za-z_:][\w:]*)\{(.*)\}$", inp["series"].strip())
                if not m:
                    fail(f"{name}: {test['name']}: cannot parse series {inp['series']!r}")
                    continue
                metric = m.group(1)
                if not (metric.startswith(("http_", "sremini_")) or metric == "up"):
                    continue
                n += 1
                labels = dict(re.findall(r'([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2)))
                have = {k: v for k, v in labels.items() if k in want}
                if set(have) != set(want):
                    fail(f"{name}: {test['name']}: {metric} lacks target labels {sorted(set(want) - set(have))} "
                         f"that every scraped series carries")
                    continue
                namespaces.add(have["namespace"])
                if have["job"] != want["job"]:
                    continue  # another Service's pod (noise the SLIs must ignore), shaped the same way
                fixed = {k: want[k] for k in ("job", "service", "endpoint", "container")}
                if {k: have[k] for k in fixed} != fixed or not have["pod"].startswith(want["job"] + "-") \
                        or have["instance"].rsplit(":", 1)[-1] != want["instance"].rsplit(":", 1)[-1]:
                    fail(f"{name}: {test['name']}: {metric} target labels {have} are not a pod's of the kit "
                         f"({fixture}: {want}, pod, instance and namespace aside)")
    finish("testlabels")
    print(f"testlabels: {n} input series of scraped metrics carry the target labels of {fixture}, which the cluster "
          f"step reads off a real Prometheus (namespaces {', '.join(sorted(namespaces))})")


# ---------------------------------------------------------------------------------------------------- routes ----
RECEIVER = {"critical": "sre-mini/sre-mini/page", "warning": "sre-mini/sre-mini/ticket", "info": "sre-mini/sre-mini/info"}


def cmd_routes(alerts, am_config):
    import subprocess

    obj = load_rule(alerts)
    n = 0
    for _, rule in all_rules(obj):
        if "alert" not in rule:
            continue
        labels = {k: str(v) for k, v in (rule.get("labels") or {}).items()}
        for ns, want in (("sre-mini", RECEIVER.get(labels.get("severity"), "?")), ("sre-mini-staging", "null")):
            lab = {"alertname": rule["alert"], "job": "sre-mini", **labels, "namespace": ns}
            args = ["amtool", "config", "routes", "test", "--config.file", am_config, f"--verify.receivers={want}"]
            args += [f"{k}={v}" for k, v in sorted(lab.items())]
            res = subprocess.run(args, capture_output=True, text=True)
            n += 1
            got = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr.strip()
            if res.returncode != 0:
                fail(f"{rule_id(rule)} in namespace {ns}: amtool routes it to {got!r}, want {want!r}")
    finish("routes")
    print(f"routes: {n} `amtool config routes test` cases passed (every alerting rule in namespace sre-mini reaches "
          f"the receiver of its severity, and from namespace sre-mini-staging none of ours)")


def main():
    cmds = {"routes": (cmd_routes, 2), "testlabels": (cmd_testlabels, 2), "schema": (cmd_schema, 2), "structure": (cmd_structure, 2), "coverage": (cmd_coverage, 2),
            "metrics": (cmd_metrics, 3), "tenant": (cmd_tenant, 1)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) != 2 + cmds[sys.argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    fn, _ = cmds[sys.argv[1]]
    fn(*sys.argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
