"""The one HTTP/1.1 response reader of the Python kit, and the raw blocking client built on it.

Every client here (this module's `Conn`, the asyncio clients srekit.http and srekit.keepalive_load, and
bench/tools/benchlib.py) reads responses with the same two pieces:

- `parse_head`: a status line and its fields (without the empty line) as a `Response` with an empty body;
- `body_reads`: the framing of the body that follows (RFC 9112 section 6.3): none for a HEAD request, 1xx, 204
  and 304; chunked; Content-Length; else everything up to EOF. It is written once, as a generator of the reads it
  needs, so a blocking socket (`Conn.response`) and an asyncio.StreamReader (`read_response_async`) run the same
  code and differ only in how they wait and how they report a connection that ends early.

`http.client` cannot send the malformed requests the checks need (bare LF, duplicate Host, 17,000-byte targets)
and hides framing; `Conn` reads what the server wrote, one response at a time, from a buffered connection, so
pipelined and keep-alive responses stay separate. Every read is bounded by the socket timeout.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the blocking client does not pay for importing asyncio
    import asyncio

HEAD_END = b"\r\n\r\n"


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    version: str = "HTTP/1.1"
    eof_delimited: bool = False  # the body ran to the end of the connection (no Content-Length, not chunked)

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


def parse_head(head: bytes) -> Response:
    """A response head (status line and fields, without the empty line) as a Response with an empty body.
    Raises ValueError on a status line or field line that is not HTTP/1.x."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        k, sep, v = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line {line[:80]!r}")
        headers.append((k.strip().decode("latin-1"), v.strip().decode("latin-1")))
    return Response(int(parts[1]), headers, b"", version=parts[0].decode("latin-1"))


# A read the framing asks its driver for: bytes (the data up to and including that delimiter), an int (exactly that
# many bytes, always body bytes) or None (everything up to EOF).
Read = bytes | int | None


def body_reads(r: Response, head_request: bool = False) -> Generator[Read, bytes, None]:
    """The reads that frame r's body, appending each piece of it to r.body as it arrives. Raises ValueError on a
    chunk size line or a chunk end that is not what RFC 9112 section 7.1 allows."""
    if head_request or r.status < 200 or r.status in (204, 304):
        return
    if "chunked" in (r.header("transfer-encoding") or "").lower():
        while True:
            size_line = yield b"\r\n"
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                break
            r.body += yield size
            if (yield b"\r\n") != b"\r\n":
                raise ValueError("chunk data longer than its size")
        while (yield b"\r\n") != b"\r\n":  # trailer fields, if any, up to the empty line
            pass
    elif (length := r.header("content-length")) is not None:
        r.body += yield int(length)
    else:
        r.eof_delimited = True
        r.body += yield None


async def read_response_async(reader: asyncio.StreamReader, head_request: bool = False,
                              raw_head: bytes | None = None) -> Response:
    """The next response from an asyncio stream. `raw_head`: the head, through its empty line, when the caller has
    read it already. A connection that ends early raises asyncio.IncompleteReadError; an over-long line
    asyncio.LimitOverrunError; a malformed head or chunk ValueError."""
    if raw_head is None:
        raw_head = await reader.readuntil(HEAD_END)
    r = parse_head(raw_head[: -len(HEAD_END)])
    reads = body_reads(r, head_request)
    try:
        want = next(reads)
        while True:
            if want is None:
                got = await reader.read()
            elif isinstance(want, int):
                got = await reader.readexactly(want)
            else:
                got = await reader.readuntil(want)
            want = reads.send(got)
    except StopIteration:
        return r


class Conn:
    """A client connection with an input buffer."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10, nodelay: bool = False,
                 recv_size: int = 1 << 20):
        # recv_size: bytes asked of each recv. A large one reads a /metrics page in few calls; a timing loop of
        # small answers wants a small one, since every recv allocates that much first.
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.recv_size = recv_size
        self.buf = b""

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def _fill(self) -> bool:
        chunk = self.sock.recv(self.recv_size)
        self.buf += chunk
        return bool(chunk)

    def _take(self, want: Read) -> bytes | None:
        """The bytes a read asks for from the buffer, filling it as needed; None at EOF before they are all there
        (the buffer keeps what did arrive)."""
        if want is None:
            while self._fill():
                pass
            n = len(self.buf)
        elif isinstance(want, int):
            while len(self.buf) < want:
                if not self._fill():
                    return None
            n = want
        else:
            while want not in self.buf:
                if not self._fill():
                    return None
            n = self.buf.index(want) + len(want)
        got, self.buf = self.buf[:n], self.buf[n:]
        return got

    def response(self, head: bool = False) -> Response | None:
        """The next response, interim (1xx) ones included; None on EOF before a complete head. A body cut short by
        EOF is returned as far as it arrived. `head`: the answer to a HEAD request, which has no body whatever its
        Content-Length says."""
        raw_head = self._take(HEAD_END)
        if raw_head is None:
            return None
        r = parse_head(raw_head[: -len(HEAD_END)])
        reads = body_reads(r, head)
        try:
            want = next(reads)
            while (got := self._take(want)) is not None:
                want = reads.send(got)
        except StopIteration:
            return r
        reads.close()
        if isinstance(want, int):  # body bytes: keep the part that arrived
            r.body += self.buf
            self.buf = b""
        return r

    def final_response(self, head: bool = False) -> Response | None:
        """The next final response (1xx skipped)."""
        while True:
            r = self.response(head)
            if r is None or r.status >= 200:
                return r

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def exchange(port: int, raw: bytes, head: bool = False, timeout: float = 10) -> Response | None:
    """Send `raw` on a fresh connection and read one final response."""
    with Conn(port, timeout=timeout) as c:
        c.send(raw)
        return c.final_response(head)
