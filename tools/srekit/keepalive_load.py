"""A steady keep-alive HTTP/1.1 load on 127.0.0.1 that records every request and every failure.

N persistent connections, each sending one GET after another, started evenly over one `stagger` so the request
rate is steady. Every request is recorded with its start and end time and its outcome: `ok` (2xx), `status:<code>`,
`timeout`, `connect:<error>`, `reset`, `eof` or `protocol:<detail>`. Runs in its own thread (an asyncio loop), so
a drill can roll pods while it runs, then count per time window.

One client rule, the one RFC 9112 section 9.3.1 allows and browsers, Go's net/http and curl follow: when a
connection that has already carried a response is closed by the server before any byte of the next response
arrives, the request never reached the proxy's request processing (a proxy closes only idle keep-alive
connections), so it is sent again once on a new connection. That is counted apart, as `reopened`, never hidden
and never a failure. A second attempt that fails is a failure. Any answer from the proxy, 502 included, is final.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


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
    """Reads one response; returns (status, connection_close). Raises _Closed on EOF before any byte."""
    try:
        first = await reader.read(1)
    except ConnectionResetError:
        raise _Closed() from None
    if not first:
        raise _Closed()
    try:
        head = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise ConnectionError("eof in response head") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    close = headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected: the final CRLF
                break
            await reader.readexactly(size + 2)
    elif "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif status not in (204, 304) and not 100 <= status < 200:
        await reader.read()  # delimited by close
        close = True
    return status, close


@dataclass
class Load:
    """Keep-alive load against http://127.0.0.1:<port><path> with the given Host header."""

    port: int
    path: str
    host: str
    connections: int
    timeout: float  # per request, from sending to the end of the body
    stagger: float  # the connections start evenly over this many seconds
    tag: str = ""  # prefix of every X-Drill-Id this load sends
    records: list[Record] = field(default_factory=list)
    reopens: list[float] = field(default_factory=list)
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
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection("127.0.0.1", self.port), self.timeout)
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
                    status, close = await asyncio.wait_for(_read_response(reader), self.timeout)
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
                except (ConnectionError, OSError, asyncio.IncompleteReadError):
                    outcome = "reset"
                except (ValueError, asyncio.LimitOverrunError) as e:
                    outcome = "protocol:" + type(e).__name__
                writer.close()
                reader = writer = None
                break
            self.records.append(Record(start, time.monotonic(), outcome, rid))
            if outcome.startswith("connect:"):
                await asyncio.sleep(0.05)  # a refused connect must not become a busy loop
        if writer is not None:
            writer.close()
