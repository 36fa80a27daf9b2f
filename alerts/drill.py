#!/usr/bin/env python3
"""The error-budget burn drill, driven by scripts/drill-burn.sh (which starts the binary and Prometheus, or not).

Against TARGET (an sre-mini) and PROM (a Prometheus that scrapes it as job="sre-mini" and evaluates
alerts/alerts.yaml), both on loopback:
  1. wait until Prometheus scrapes the target and the rules are loaded;
  2. drive GET /work with a few bounded client threads and wait until the 5m error ratio is recorded;
  3. POST /fail/work?ratio=RATIO and poll /api/v1/alerts until ALERT {long="1h"} is firing;
  4. POST /recover/work and show the 5m recording rule falling.
Exits 0 when the alert fired and the ratio fell within their bounded waits, 1 otherwise. Every loop is bounded in
time; the traffic threads also stop after MAX_REQUESTS requests.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
import urllib.request

RATIO_5M = 'job:sremini_work_errors:ratio_rate5m{job="sre-mini"}'
RATIO_1H = 'job:sremini_work_errors:ratio_rate1h{job="sre-mini"}'
MAX_REQUESTS = 500_000


def log(msg):
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}Z] {msg}", flush=True)


def loopback_only(url):
    host = urllib.parse.urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"FAIL: {url}: the drill talks to loopback only (use kubectl port-forward for a cluster)")


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def post(url, timeout=5):
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode(errors="replace").strip()


def query(prom, expr):
    """The value of an instant query with one result, as float; None when empty; NaN stays NaN."""
    d = get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    res = d["data"]["result"]
    if not res:
        return None
    return float(res[0]["value"][1])


def alerts(prom, name):
    d = get_json(f"{prom}/api/v1/alerts")
    return [a for a in d["data"]["alerts"] if a["labels"].get("alertname") == name]


def fmt(v):
    if v is None:
        return "none"
    return "NaN" if v != v else f"{v:.4f}"


class Traffic:
    """Bounded GET /work load: `threads` keep-alive clients, until stop() or the deadline."""

    def __init__(self, target, threads, deadline):
        u = urllib.parse.urlsplit(target)
        self.host, self.port = u.hostname, u.port or 80
        self.deadline = deadline
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.codes = {}
        self.errors = 0
        self.total = 0
        self.workers = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def start(self):
        for w in self.workers:
            w.start()

    def run(self):
        conn = None
        while not self.stop_flag.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.total >= MAX_REQUESTS:
                    return
                self.total += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                conn.request("GET", "/work")
                resp = conn.getresponse()
                resp.read()
                with self.lock:
                    self.codes[resp.status] = self.codes.get(resp.status, 0) + 1
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def snapshot(self):
        with self.lock:
            return dict(self.codes), self.errors

    def stop(self):
        self.stop_flag.set()
        for w in self.workers:
            w.join(timeout=15)


def wait_until(what, timeout, step, fn):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    sys.exit(f"FAIL: timed out after {timeout:.0f} s waiting for {what}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--prom", required=True)
    p.add_argument("--alert", default="SreMiniAvailabilityBudgetFastBurn")
    p.add_argument("--ratio", default="0.5")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--fire-timeout", type=float, default=180)
    p.add_argument("--fall-timeout", type=float, default=120)
    p.add_argument("--step", type=float, default=3, help="seconds between ratio samples after recovery")
    p.add_argument("--setup-timeout", type=float, default=60)
    p.add_argument("--mode", default="local")
    a = p.parse_args()
    target, prom = a.target.rstrip("/"), a.prom.rstrip("/")
    loopback_only(target)
    loopback_only(prom)
    t_start = time.monotonic()

    # 1. Prometheus sees the target and has our rules.
    wait_until('up{job="sre-mini"} == 1 in Prometheus', a.setup_timeout, 1,
               lambda: query(prom, 'max(up{job="sre-mini"})') == 1.0)
    groups = get_json(f"{prom}/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    fast = [r for r in rules if r.get("name") == a.alert and r.get("labels", {}).get("long") == "1h"]
    if not fast:
        sys.exit(f"FAIL: Prometheus at {prom} has no alerting rule {a.alert}{{long=\"1h\"}}: the PrometheusRule is not "
                 f"loaded (check its labels against the Prometheus' ruleSelector)")
    rule_for = fast[0].get("duration", 0)
    log(f"Prometheus scrapes job sre-mini and has {len(rules)} rules loaded; {a.alert}{{long=1h}} has for: {rule_for:g}s")
    firing = [x for x in alerts(prom, a.alert) if x["state"] == "firing"]
    if firing:
        sys.exit(f"FAIL: {a.alert} is already firing; recover the target (POST /recover/work) and wait for it to "
                 "resolve before drilling")

    # 2. Traffic, until the 5m ratio exists (two scrapes with /work traffic).
    budget = a.setup_timeout + a.fire_timeout + a.fall_timeout + 60
    traffic = Traffic(target, a.threads, time.monotonic() + budget)
    traffic.start()
    try:
        log(f"driving GET {target}/work with {a.threads} clients")
        before = wait_until("the 5m error ratio to be recorded", a.setup_timeout, 1,
                            lambda: (lambda v: v is not None and v == v and (v,))(query(prom, RATIO_5M)))[0]
        log(f"5m error ratio before the fault: {fmt(before)}")

        # 3. Fault, then the page.
        status, body = post(f"{target}/fail/work?ratio={a.ratio}")
        t_fault = time.time()
        log(f"POST /fail/work?ratio={a.ratio} -> {status} {body[:80]}")
        pending_after = None
        end = time.monotonic() + a.fire_timeout
        fired = None
        last_report = time.monotonic()
        while time.monotonic() < end:
            mine = [x for x in alerts(prom, a.alert) if x["labels"].get("long") == "1h"]
            if mine and pending_after is None:
                pending_after = time.time() - t_fault
                log(f"{a.alert}{{long=1h}} is {mine[0]['state']} after {pending_after:.1f} s "
                    f"(5m ratio {fmt(query(prom, RATIO_5M))}, 1h ratio {fmt(query(prom, RATIO_1H))})")
            if mine and mine[0]["state"] == "firing":
                fired = mine[0]
                break
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                codes, errs = traffic.snapshot()
                log(f"waiting: {int(time.time() - t_fault)} s since the fault; client saw {codes} "
                    f"({errs} transport errors)")
            time.sleep(0.5)
        if fired is None:
            sys.exit(f"FAIL: {a.alert}{{long=1h}} did not fire within {a.fire_timeout:.0f} s of the fault "
                     f"(5m ratio {fmt(query(prom, RATIO_5M))}, 1h ratio {fmt(query(prom, RATIO_1H))})")
        fire_after = time.time() - t_fault
        at_fire = query(prom, RATIO_5M)
        log(f"{a.alert}{{long=1h}} FIRING after {fire_after:.1f} s")

        # 4. Recovery: the 5m ratio falls as clean requests fill the window.
        status, body = post(f"{target}/recover/work")
        t_rec = time.time()
        log(f"POST /recover/work -> {status} {body[:80]}")
        time.sleep(2)  # one scrape + one evaluation, so the first value is the peak, not a stale sample
        at_rec = query(prom, RATIO_5M)
        series = [(0.0, at_rec)]
        end = time.monotonic() + a.fall_timeout
        fell = False
        while time.monotonic() < end:
            time.sleep(a.step)
            v = query(prom, RATIO_5M)
            series.append((time.time() - t_rec, v))
            log(f"  {time.time() - t_rec:5.1f} s after recovery: 5m ratio {fmt(v)}, 1h ratio {fmt(query(prom, RATIO_1H))}")
            # Fallen: 10% below the value at recovery, and the last three changes of the value all downwards
            # (repeated values are skipped: a cluster Prometheus re-evaluates only every 30 s or so).
            # It falls slowly: the window still holds every bad request of the fault and only clean requests are
            # added; the 14.4x page resolves once the 5m ratio is under 1.44%, up to 5 minutes later.
            distinct = [x[1] for i, x in enumerate(series) if x[1] is not None and (i == 0 or x[1] != series[i - 1][1])]
            last = distinct[-4:]
            if (v is not None and at_rec and v <= 0.9 * at_rec and len(last) == 4
                    and all(b < a_ for a_, b in zip(last, last[1:]))):
                fell = True
                break
        codes, errs = traffic.snapshot()
    finally:
        traffic.stop()
    if not fell:
        sys.exit(f"FAIL: the 5m error ratio did not fall to 90% of {fmt(at_rec)} within {a.fall_timeout:.0f} s of "
                 "/recover/work")
    # Monotonic up to 2% (rate() extrapolation at the window's edges wobbles a little from scrape to scrape).
    falling = all(b[1] is not None and b[1] <= a_[1] * 1.02 + 1e-9 for a_, b in zip(series, series[1:]))
    if not falling:
        sys.exit(f"FAIL: the 5m error ratio did not fall monotonically after recovery: {series}")

    print()
    print("=== drill-burn: result ===")
    print(f"mode:            {a.mode}; target {target}; Prometheus {prom}")
    print(f"traffic:         {sum(codes.values())} GET /work answered {dict(sorted(codes.items()))}, "
          f"{errs} transport errors, {a.threads} clients")
    print(f"fault:           POST /fail/work?ratio={a.ratio} at {time.strftime('%H:%M:%S', time.gmtime(t_fault))}Z")
    print(f"alert pending:   {pending_after:.1f} s after the fault")
    print(f"alert firing:    {fire_after:.1f} s after the fault (rule for: {rule_for:g} s)")
    print(f"5m error ratio:  before the fault {fmt(before)}; at firing {fmt(at_fire)}; "
          f"at /recover/work {fmt(at_rec)}; {series[-1][0]:.0f} s later {fmt(series[-1][1])} (falling)")
    print("5m ratio after /recover/work: " + ", ".join(f"+{t:.0f}s {fmt(v)}" for t, v in series))
    print(f"total drill:     {time.monotonic() - t_start:.0f} s")
    print(f"alert as Prometheus reported it (GET {prom}/api/v1/alerts):")
    print(json.dumps(fired, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
