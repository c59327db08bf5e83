"""A merchant's webhook receiver for tests: a real HTTP server that records what it gets
and answers as told (status, delay, redirect, a huge body, or down)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    at: float = field(default_factory=time.monotonic)


class Receiver:
    """`with Receiver() as r:` listens on `r.url`; set `r.status`, `r.delay_s`, `r.body`."""

    def __init__(self, port: int = 0):
        self.received: list[Received] = []
        self.status = 200
        self.delay_s = 0.0
        self.body = b'{"ok": true}'
        self.headers: dict = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                try:
                    if receiver.delay_s:
                        time.sleep(receiver.delay_s)
                    self.send_response(receiver.status)
                    for key, value in receiver.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(receiver.body)))
                    self.end_headers()
                    self.wfile.write(receiver.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def event_ids(self) -> list[str]:
        return [r.headers.get("Paymentapp-Event-Id") for r in self.received]
