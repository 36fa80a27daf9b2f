"""The cluster drills' way to the real cluster: kubectl for what a user types, and the API server's own watch for
what happens while a drill runs (pod phases, container exit codes, EndpointSlice changes), with each event's arrival
time on this machine's monotonic clock, the clock the load's records use.

`Kube` reads the administrator's kubeconfig that cluster/up.sh writes (KUBECONFIG), with its embedded client
certificate, so it needs nothing but the standard library.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
import http.client
import urllib.parse

import yaml


class Kube:
    def __init__(self, kubeconfig: str | None = None):
        self.kubeconfig = kubeconfig or os.environ["KUBECONFIG"]
        with open(self.kubeconfig, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        url = urllib.parse.urlsplit(cluster["server"])
        self.host, self.port = url.hostname, url.port or 443
        self._dir = tempfile.mkdtemp(prefix="srekit-kube-")
        paths = {}
        for key, name in (("certificate-authority-data", "ca"), ("client-certificate-data", "crt"),
                          ("client-key-data", "key")):
            src = cluster if name == "ca" else user
            paths[name] = os.path.join(self._dir, name)
            with open(paths[name], "wb") as f:
                f.write(base64.b64decode(src[key]))
            os.chmod(paths[name], 0o600)
        self.ctx = ssl.create_default_context(cafile=paths["ca"])
        self.ctx.load_cert_chain(paths["crt"], paths["key"])

    def _conn(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def get(self, path: str) -> dict:
        c = self._conn(30)
        try:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {path}: {r.status} {body[:300]!r}")
            return json.loads(body)
        finally:
            c.close()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """kubectl with this cluster's kubeconfig; stdout and stderr captured as text."""
        p = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], input=input, text=True,
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} exited {p.returncode}: {p.stderr.strip()[:2000]}")
        return p

    def watch(self, path: str) -> "Watch":
        """Starts a watch of a collection (e.g. /api/v1/namespaces/sre-mini/pods) in a thread."""
        return Watch(self, path)


class Watch:
    """The events of one watch, each as (monotonic arrival time, type, object), collected by a thread until stop().
    The watch starts from the collection's current state (the API server sends ADDED for every existing object)."""

    def __init__(self, kube: Kube, path: str):
        self.events: list[tuple[float, str, dict]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn = kube._conn(None)
        sep = "&" if "?" in path else "?"
        self._conn.request("GET", f"{path}{sep}watch=1&allowWatchBookmarks=false")
        self._resp = self._conn.getresponse()
        if self._resp.status != 200:
            raise RuntimeError(f"watch {path}: {self._resp.status} {self._resp.read(300)!r}")
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                line = self._resp.readline()
                if not line:
                    if not self._stop.is_set():
                        self.error = RuntimeError("the API server ended the watch")
                    return
                ev = json.loads(line)
                with self._lock:
                    self.events.append((time.monotonic(), ev["type"], ev["object"]))
        except Exception as e:  # noqa: BLE001  (closing the connection under the reader raises anything)
            if not self._stop.is_set():
                self.error = e

    def snapshot(self) -> list[tuple[float, str, dict]]:
        with self._lock:
            return list(self.events)

    def stop(self) -> list[tuple[float, str, dict]]:
        self._stop.set()
        try:
            self._conn.sock.shutdown(2)
        except OSError:
            pass
        self._conn.close()
        self._thread.join(5)
        return self.snapshot()
