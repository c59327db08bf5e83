"""gunicorn settings for production: gevent WebSocket workers, driven by the environment.

No preload_app: each worker must be monkey-patched by gevent before the app imports
ssl, socket or redis, and gunicorn's gevent worker patches at worker start, before it
loads `wsgi:app`. Nothing from `paymentapp` is imported here (this runs in the master).
"""

import os
import re

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from gunicorn.glogging import Logger

_CALLBACK_TOKEN = re.compile(r"(/callbacks/stk/)[^/?\s\"]+")
_QUERY_TOKEN = re.compile(r"([?&]token=)[^&\s\"]+")


def redact(line: str) -> str:
    """Hide the callback path secret and client tokens in an access-log line."""
    return _QUERY_TOKEN.sub(r"\1<token>", _CALLBACK_TOKEN.sub(r"\1<token>", line))


class RedactingWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler: redacted access lines, cross-origin upgrades refused."""

    def format_request(self):
        return redact(super().format_request())

    def upgrade_websocket(self):
        # gevent-websocket answers 101 before the app runs, so engine.io's own origin
        # check can only drop the socket afterwards; refuse the handshake itself instead.
        # `self.application` is the Flask app (its config holds CORS_ALLOWED_ORIGINS).
        origin = self.environ.get("HTTP_ORIGIN")
        allowed = getattr(self.application, "config", {}).get("CORS_ALLOWED_ORIGINS") or []
        upgrading = self.environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        if upgrading and origin and "*" not in allowed and origin not in allowed:
            self.start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"This origin may not open a WebSocket here."]
        return super().upgrade_websocket()


class Worker(GeventWebSocketWorker):
    """gevent-websocket's gunicorn worker (WebSocket upgrade) with redacted access lines."""

    wsgi_handler = RedactingWebSocketHandler


class RedactingLogger(Logger):
    """gunicorn's access log without secrets in the path or query."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("U", "r", "q"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms


bind = (
    os.environ.get("BIND")
    or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
)
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = Worker
# Each open Socket.IO connection holds one greenlet; allow thousands per worker.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "5000"))
preload_app = False
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = RedactingLogger
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket would be shared by every gunicorn on the host; not needed.
control_socket_disable = True


def post_worker_init(worker):
    """`make run` (one worker): run the reconciler as a greenlet of the web worker.

    In production run `flask --app wsgi mpesa reconcile --loop` as its own process.
    """
    if os.environ.get("RECONCILER_IN_PROCESS", "").lower() in ("1", "true", "yes"):
        from paymentapp.payments.reconcile import start_background_reconciler

        start_background_reconciler(worker.wsgi, float(os.environ.get("RECONCILE_INTERVAL_S", "5")))
