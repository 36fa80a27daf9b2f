"""The Python steps of scripts/check-metrics.sh: the traffic that populates every family, the Prometheus API
answers it reads, the Content-Type parse, and the cost of one scrape.

    PYTHONPATH=tools python3 -m srekit.metrics_check traffic PORT
    PYTHONPATH=tools python3 -m srekit.metrics_check scalar < query.json        # value of a 1-element vector
    PYTHONPATH=tools python3 -m srekit.metrics_check le-values < query.json     # the `le` labels, in order
    PYTHONPATH=tools python3 -m srekit.metrics_check target-health TARGETS_JSON
    PYTHONPATH=tools python3 -m srekit.metrics_check content-type CONTENT_TYPE
    PYTHONPATH=tools python3 -m srekit.metrics_check scrape-cost PORT SCRAPES
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import time
from email.message import Message

from .http1 import Conn, exchange

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"]
ROUTES = ["/healthz", "/readyz", "/metrics", "/work", "/fail/ready", "/recover/ready", "/fail/work",
          "/recover/work", "/panic", "/no/such/path"]


def traffic(port: int) -> None:
    """Every method on every route, the drills, and every early rejection the server can send, against a server
    started with the small limits check-metrics.sh gives it (bulkhead 1, 64 connections, 20 fields, 1 KiB bodies,
    500 ms head and body timeouts, 300 ms write timeout)."""
    seen: dict = {}

    def one(raw: bytes, head: bool = False, expect: int | None = None):
        r = exchange(port, raw, head)
        status = r.status if r else None
        seen[status] = seen.get(status, 0) + 1
        if expect is not None and status != expect:
            raise SystemExit(f"{raw[:60]!r}: expected {expect}, got {status}")
        return status

    # Every method on every route (never GET or POST /panic: that drill ends the process).
    for m in METHODS:
        for r in ROUTES:
            if r == "/panic" and m in ("GET", "POST"):
                continue
            one(f"{m} {r} HTTP/1.1\r\nHost: t\r\n\r\n".encode(), head=(m == "HEAD"))
            if r == "/fail/work":
                one(b"POST /recover/work HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
            if r == "/fail/ready":
                one(b"POST /recover/ready HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
    one(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
    # Drills: /work answers 500, /readyz answers 503, then both recover.
    one(b"GET /fail/work HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
    one(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n", expect=500)
    one(b"HEAD /work HTTP/1.1\r\nHost: t\r\n\r\n", head=True, expect=500)
    one(b"GET /fail/work?ratio=0.5 HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
    one(b"GET /recover/work HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
    one(b"GET /fail/ready HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
    one(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", expect=503)
    one(b"HEAD /readyz HTTP/1.1\r\nHost: t\r\n\r\n", head=True, expect=503)
    one(b"GET /recover/ready HTTP/1.1\r\nHost: t\r\n\r\n", expect=200)
    # 400s: handler validation, head parse errors, chunked body errors.
    one(b"GET /work?cpu_ms=x HTTP/1.1\r\nHost: t\r\n\r\n", expect=400)
    one(b"GET /fail/work?ratio=7 HTTP/1.1\r\nHost: t\r\n\r\n", expect=400)
    one(b"GET /healthz HTTP/1.1\r\n\r\n", expect=400)
    one(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", expect=400)
    one(b"GET /x HTTP/1.1\nHost: t\r\n\r\n", expect=400)
    one(b"CONNECT /x HTTP/1.1\r\nHost: t\r\n\r\n", expect=400)
    one(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", expect=400)
    one(b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", expect=400)
    # 413 (declared and chunked), 414, 417, 431 (bytes and fields), 501, 505.
    one(b"POST /fail/work HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n", expect=413)
    one(b"PUT /work HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n", expect=413)
    one(b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", expect=414)
    one(b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: tea\r\n\r\n", expect=417)
    one(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n", expect=431)
    one(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"X-F: 1\r\n" * 30 + b"\r\n", expect=431)
    one(b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", expect=501)
    one(b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", expect=505)
    # 408: a head and a body that never complete.
    for raw in (b"GET /healthz HTTP/1.1\r\nHost: t\r\n", b"POST /readyz HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nab"):
        one(raw, expect=408)
    # 503 from the bulkhead: hold the one /work slot, then ask again.
    holder = Conn(port)
    holder.send(b"GET /work?cpu_ms=5 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    one(b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n", expect=503)
    one(b"HEAD /work HTTP/1.1\r\nHost: t\r\n\r\n", head=True, expect=503)
    r = holder.response()
    assert r is not None and r.status == 200, r
    holder.close()
    # 503 at the connection cap (64): open 70 connections at once.
    many = [Conn(port) for _ in range(70)]
    time.sleep(0.3)
    for c in many:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    statuses = []
    for c in many:
        r = c.response()
        statuses.append(r.status if r else None)
    for c in many:
        c.close()
    if 503 not in statuses:
        raise SystemExit(f"connection cap never refused: {statuses}")
    # Write timeout: pipeline scrapes and read nothing. More requests keep trickling in (each one a new poll event),
    # so output piles up beyond what the kernel buffers take, until the server gives up on the connection.
    w = socket.socket()
    w.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    w.connect(("127.0.0.1", port))
    w.settimeout(1)
    w.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 200)
    deadline = time.time() + 10
    try:
        while time.time() < deadline:
            w.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.02)
    except OSError:
        pass  # reset: the server closed it (write timeout)
    w.close()
    time.sleep(0.2)
    if None in seen:
        raise SystemExit(f"{seen[None]} requests got no response at all")
    print("responses by status:", dict(sorted(seen.items())))


def scalar(result_json: str) -> str:
    r = json.loads(result_json)["data"]["result"]
    return r[0]["value"][1] if len(r) == 1 else ""


def le_values(result_json: str) -> str:
    les = {r["metric"]["le"] for r in json.loads(result_json)["data"]["result"]}
    return " ".join(sorted(les, key=float))


def target_health(targets_json: str) -> bool:
    t = [x for x in json.loads(targets_json)["data"]["activeTargets"] if x["labels"]["job"] == "sre-mini"]
    assert len(t) == 1, t
    t = t[0]
    print(f"target {t['scrapeUrl']}: health={t['health']} lastError={t['lastError']!r} "
          f"lastScrapeDuration={t['lastScrapeDuration']:.6f}s")
    return t["health"] == "up" and not t["lastError"]


def content_type_ok(ct: str) -> bool:
    """Parsed the way Go's mime.ParseMediaType would: text/plain with version=0.0.4 and charset=utf-8."""
    m = Message()
    m["content-type"] = ct
    return m.get_content_type() == "text/plain" and m.get_param("version") == "0.0.4" and m.get_param("charset") == "utf-8"


def scrape_cost(port: int, n: int) -> None:
    """Median round trip of GET /metrics against GET /healthz on one keep-alive connection."""
    with Conn(port, nodelay=True) as c:
        def get(path):
            t0 = time.perf_counter_ns()
            c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            r = c.response()
            if r is None:
                raise SystemExit(f"GET {path}: connection closed")
            return time.perf_counter_ns() - t0, r.body

        for _ in range(20):
            get("/metrics")
            get("/healthz")
        m, h = [], []
        body = b""
        for _ in range(n):
            t, body = get("/metrics")
            m.append(t)
            t, _ = get("/healthz")
            h.append(t)
    series = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))

    def q(xs, p):
        return sorted(xs)[int(len(xs) * p) - 1]

    print(f"series {series}, bytes {len(body)}")
    print(f"GET /metrics round trip: median {statistics.median(m)/1e3:.0f} us, p90 {q(m, .9)/1e3:.0f} us, "
          f"min {min(m)/1e3:.0f} us")
    print(f"GET /healthz round trip: median {statistics.median(h)/1e3:.0f} us (same connection, for the fixed cost)")
    print(f"render + transfer of /metrics, median: {(statistics.median(m)-statistics.median(h))/1e3:.0f} us")


def main(argv: list[str]) -> int:
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "traffic":
        traffic(int(args[0]))
    elif cmd == "scalar":
        print(scalar(sys.stdin.read()))
    elif cmd == "le-values":
        print(le_values(sys.stdin.read()))
    elif cmd == "target-health":
        return 0 if target_health(args[0]) else 1
    elif cmd == "content-type":
        return 0 if content_type_ok(args[0]) else 1
    elif cmd == "scrape-cost":
        scrape_cost(int(args[0]), int(args[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
