"""A steady keep-alive HTTP/1.1 load that records every request and every failure.

N persistent connections, each sending one GET after another, started evenly over one `stagger` so the request
rate is steady. Every request is recorded with its start and end time and its outcome: `ok` (2xx), `status:<code>`,
`timeout`, `connect:<error>`, `tls:<error>`, `reset`, `eof` or `protocol:<detail>`. `Load` runs in a thread (an
asyncio loop); `ProcessLoad` spreads the connections over several processes. Either way a drill rolls pods while it
runs, then counts per time window.

One client rule, the one RFC 9112 section 9.3.1 allows and browsers, Go's net/http and curl follow: when a
connection that has already carried a response is closed by the server before any byte of the next response
arrives, the request never reached the proxy's request processing (a proxy closes only idle keep-alive
connections), so it is sent again once on a new connection. That is counted apart, as `reopened`, never hidden
and never a failure. A second attempt that fails is a failure. Any answer from the proxy, 502 included, is final.
The rollout drill (srekit.cluster_drills) checks the claim against Traefik's access log: no reopened attempt may
appear in it.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import queue
import signal
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from .http1 import HEAD_END, read_response_async


@dataclass
class Record:
    start: float  # time.monotonic()
    end: float
    outcome: str  # "ok" or the failure kind
    rid: str  # the X-Drill-Id of the attempt that decided the outcome


@dataclass
class Window:
    requests: int
    failures: Counter
    reopened: int
    latency_p50: float  # seconds, answered requests only
    latency_p99: float

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


class _Closed(Exception):
    """The connection ended before any byte of the response (candidate for the one retry)."""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Reads one response; returns (status, connection_close). Raises _Closed on EOF before any byte, and
    ConnectionError on EOF later in the head; the framing after the head is srekit.http1's."""
    try:
        first = await reader.read(1)
    except ConnectionResetError:
        raise _Closed() from None
    if not first:
        raise _Closed()
    try:
        head = first + await reader.readuntil(HEAD_END)
    except asyncio.IncompleteReadError:
        raise ConnectionError("eof in response head") from None
    r = await read_response_async(reader, raw_head=head)
    return r.status, r.closes or r.version == "HTTP/1.0" or r.eof_delimited


@dataclass
class Load:
    """Keep-alive load against <addr>:<port><path> with the given Host header, in this process; over TLS when `ca`
    names the CA file that signed the server's certificate for `host` (the name it is verified against)."""

    port: int
    path: str
    host: str
    connections: int
    timeout: float  # per request, from sending to the end of the body
    stagger: float  # the connections start evenly over this many seconds
    tag: str = ""  # prefix of every X-Drill-Id this load sends
    addr: str = "127.0.0.1"
    ca: str | None = None
    pause_after_503: float = 0.0  # seconds a connection waits after a 503, as a client honouring Retry-After does
    done: object = None  # optional shared counter (multiprocessing.Value) of requests recorded, read while running
    records: list[Record] = field(default_factory=list)
    reopens: list[tuple[float, str]] = field(default_factory=list)  # (when, X-Drill-Id of the attempt)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()

    def stop(self, wait: float) -> None:
        """Stops sending; each connection finishes the request it has in flight (bounded by `timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait)
            if self._thread.is_alive():
                raise RuntimeError(f"the load did not stop within {wait} s")
        if self._error is not None:
            raise RuntimeError(f"the load crashed: {self._error!r}")

    def window(self, t0: float, t1: float) -> Window:
        """Requests that ended in [t0, t1], their failures by kind, and reopened keep-alive connections."""
        rs = [r for r in list(self.records) if t0 <= r.end <= t1]
        lat = sorted(r.end - r.start for r in rs if r.outcome == "ok" or r.outcome.startswith("status:"))
        return Window(
            requests=len(rs),
            failures=Counter(r.outcome for r in rs if r.outcome != "ok"),
            reopened=sum(1 for t, _ in list(self.reopens) if t0 <= t <= t1),
            latency_p50=lat[len(lat) // 2] if lat else 0.0,
            latency_p99=lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
        )

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported by stop()
            self._error = e

    async def _main(self) -> None:
        self._tls = None
        if self.ca is not None:
            self._tls = ssl.create_default_context(cafile=self.ca)
        await asyncio.gather(*(self._conn(i) for i in range(self.connections)))

    async def _conn(self, i: int) -> None:
        await asyncio.sleep(self.stagger * i / max(1, self.connections))
        reader = writer = None
        served = 0  # responses carried by the current connection
        seq = 0
        while not self._stop.is_set():
            seq += 1
            start = time.monotonic()
            outcome = "ok"
            for attempt in (1, 2):
                # Every attempt carries its own id, so the proxy's access log can be matched to this record.
                rid = f"{self.tag}{i}.{seq}.{attempt}"
                request = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: srekit-load\r\n"
                           f"X-Drill-Id: {rid}\r\n\r\n").encode()
                if writer is None:
                    try:
                        async with asyncio.timeout(self.timeout):
                            reader, writer = await asyncio.open_connection(
                                self.addr, self.port, ssl=self._tls,
                                server_hostname=self.host if self._tls else None)
                    except asyncio.TimeoutError:
                        outcome = "connect:timeout"
                        break
                    except OSError as e:
                        outcome = "connect:" + type(e).__name__
                        break
                    served = 0
                try:
                    try:
                        writer.write(request)
                        await writer.drain()
                    except (BrokenPipeError, ConnectionResetError):
                        raise _Closed() from None
                    # asyncio.timeout, not wait_for: wait_for costs a task per request, and the client's CPU
                    # is what bounds the request rate on a busy machine.
                    async with asyncio.timeout(self.timeout):
                        status, close = await _read_response(reader)
                    served += 1
                    outcome = "ok" if 200 <= status < 300 else f"status:{status}"
                    if close:
                        writer.close()
                        reader = writer = None
                    break
                except _Closed:
                    reused = served > 0
                    writer.close()
                    reader = writer = None
                    if reused and attempt == 1:
                        self.reopens.append((time.monotonic(), rid))
                        continue
                    outcome = "eof"
                    break
                except asyncio.TimeoutError:
                    outcome = "timeout"
                except ssl.SSLError as e:
                    outcome = "tls:" + type(e).__name__
                except (ConnectionError, OSError, asyncio.IncompleteReadError):
                    outcome = "reset"
                except (ValueError, asyncio.LimitOverrunError) as e:
                    outcome = "protocol:" + type(e).__name__
                writer.close()
                reader = writer = None
                break
            self.records.append(Record(start, time.monotonic(), outcome, rid))
            if self.done is not None:
                self.done.value += 1
            if outcome.startswith("connect:"):
                await asyncio.sleep(0.05)  # a refused connect must not become a busy loop
            elif outcome == "status:503" and self.pause_after_503:
                await asyncio.sleep(self.pause_after_503)
        if writer is not None:
            writer.close()


def _child(params: dict, done, stop, results, max_seconds: float) -> None:
    # Die with the drill even if it is killed outright (PR_SET_PDEATHSIG = 1), and never outlive max_seconds.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    load = Load(**params, done=done)
    load.start()
    stop.wait(max_seconds)
    load.stop(load.timeout + 5)
    results.put(([(r.start, r.end, r.outcome, r.rid) for r in load.records], load.reopens))


class ProcessLoad:
    """The same load spread over several processes, so that on a busy machine the client is not what limits the
    request rate (one Python process gets one core at most). time.monotonic() is system-wide, so the records of
    every process share one clock."""

    def __init__(self, port: int, path: str, host: str, connections: int, timeout: float, stagger: float,
                 tag: str, processes: int, max_seconds: float, addr: str = "127.0.0.1", ca: str | None = None):
        self.tag = tag
        self.timeout = timeout
        self.records: list[Record] = []
        self.reopens: list[tuple[float, str]] = []
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._results = ctx.Queue()
        share = [connections // processes + (1 if k < connections % processes else 0) for k in range(processes)]
        self._done = [ctx.Value("q", 0, lock=False) for n in share if n]  # one writer each: no lock needed
        self._procs = [
            ctx.Process(target=_child, name=f"load-{k}", daemon=True,
                        args=(dict(port=port, path=path, host=host, connections=n, timeout=timeout,
                                   stagger=stagger, tag=f"{tag}{k}-", addr=addr, ca=ca), done, self._stop, self._results,
                              max_seconds))
            for k, (n, done) in enumerate(zip([n for n in share if n], self._done))
        ]

    def completed(self) -> int:
        """Requests recorded so far by every process: a running count, for deciding while the load runs."""
        return sum(d.value for d in self._done)

    def start(self) -> None:
        for p in self._procs:
            p.start()

    def stop(self, wait: float) -> None:
        self._stop.set()
        deadline = time.monotonic() + wait
        for _ in self._procs:
            try:
                records, reopens = self._results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"a load process did not report within {wait} s") from None
            self.records += [Record(*r) for r in records]
            self.reopens += [tuple(x) for x in reopens]
        for p in self._procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
                raise RuntimeError(f"{p.name} did not exit")
            if p.exitcode != 0:
                raise RuntimeError(f"{p.name} exited {p.exitcode}")

    def kill(self) -> None:
        for p in self._procs:
            if p.is_alive():
                p.kill()
                p.join()

    window = Load.window
