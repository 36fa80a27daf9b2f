"""One raw HTTP/1.1 client for the checks: send exact bytes, read back exact responses.

`http.client` cannot send the malformed requests the checks need (bare LF, duplicate Host, 17,000-byte targets)
and hides framing; this reads what the server wrote, one response at a time, from a buffered connection, so
pipelined and keep-alive responses stay separate. Every read is bounded by the socket timeout. `parse_head` is
also the head parser of the asyncio client in srekit.http.
"""

from __future__ import annotations

import dataclasses
import socket


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

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
    """A response head (status line and fields, without the empty line) as a Response with an empty body."""
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
    return Response(int(parts[1]), headers, b"")


class Conn:
    """A client connection with an input buffer."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10, nodelay: bool = False):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.buf += chunk
        return bool(chunk)

    def response(self, head: bool = False) -> Response | None:
        """The next response, interim (1xx) ones included; None on EOF before a complete head. `head`: the
        answer to a HEAD request, which has no body whatever its Content-Length says."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return None
        raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        r = parse_head(raw_head)
        if r.status >= 200 and not head:
            length = int(r.header("content-length") or 0)
            while len(self.buf) < length:
                if not self._fill():
                    break
            r.body, self.buf = self.buf[:length], self.buf[length:]
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
