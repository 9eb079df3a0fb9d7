"""Run moto's server on a free 127.0.0.1 port in its own process.

moto keeps its backends in module globals, so a server thread inside the pytest process would share
(and have reset) state with every other moto user in that process; a process of its own does not.
Prints ``listening on http://127.0.0.1:PORT`` once serving.
"""

from __future__ import annotations

import signal
import threading

from moto.server import ThreadedMotoServer


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"listening on http://{host}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
