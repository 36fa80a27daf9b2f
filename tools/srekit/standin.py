"""How the drills' loopback stand-in servers (srekit.ksm, srekit.webhook) run: bound to an ephemeral port on
127.0.0.1, which they publish atomically in a file for the drill to read, and stopped after a lifetime, so a
killed drill never leaves one serving.
"""

from __future__ import annotations

import os
import threading
from socketserver import BaseServer


def serve_for(srv: BaseServer, port_file: str, lifetime_s: float) -> int:
    with open(port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(srv.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    threading.Timer(lifetime_s, srv.shutdown).start()
    srv.serve_forever()
    return 0
