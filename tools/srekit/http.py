"""A small asyncio HTTP/1.1 client for drills: many concurrent requests from one thread, each result classified.

Responses are read by srekit.http1's reader (the one the raw client and the keep-alive load use too); a reset, an
early EOF, a malformed response or a timeout is a failure with its reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import time

from .http1 import read_response_async


@dataclasses.dataclass
class Result:
    status: int  # 0 when no complete response arrived
    seconds: float
    headers: dict[str, str]
    error: str | None = None

    @property
    def retry_after_valid(self) -> bool:
        """RFC 9110 10.2.3: delay-seconds (1*DIGIT) or an HTTP-date."""
        v = self.headers.get("retry-after")
        if v is None:
            return False
        if v.isascii() and v.isdigit():
            return True
        try:
            return email.utils.parsedate_to_datetime(v) is not None
        except (TypeError, ValueError):
            return False


class Connection:
    """One keep-alive connection; reconnects when the server closes it (as a pooled client would)."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def _ensure(self, timeout_s: float) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout_s
            )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def get(self, path: str, timeout_s: float = 30.0) -> Result:
        t0 = time.monotonic()
        try:
            await self._ensure(timeout_s)
            self.writer.write(f"GET {path} HTTP/1.1\r\nHost: drill\r\n\r\n".encode())
            await self.writer.drain()
            r = await asyncio.wait_for(read_response_async(self.reader), timeout_s)
            headers = {k.lower(): v for k, v in r.headers}
            if r.closes or r.eof_delimited:  # nothing more can come on this connection
                self.close()
            return Result(r.status, time.monotonic() - t0, headers)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
            self.close()
            return Result(0, time.monotonic() - t0, {}, f"{type(e).__name__}: {e}")


async def get_once(port: int, path: str, timeout_s: float = 30.0, addr: str = "127.0.0.1") -> Result:
    c = Connection(port, addr)
    try:
        return await c.get(path, timeout_s)
    finally:
        c.close()


async def burst(port: int, path: str, n: int, timeout_s: float = 60.0, addr: str = "127.0.0.1") -> list[Result]:
    """n requests at once, each on its own fresh connection."""
    return await asyncio.gather(*(get_once(port, path, timeout_s, addr) for _ in range(n)))
