"""A tiny reverse proxy for tests: forwards to one upstream and appends the connecting
client's address to `X-Forwarded-For`, as nginx's `proxy_add_x_forwarded_for` does."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host"}


class ReverseProxy:
    """`with ReverseProxy(upstream_port) as proxy:` serves on `proxy.port` (127.0.0.1)."""

    def __init__(self, upstream_port: int):
        upstream = upstream_port

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                seen = self.headers.get("X-Forwarded-For")
                client = self.client_address[0]
                headers["X-Forwarded-For"] = f"{seen}, {client}" if seen else client
                headers["X-Forwarded-Proto"] = "http"
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ReverseProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def request_from(
    address: str, port: int, method: str, path: str, body: bytes = b"", headers=None
) -> tuple[int, str, str]:
    """One request from a chosen loopback source address (127.0.0.x); returns
    (status, text, the Set-Cookie value or "")."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(address, 0))
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        answer = conn.getresponse()
        cookie = (answer.getheader("Set-Cookie") or "").split(";", 1)[0]
        return answer.status, answer.read().decode(errors="replace"), cookie
    finally:
        conn.close()
