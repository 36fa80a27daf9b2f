"""Table tests of the one response reader (srekit.http1), driven both ways: by the blocking Conn over a socket
pair and by read_response_async over an asyncio.StreamReader, so the two drivers cannot drift apart.

    PYTHONPATH=tools python3 -m unittest srekit.test_http1
"""

from __future__ import annotations

import asyncio
import socket
import unittest

from srekit import http1

# (wire bytes, head request?, (status, body, eof_delimited), bytes left for the next response)
CASES = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcNEXT", False, (200, b"abc", False), b"NEXT"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nNEXT", False, (200, b"", False), b"NEXT"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nNEXT", True, (200, b"", False), b"NEXT"),
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nNEXT", False, (204, b"", False), b"NEXT"),
    (b"HTTP/1.1 100 Continue\r\n\r\nNEXT", False, (100, b"", False), b"NEXT"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT", False,
     (200, b"abcde", False), b"NEXT"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\nNEXT", False,
     (200, b"a", False), b"NEXT"),
    (b"HTTP/1.0 200 OK\r\n\r\nuntil close", False, (200, b"until close", True), b""),
]
BAD = [
    b"SSH-2.0-x\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
]


def sync_read(data: bytes, head: bool = False):
    a, b = socket.socketpair()
    try:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        c = http1.Conn.__new__(http1.Conn)
        c.sock, c.buf, c.recv_size = b, b"", 7  # small reads: every read must cope with a partial buffer
        b.settimeout(5)
        r = c.response(head)
        return r, c._take(None)  # what is left for the next response
    finally:
        a.close()
        b.close()


def async_read(data: bytes, head: bool = False):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        r = await http1.read_response_async(reader, head)
        return r, await reader.read()

    return asyncio.run(go())


class ReaderTest(unittest.TestCase):
    def test_framing_is_the_same_for_both_drivers(self):
        for read in (sync_read, async_read):
            for data, head, (status, body, eof), rest in CASES:
                r, left = read(data, head)
                self.assertEqual((r.status, r.body, r.eof_delimited, left), (status, body, eof, rest), (read, data))

    def test_headers_and_version(self):
        r, _ = async_read(b"HTTP/1.0 503 Busy\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual((r.version, r.header("retry-after"), r.closes), ("HTTP/1.0", "1", True))

    def test_malformed_is_a_value_error_for_both(self):
        for data in BAD:
            with self.assertRaises(ValueError, msg=data):
                sync_read(data)
            with self.assertRaises(ValueError, msg=data):
                async_read(data)

    def test_eof_early(self):
        # The blocking client: no head is None, a short body is what arrived; asyncio: IncompleteReadError.
        self.assertEqual(sync_read(b"HTTP/1.1 200 OK\r\nContent-")[0], None)
        r, _ = sync_read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
        self.assertEqual((r.status, r.body), (200, b"abc"))
        r, _ = sync_read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\nde")
        self.assertEqual((r.status, r.body), (200, b"abcde"))
        for data in (b"HTTP/1.1 200 OK\r\nContent-", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"):
            with self.assertRaises(asyncio.IncompleteReadError):
                async_read(data)


if __name__ == "__main__":
    unittest.main()
