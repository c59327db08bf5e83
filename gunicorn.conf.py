"""gunicorn settings for production: gevent WebSocket workers, driven by the environment
over `.env`, read by the loader the app uses (paymentapp/environment.py).

No preload_app: each worker must be monkey-patched by gevent before the app imports
ssl, socket or redis, and gunicorn's gevent worker patches at worker start, before it
loads `wsgi:app`. So nothing of the `paymentapp` package is imported here (this runs in
the master): `environment.py`, which imports nothing of the project, is loaded by its path.
"""

import importlib.util
import os
import re
import resource
import shutil
import sys
import tempfile
from pathlib import Path

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from gunicorn.errors import AppImportError
from gunicorn.glogging import Logger
from gunicorn.workers.ggevent import PyWSGIHandler


def _environment_module():
    """paymentapp/environment.py, loaded from its file without the package around it."""
    path = Path(__file__).resolve().parent / "paymentapp" / "environment.py"
    spec = importlib.util.spec_from_file_location("paymentapp_settings_loader", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


settings = _environment_module()

_CALLBACK_TOKEN = re.compile(r"(/callbacks/stk/)[^/?\s\"]+")
_QUERY_TOKEN = re.compile(r"([?&]token=)[^&\s\"]+")


# Polled over and over by the simulated phone page (`make run`): a successful poll is
# not worth an access-log line. Errors on it, and every other request, are still logged.
QUIET_ACCESS = frozenset({("GET", "/_simulator/api/prompts")})


def redact(line: str) -> str:
    """Hide the callback path secret and client tokens in an access-log line."""
    return _QUERY_TOKEN.sub(r"\1<token>", _CALLBACK_TOKEN.sub(r"\1<token>", line))


def quiet(environ: dict, status) -> bool:
    """Is this a request the access log leaves out (a successful poll, see QUIET_ACCESS)?"""
    request = (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
    return request in QUIET_ACCESS and str(status).startswith("200")


RFILE_BUFFER = 1024  # bytes: a callback's headers and a subscribe frame fit in one read


class RedactingWebSocketHandler(WebSocketHandler):
    """gevent-websocket's handler: redacted access lines, cross-origin upgrades refused,
    and a small read buffer."""

    def __init__(self, sock, address, server, rfile=None):
        # pywsgi reads each connection through a buffered file of io.DEFAULT_BUFFER_SIZE
        # (8 KiB, allocated when the connection opens). An open dialog is a websocket
        # that receives a few bytes a minute, so most of that buffer is memory every
        # dialog holds for nothing; with RFILE_BUFFER it costs about 3.5 KiB less per dialog
        # (docs/performance.md). Requests and frames longer than the buffer are read in
        # several reads, with the same result.
        if rfile is None:
            rfile = sock.makefile("rb", RFILE_BUFFER)
        super().__init__(sock, address, server, rfile)

    def format_request(self):
        return redact(super().format_request())

    def get_environ(self):
        environ = super().get_environ()
        environ.setdefault("RAW_URI", self.path)  # as gunicorn's handler; its log needs it
        return environ

    def log_request(self):
        # gevent-websocket prints through the root logger (a second timestamp on every
        # line, and ACCESS_LOG ignored); write gunicorn's access line instead, through
        # RedactingLogger, as gunicorn's own gevent handler does. Upgrades stay unlogged.
        if "101" in str(self.status):
            return
        PyWSGIHandler.log_request(self)

    def upgrade_websocket(self):
        # gevent-websocket answers 101 before the app runs, so engine.io's own origin
        # check can only drop the socket afterwards; refuse the handshake itself instead,
        # by the app's rule, which logs what to change. `self.application` is the Flask app.
        origin = self.environ.get("HTTP_ORIGIN")
        upgrading = self.environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        if upgrading and origin:
            # imported here: this runs in a worker, where the app (wsgi.py) is loaded
            from paymentapp.cors import socket_origin_allowed

            if not socket_origin_allowed(self.application.config, origin):
                self.start_response("403 Forbidden", [("Content-Type", "text/plain")])
                return [b"This origin may not open a WebSocket here."]
        return super().upgrade_websocket()


class Worker(GeventWebSocketWorker):
    """gevent-websocket's gunicorn worker (WebSocket upgrade) with redacted access lines."""

    wsgi_handler = RedactingWebSocketHandler

    def load_wsgi(self):
        # wsgi.py exits with one line on a configuration error. Passed on as an
        # AppImportError, gunicorn prints that line and stops; a worker's plain exit would
        # only be followed by another worker failing the same way, forever.
        try:
            super().load_wsgi()
        except SystemExit as exc:
            if isinstance(exc.code, str):
                raise AppImportError(exc.code) from None
            raise


class RedactingLogger(Logger):
    """gunicorn's access log without secrets in the path or query, and without the
    simulated phone's successful polls."""

    def access(self, resp, req, environ, request_time):
        if quiet(environ, resp.status):
            return
        super().access(resp, req, environ, request_time)

    def reopen_files(self):
        super().reopen_files()
        # In a worker the app writes gunicorn's logs on its log thread, behind wrappers
        # gunicorn does not recognise as files (paymentapp/logwriter.py): reopen those too.
        writer = sys.modules.get("paymentapp.logwriter")
        if writer is not None:
            writer.reopen_files("gunicorn.error", "gunicorn.access")

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("U", "r", "q"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms


# The real environment over `.env`, put into this process's environment: the workers
# (and the app in them) inherit it. A bad value stops gunicorn with one line, as the app does.
try:
    env = settings.load_environment()
    bind = settings.bind_address(env)
    workers = settings.whole_number(env, "WEB_CONCURRENCY", 1, minimum=1)
    # Each open Socket.IO connection holds one greenlet and one file descriptor. Workers
    # do not share connections evenly (whichever is free accepts), so each may hold all
    # of them: 10,000 per worker, and `on_starting` raises the open-files limit to match.
    worker_connections = settings.whole_number(env, "WORKER_CONNECTIONS", 10000, minimum=1)
    loglevel = settings.log_level(env)
    RECONCILER_IN_PROCESS = settings.flag(env, "RECONCILER_IN_PROCESS")
    RECONCILE_INTERVAL_S = settings.seconds(env, "RECONCILE_INTERVAL_S", 5, minimum=0.1)
    WEBHOOKS_IN_PROCESS = settings.flag(env, "WEBHOOKS_IN_PROCESS")
    WEBHOOK_INTERVAL_S = settings.seconds(env, "WEBHOOK_INTERVAL_S", 1, minimum=0.05)
except settings.ConfigError as exc:
    sys.exit(f"paymentapp: configuration error: {exc}")
worker_class = Worker
preload_app = False
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = env.get("ACCESS_LOG", "-")
errorlog = "-"
logger_class = RedactingLogger
forwarded_allow_ips = env.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket would be shared by every gunicorn on the host; not needed.
control_socket_disable = True


def post_worker_init(worker):
    """Open the worker's database pool before it serves; and for `make run` (one
    worker) run the reconciler and the webhook delivery worker as its greenlets.

    In production run `flask --app wsgi mpesa reconcile --loop` and
    `flask --app wsgi webhooks deliver --loop` as processes of their own.
    """
    # imported here: the config module is read by the master, before any app exists
    from paymentapp.database import open_pool
    from paymentapp.extensions import db
    from paymentapp.loops import start_in_background

    app = worker.wsgi
    if getattr(app, "extensions", {}).get("sqlalchemy") is db:  # paymentapp's app, not another
        with app.app_context():  # before this worker serves (paymentapp/database.py)
            open_pool(db.engine)
    if RECONCILER_IN_PROCESS:
        from paymentapp.payments.reconcile import reconcile_once

        start_in_background(worker.wsgi, reconcile_once, "reconcile", RECONCILE_INTERVAL_S)
    if WEBHOOKS_IN_PROCESS:
        from paymentapp.webhooks.delivery import delivery_pass

        start_in_background(worker.wsgi, delivery_pass, "webhooks", WEBHOOK_INTERVAL_S)


# -- metrics: prometheus_client's multiprocess directory (docs/metrics.md) ------------------

# Marks a PROMETHEUS_MULTIPROC_DIR made here (not the operator's), so it is removed at exit
# and a re-executed master (USR2) makes its own instead of sharing this one.
_OWN_METRICS_DIR = "PAYMENTAPP_METRICS_TMPDIR"
_METRICS_FILE = re.compile(r"[a-z_]+_(\d+)\.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _allow_open_files(wanted: int) -> int:
    """Raise this process's soft open-files limit towards `wanted` (never past the hard
    limit); workers inherit it. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def on_starting(server):
    """Open files for every connection a worker may hold (plus the database, Redis and
    log files), then metrics."""
    limit = _allow_open_files(worker_connections + 1024)
    if limit != resource.RLIM_INFINITY and limit < worker_connections + 64:
        server.log.warning(
            "open-files limit %d is below WORKER_CONNECTIONS=%d: raise `ulimit -n`",
            limit,
            worker_connections,
        )
    _metrics_dir(server)


def _metrics_dir(server):
    """Give the workers one directory for their metric files, before any of them starts
    (prometheus_client reads PROMETHEUS_MULTIPROC_DIR when a worker imports it).

    Unset: a fresh temporary directory, removed at exit. Set (so that `flask … --loop`
    processes can share it): created if missing, and the files of processes that no longer
    run are removed, since their counters belong to an earlier run; a running reconciler's
    files stay.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and path != os.environ.get(_OWN_METRICS_DIR):
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            match = _METRICS_FILE.fullmatch(name)
            if match and not _alive(int(match.group(1))):
                os.remove(os.path.join(path, name))
    else:
        path = tempfile.mkdtemp(prefix="paymentapp-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_OWN_METRICS_DIR] = path
    server.log.info("metrics: PROMETHEUS_MULTIPROC_DIR=%s", path)


def child_exit(server, worker):
    """A worker is gone (exited or killed): drop its live gauges (its open sockets)."""
    # Imported here, in the master, only once a worker has exited; the master already
    # imported ssl and threading, so later workers' gevent patching is unaffected.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory this master made (never the operator's)."""
    path = os.environ.get(_OWN_METRICS_DIR)
    if path and path == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(path, ignore_errors=True)
