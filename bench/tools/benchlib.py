#!/usr/bin/env python3
"""Measurement helpers for scripts/bench.sh (python3 standard library only).

Subcommands (each prints one JSON object on stdout, except `report`):
  wait-ready PORT PATH TIMEOUT_S       poll until PATH answers 200 (fresh connection each time)
  wrk FILE                             parse `wrk --latency` output: rps, p50/p99 (ms), errors
  sample PORT DURATION_S INTERVAL_S    /healthz latency sampler (fresh connection per request)
  burst PORT N DEADLINE_S TIMEOUT_S    N concurrent GET /work (plus the sampler in a child process)
  startup BIN PORT TIMEOUT_S           exec BIN, time until the first 200 on /readyz (ms)
  status PID                           VmRSS, VmHWM (KiB) and Threads from /proc/PID/status
  hold-idle PORT N HOLD_S READY_FILE   open N keep-alive connections, one answered GET /healthz on each, then
                                       hold them idle for at most HOLD_S (writes {"held", "failed"} to READY_FILE)
  report RESULTS_JSONL OUT_MD META_JSON  medians per metric, sre-mini/axum ratios, targets (PASS/MISS)
  meta META_JSON NOTES_FILE KEY=VALUE...  write the run's description for `report`: every key of META_KEYS
                                       (rounds, burst_n and work_max_concurrent as integers) and the notes file's
                                       non-empty lines; prints nothing

All traffic goes to 127.0.0.1; every loop is bounded in count and time. Responses are read with the kit's one
reader (tools/srekit/http1.py: its head parser, and its blocking client where a whole response is read).
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from srekit.http1 import HEAD_END, Conn, parse_head  # noqa: E402  (found through the path above)

HOST = "127.0.0.1"


def out(obj):
    print(json.dumps(obj), flush=True)


def http_get(port, path, timeout=2.0, close=True):
    """One request on a fresh connection; returns (status, Response). Raises OSError on socket errors, and
    ConnectionError when no response or a malformed one comes back."""
    req = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    if close:
        req += "Connection: close\r\n"
    # 4096-byte reads, as the latency samples have always taken: the answers are small.
    with Conn(port, HOST, timeout=timeout, nodelay=True, recv_size=4096) as c:
        c.send((req + "\r\n").encode())
        try:
            r = c.response()
        except ValueError as e:
            raise ConnectionError(f"bad response head: {e}") from None
    if r is None:
        raise ConnectionError("connection closed before a response head")
    return r.status, r


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


# ---------------------------------------------------------------- wait-ready
def cmd_wait_ready(port, path, timeout_s):
    port, deadline = int(port), time.monotonic() + float(timeout_s)
    tries = 0
    while time.monotonic() < deadline:
        tries += 1
        try:
            if http_get(port, path, timeout=1.0)[0] == 200:
                out({"ready": True, "tries": tries})
                return 0
        except OSError:
            pass
        time.sleep(0.005)
    out({"ready": False, "tries": tries})
    return 1


# ---------------------------------------------------------------- wrk
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_duration_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def cmd_wrk(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    res = {}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not m:
        out({"error": "no Requests/sec line", "raw": text[-400:]})
        return 1
    res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.M)
        res[key] = parse_duration_ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", text)
    res["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non2xx"] = int(m.group(1)) if m else 0
    out(res)
    return 0


# ---------------------------------------------------------------- sampler
def cmd_sample(port, duration_s, interval_s):
    port, interval = int(port), float(interval_s)
    end = time.monotonic() + float(duration_s)
    lat, fails, n = [], 0, 0
    while time.monotonic() < end and n < 5000:
        n += 1
        t0 = time.perf_counter()
        try:
            status, _ = http_get(port, "/healthz", timeout=2.0)
            if status == 200:
                lat.append((time.perf_counter() - t0) * 1000.0)
            else:
                fails += 1
        except OSError:
            fails += 1
        rest = interval - (time.perf_counter() - t0)
        if rest > 0:
            time.sleep(rest)
    res = {"samples": len(lat), "fails": fails}
    if lat:
        res.update(p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99), max_ms=max(lat))
    out(res)
    return 0


# ---------------------------------------------------------------- burst
def burst(port, n, timeout_s):
    """N concurrent `GET /work` on N fresh connections, driven by one epoll loop (low client overhead).

    Each request's time runs from the moment its request bytes were handed to the kernel (after connect)
    to the moment its response head arrived; a slow accept on the server side still counts, since the
    request then waits in the socket buffer. Returns a list of (status, seconds, retry_after, error).
    """
    import select
    req = f"GET /work HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    ep = select.epoll()
    conns = {}  # fd -> dict(sock, t_sent, buf)
    results = []
    t_start = time.perf_counter()
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.connect_ex((HOST, port))
        conns[s.fileno()] = {"sock": s, "t_sent": None, "buf": b""}
        ep.register(s.fileno(), select.EPOLLOUT)
    connect_max = 0.0
    deadline = t_start + timeout_s
    try:
        while conns and time.perf_counter() < deadline:
            for fd, ev in ep.poll(0.05):
                c = conns[fd]
                s = c["sock"]
                now = time.perf_counter()
                if c["t_sent"] is None:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err or ev & (select.EPOLLERR | select.EPOLLHUP):
                        results.append((0, now - t_start, False, "connect:" + os.strerror(err or 104)))
                    else:
                        try:
                            s.send(req)  # ~60 bytes into an empty send buffer: written at once
                            c["t_sent"] = time.perf_counter()
                            connect_max = max(connect_max, c["t_sent"] - t_start)
                            ep.modify(fd, select.EPOLLIN)
                            continue
                        except OSError as e:
                            results.append((0, now - t_start, False, "send:" + type(e).__name__))
                else:
                    try:
                        chunk = s.recv(4096)
                    except ConnectionResetError:
                        results.append((0, now - c["t_sent"], False, "reset"))
                        chunk = None
                    except OSError as e:
                        results.append((0, now - c["t_sent"], False, type(e).__name__))
                        chunk = None
                    if chunk:
                        c["buf"] += chunk
                        if HEAD_END not in c["buf"] and len(c["buf"]) < 65536:
                            continue
                        # Only the head is timed and read; a malformed one counts as another status (0).
                        try:
                            r = parse_head(c["buf"].split(HEAD_END, 1)[0])
                            status, retry_after = r.status, r.header("retry-after") is not None
                        except ValueError:
                            status, retry_after = 0, False
                        results.append((status, now - c["t_sent"], retry_after, None))
                    elif chunk == b"":
                        results.append((0, now - c["t_sent"], False, "eof"))
                ep.unregister(fd)
                s.close()
                del conns[fd]
    finally:
        for c in conns.values():
            results.append((0, time.perf_counter() - (c["t_sent"] or t_start), False, "timeout"))
            c["sock"].close()
        ep.close()
    return results, connect_max


def cmd_burst(port, n, deadline_s, timeout_s):
    port, n, deadline, timeout = int(port), int(n), float(deadline_s), float(timeout_s)
    # The /healthz sampler runs in its own process so this loop's work does not skew its latencies.
    sampler = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "sample", str(port), str(deadline + 0.4), "0.005"],
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.05)  # let the sampler take a few baseline samples first
        results, connect_max = burst(port, n, timeout)
        s_out, _ = sampler.communicate(timeout=timeout + 5)
    finally:
        if sampler.poll() is None:
            sampler.kill()
            sampler.wait()
    ok_times = [t for st, t, _, _ in results if st == 200]
    rej = [(t, ra) for st, t, ra, _ in results if st == 503]
    errors = {}
    for _, _, _, err in results:
        if err:
            errors[err] = errors.get(err, 0) + 1
    res = {
        "n": n,
        "ok_in_time": sum(1 for t in ok_times if t <= deadline),
        "ok_late": sum(1 for t in ok_times if t > deadline),
        "ok_min_s": min(ok_times) if ok_times else None,
        "ok_max_s": max(ok_times) if ok_times else None,
        "connect_all_ms": connect_max * 1000.0,
        "rejected_503": len(rej),
        "rejected_503_max_ms": max(t for t, _ in rej) * 1000.0 if rej else None,
        "rejected_503_without_retry_after": sum(1 for _, ra in rej if not ra),
        "other_status": sum(1 for st, _, _, err in results if st not in (200, 503) and not err),
        "errors": errors,
        "healthz": json.loads(s_out.strip().splitlines()[-1]) if s_out.strip() else {},
    }
    out(res)
    return 0


# ---------------------------------------------------------------- startup
def cmd_startup(binary, port, timeout_s):
    port, timeout = int(port), float(timeout_s)
    env = dict(os.environ, PORT=str(port))
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=True)
    ms, tries = None, 0
    try:
        req = f"GET /readyz HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
        while time.perf_counter() - t0 < timeout and tries < 200000:
            tries += 1
            try:
                with socket.create_connection((HOST, port), timeout=1.0) as s:
                    s.sendall(req)
                    head = s.recv(64)
                if head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                    ms = (time.perf_counter() - t0) * 1000.0
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.0002)
    finally:
        proc.kill()
        proc.wait()
    out({"ms": ms, "tries": tries})
    return 0 if ms is not None else 1


# ---------------------------------------------------------------- idle keep-alive connections
def cmd_hold_idle(port, n, hold_s, ready_file):
    """The state a proxy's connection pool puts a server in: many open keep-alive connections, all quiet."""
    import resource

    port, n, hold_s = int(port), int(n), float(hold_s)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    req = f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    held, failed = [], 0
    deadline = time.monotonic() + 60
    # In batches: connect and send on a batch of sockets, then read every answer, so setting up thousands of
    # connections takes a few round trips of a loaded server, not thousands.
    batch = 200
    while len(held) + failed < n:
        want = min(batch, n - len(held) - failed)
        if time.monotonic() > deadline:
            failed += want
            continue
        group = []
        for _ in range(want):
            try:
                c = Conn(port, HOST, timeout=10, recv_size=4096)
                c.send(req)
                group.append(c)
            except OSError:
                failed += 1
        for c in group:
            try:
                r = c.response()
                if r is None or r.status != 200 or r.version != "HTTP/1.1":
                    raise ConnectionError(f"no HTTP/1.1 200: {r and (r.version, r.status)}")
                held.append(c)
            except (OSError, ValueError):
                failed += 1
                c.close()
    with open(ready_file + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"held": len(held), "failed": failed}, f)
    os.replace(ready_file + ".tmp", ready_file)
    time.sleep(hold_s)
    for s in held:
        s.close()
    return 0


# ---------------------------------------------------------------- /proc status
def cmd_status(pid):
    res = {}
    with open(f"/proc/{int(pid)}/status", encoding="ascii") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                res[key.lower() + "_kib"] = int(val.split()[0])
            elif key == "Threads":
                res["threads"] = int(val)
    out(res)
    return 0


# ---------------------------------------------------------------- report
# (key, label, unit, lower_is_better, format)
METRICS = [
    ("ka_pinned_rps", "/healthz keep-alive, pinned: rps", "", False, "{:,.0f}"),
    ("ka_pinned_p50_ms", "/healthz keep-alive, pinned: p50", " ms", True, "{:.3f}"),
    ("ka_pinned_p99_ms", "/healthz keep-alive, pinned: p99", " ms", True, "{:.3f}"),
    ("ka_unpinned_rps", "/healthz keep-alive, unpinned: rps", "", False, "{:,.0f}"),
    ("ka_unpinned_p50_ms", "/healthz keep-alive, unpinned: p50", " ms", True, "{:.3f}"),
    ("ka_unpinned_p99_ms", "/healthz keep-alive, unpinned: p99", " ms", True, "{:.3f}"),
    ("close_pinned_rps", "/healthz Connection: close, pinned: rps", "", False, "{:,.0f}"),
    ("close_pinned_p50_ms", "/healthz Connection: close, pinned: p50", " ms", True, "{:.3f}"),
    ("close_pinned_p99_ms", "/healthz Connection: close, pinned: p99", " ms", True, "{:.3f}"),
    ("close_unpinned_rps", "/healthz Connection: close, unpinned: rps", "", False, "{:,.0f}"),
    ("close_unpinned_p50_ms", "/healthz Connection: close, unpinned: p50", " ms", True, "{:.3f}"),
    ("close_unpinned_p99_ms", "/healthz Connection: close, unpinned: p99", " ms", True, "{:.3f}"),
    ("idle1000_rps", "/healthz keep-alive, pinned, 1,000 idle connections beside: rps", "", False, "{:,.0f}"),
    ("idle1000_p99_ms", "/healthz keep-alive, pinned, 1,000 idle connections beside: p99", " ms", True, "{:.3f}"),
    ("idle3000_rps", "/healthz keep-alive, pinned, 3,000 idle connections beside: rps", "", False, "{:,.0f}"),
    ("idle3000_p99_ms", "/healthz keep-alive, pinned, 3,000 idle connections beside: p99", " ms", True, "{:.3f}"),
    ("rss_idle3000_mib", "RSS with 3,000 idle connections (VmRSS)", " MiB", True, "{:.2f}"),
    ("burst_ok_in_time", "300 × /work burst: 200 within 2.1 s", "", False, "{:.0f}"),
    ("burst_503", "300 × /work burst: 503", "", True, "{:.0f}"),
    ("burst_healthz_p99_ms", "300 × /work burst: /healthz p99", " ms", True, "{:.2f}"),
    ("burst_connect_ms", "300 × /work burst: all 300 connected after", " ms", True, "{:.1f}"),
    ("rss_idle_mib", "RSS idle, fresh (VmRSS)", " MiB", True, "{:.2f}"),
    ("rss_idle_musl_mib", "RSS idle, fresh, static musl build (as deployed)", " MiB", True, "{:.2f}"),
    ("rss_anon_idle_mib", "RSS idle, fresh: anonymous pages only (RssAnon: heap, stacks)", " MiB", True, "{:.2f}"),
    ("rss_peak_mib", "RSS peak after load + burst (VmHWM)", " MiB", True, "{:.2f}"),
    ("threads_idle", "threads, idle", "", True, "{:.0f}"),
    ("threads_loaded", "threads, after load + burst", "", True, "{:.0f}"),
    ("startup_ms", "exec → first 200 on /readyz", " ms", True, "{:.2f}"),
    ("binary_kib", "binary size (stripped)", " KiB", True, "{:,.0f}"),
    ("binary_musl_kib", "binary size, static musl (stripped)", " KiB", True, "{:,.0f}"),
    ("crates", "crates in runtime tree", "", True, "{:.0f}"),
]
SERVERS = ("sre-mini", "axum")
# Measured too when bench.sh is given BASE_BIN: the same server built from another revision (e.g. main).
BASE = "base"


def fmt(fmt_str, unit, v):
    return "n/a" if v is None else fmt_str.format(v) + unit


def cmd_report(results_path, out_md, meta_path):
    data = {}  # (server, metric) -> [values]
    with open(results_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("value") is None:
                continue
            data.setdefault((r["server"], r["metric"]), []).append(float(r["value"]))
    meta = json.load(open(meta_path, encoding="utf-8"))

    def med(server, key):
        v = data.get((server, key))
        return statistics.median(v) if v else None

    def ratio(key):
        a, b = med("sre-mini", key), med("axum", key)
        return a / b if a is not None and b not in (None, 0) else None

    bulkhead = int(meta.get("work_max_concurrent", 512))
    burst_n = int(meta.get("burst_n", 300))
    expect_ok = min(burst_n, bulkhead)
    # Targets: (name, metric keys involved, check() -> bool|None, target text, observed text)
    targets = []

    def add(name, check, target, observed):
        try:
            ok = check()
        except TypeError:  # a missing figure
            ok = None
        targets.append((name, "n/a" if ok is None else ("PASS" if ok else "MISS"), target, observed))

    def r2(x):
        return "n/a" if x is None else f"{x:.2f}"

    for pin in ("pinned", "unpinned"):
        k = f"ka_{pin}_rps"
        add(f"keep-alive rps, {pin}", lambda k=k: ratio(k) >= 1.25, "sre-mini/axum ≥ 1.25", r2(ratio(k)))
        k = f"ka_{pin}_p99_ms"
        add(f"keep-alive p99, {pin}", lambda k=k: med("sre-mini", k) <= med("axum", k),
            "≤ axum's", f"{fmt('{:.3f}', ' ms', med('sre-mini', k))} vs {fmt('{:.3f}', ' ms', med('axum', k))}")
    for pin in ("pinned", "unpinned"):
        k = f"close_{pin}_rps"
        add(f"Connection: close rps, {pin}", lambda k=k: ratio(k) >= 1.0, "sre-mini/axum ≥ 1.00", r2(ratio(k)))
    def own(key, base):
        a, b = med("sre-mini", key), med("sre-mini", base)
        return a / b if a is not None and b not in (None, 0) else None

    add("rps with 3,000 idle connections", lambda: own("idle3000_rps", "ka_pinned_rps") >= 0.9,
        "≥ 0.90 × its own with none (pinned)", r2(own("idle3000_rps", "ka_pinned_rps")))
    add("RSS with 3,000 idle connections", lambda: med("sre-mini", "rss_idle3000_mib") <= 8.0, "≤ 8 MiB",
        fmt("{:.2f}", " MiB", med("sre-mini", "rss_idle3000_mib")))
    add("idle RSS (fresh)", lambda: ratio("rss_idle_mib") <= 0.5, "sre-mini/axum ≤ 0.50", r2(ratio("rss_idle_mib")))
    add("idle RSS (fresh), static musl build", lambda: ratio("rss_idle_musl_mib") <= 0.5, "sre-mini/axum ≤ 0.50",
        r2(ratio("rss_idle_musl_mib")))
    add("peak RSS (burst + load)", lambda: med("sre-mini", "rss_peak_mib") <= 16.0, "≤ 16 MiB",
        fmt("{:.2f}", " MiB", med("sre-mini", "rss_peak_mib")))
    # Every round, not just the median: each /work up to the bulkhead size answered 200 within 2.1 s.
    worst_ok = min(data.get(("sre-mini", "burst_ok_in_time"), [None]) or [None], key=lambda x: x or 0)
    add(f"/work ≤ bulkhead answered in 2.1 s", lambda: worst_ok >= expect_ok,
        f"{expect_ok}/{burst_n} in every round", "n/a" if worst_ok is None else f"{worst_ok:.0f} (worst round)")
    add("/readyz after exec", lambda: med("sre-mini", "startup_ms") <= 10.0, "≤ 10 ms",
        fmt("{:.2f}", " ms", med("sre-mini", "startup_ms")))
    add("stripped binary", lambda: med("sre-mini", "binary_kib") <= 600.0, "≤ 600 KiB",
        fmt("{:,.0f}", " KiB", med("sre-mini", "binary_kib")))
    add("stripped binary, static musl", lambda: med("sre-mini", "binary_musl_kib") <= 600.0, "≤ 600 KiB",
        fmt("{:,.0f}", " KiB", med("sre-mini", "binary_musl_kib")))

    lines = []
    lines.append(f"Medians over {meta['rounds']} rounds (sre-mini and axum alternated in each round); "
                 f"{meta['date']}; {meta['nproc']} × {meta['cpu']}; {meta['kernel']}; {meta['rustc']}; "
                 f"{meta['wrk']}; sre-mini {meta['sre_rev']}.")
    lines.append("")
    base = any(server == BASE for server, _ in data)
    base_name = meta.get("base_rev") or BASE
    if base:
        lines.append(f"| metric | sre-mini | axum | sre-mini/axum | {base_name} | sre-mini/{base_name} |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    else:
        lines.append("| metric | sre-mini | axum | sre-mini/axum |")
        lines.append("| --- | ---: | ---: | ---: |")
    for key, label, unit, _, f in METRICS:
        label = label.replace("300", str(burst_n))
        a, b, r = med("sre-mini", key), med("axum", key), ratio(key)
        row = f"| {label} | {fmt(f, unit, a)} | {fmt(f, unit, b)} | {r2(r)} |"
        if base:
            c = med(BASE, key)
            row += f" {fmt(f, unit, c)} | {r2(a / c if a is not None and c not in (None, 0) else None)} |"
        lines.append(row)
    lines.append("")
    lines.append("| target | goal | measured | result |")
    lines.append("| --- | --- | --- | --- |")
    for name, res, target, observed in targets:
        lines.append(f"| {name} | {target} | {observed} | {res} |")
    notes = meta.get("notes") or []
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    md = "\n".join(lines) + "\n"
    with open(out_md, "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    for name, res, target, observed in targets:
        print(f"{res:4}  {name}: {observed} (target {target})")
    return 0


# ---------------------------------------------------------------- meta
# What `report` reads from meta.json, in the order it is written; the integers are counts, the rest text.
META_KEYS = ("rounds", "burst_n", "work_max_concurrent", "date", "nproc", "cpu", "kernel", "rustc", "wrk",
             "sre_rev", "base_rev")
META_INTS = ("rounds", "burst_n", "work_max_concurrent")


def cmd_meta(meta_path, notes_path, *fields):
    given = {}
    for f in fields:
        key, sep, value = f.partition("=")
        if not sep or key not in META_KEYS or key in given:
            sys.exit(f"meta: {f!r} is not KEY=VALUE with a new KEY from {', '.join(META_KEYS)}")
        given[key] = int(value) if key in META_INTS else value
    missing = [k for k in META_KEYS if k not in given]
    if missing:
        sys.exit(f"meta: missing {', '.join(missing)}")
    with open(notes_path, encoding="utf-8") as f:
        notes = [line.strip() for line in f if line.strip()]
    meta = {k: given[k] for k in META_KEYS}
    meta["notes"] = notes
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f)
    return 0


COMMANDS = {
    "wait-ready": cmd_wait_ready, "wrk": cmd_wrk, "sample": cmd_sample, "burst": cmd_burst,
    "startup": cmd_startup, "status": cmd_status, "report": cmd_report, "hold-idle": cmd_hold_idle,
    "meta": cmd_meta,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
