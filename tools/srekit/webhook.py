"""A webhook receiver for Alertmanager notifications, for the burn drill (alerts/drill.py).

POST /<receiver> with Alertmanager's webhook JSON is recorded with its arrival time (UNIX seconds) and the path;
GET /received returns every notification so far as a JSON list. It binds an ephemeral port on --bind (127.0.0.1, or
the cluster node's bridge address so that the cluster's Alertmanager reaches it), publishes the port atomically in
--port-file, keeps at most MAX_NOTIFICATIONS notifications of at most MAX_BODY bytes each, and exits after --lifetime
seconds, so a killed drill never leaves it serving.

  python3 -m srekit.webhook --port-file FILE [--bind 127.0.0.1] [--lifetime 900]
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20
MAX_NOTIFICATIONS = 1000


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, bind):
        super().__init__((bind, 0), Handler)
        self.lock = threading.Lock()
        self.received = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):  # quiet: the drill prints what matters
        pass

    def _send(self, code, body=b"", ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n <= 0 or n > MAX_BODY:
            return self._send(413 if n > MAX_BODY else 400)
        try:
            payload = json.loads(self.rfile.read(n))
        except ValueError:
            return self._send(400)
        with self.server.lock:
            if len(self.server.received) >= MAX_NOTIFICATIONS:
                return self._send(507)
            self.server.received.append({"at": time.time(), "path": self.path, "payload": payload})
        self._send(200)

    def do_GET(self):
        if self.path != "/received":
            return self._send(404)
        with self.server.lock:
            body = json.dumps(self.server.received).encode()
        self._send(200, body, "application/json")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port-file", required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--lifetime", type=float, default=900)
    a = p.parse_args(argv)
    srv = Sink(a.bind)
    with open(a.port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(srv.server_address[1]))
    os.replace(a.port_file + ".tmp", a.port_file)
    threading.Timer(a.lifetime, srv.shutdown).start()
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
