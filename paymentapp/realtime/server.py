"""Socket.IO server set-up: gevent, websocket-only, Redis message queue when configured."""

from __future__ import annotations

from functools import partial

from flask import Flask
from flask_socketio import SocketIO

from ..cors import socket_origin_allowed
from .emit import STATE_KEY, resend_local_snapshots
from .events import register_handlers
from .message_queue import BoundedRedisManager
from .rooms import IndexedManager

# Incoming Socket.IO messages are tiny ({order_id, token}); refuse anything bigger.
MAX_MESSAGE_BYTES = 16 * 1024
# A dead browser is noticed within PING_INTERVAL + PING_TIMEOUT seconds.
PING_INTERVAL_S = 20
PING_TIMEOUT_S = 20


def init_socketio(app: Flask, socketio: SocketIO) -> None:
    """Bind Flask-SocketIO with settings from config (CORS never `*` outside simulator)."""
    manager = IndexedManager()  # one process: in memory
    if app.config.get("REDIS_URL"):
        manager = BoundedRedisManager(
            app.config["REDIS_URL"],
            app.config["SOCKETIO_CHANNEL"],
            publish_timeout=app.config.get("SOCKETIO_PUBLISH_TIMEOUT_S", 1.0),
        )
        manager.on_resubscribe = partial(resend_local_snapshots, app, manager)
    socketio.init_app(
        app,
        async_mode=app.config.get("SOCKETIO_ASYNC_MODE", "gevent"),
        # Always passed, because Flask-SocketIO keeps options from an earlier init_app
        # on the same SocketIO object.
        client_manager=manager,
        # CORS_ALLOWED_ORIGINS through the one rule (cors.py), which logs a refusal
        cors_allowed_origins=partial(_origin_allowed, app),
        # Websocket only: no long-polling means no sticky sessions across workers.
        transports=["websocket"],
        max_http_buffer_size=MAX_MESSAGE_BYTES,
        ping_interval=PING_INTERVAL_S,
        ping_timeout=PING_TIMEOUT_S,
        logger=False,
        engineio_logger=False,
    )
    register_handlers(socketio)
    app.extensions[STATE_KEY] = {"write_only": False, "emitter": None}


def _origin_allowed(app: Flask, origin: str | None, environ: dict | None = None) -> bool:
    """engine.io's origin check (a request without an Origin header is not a page's)."""
    return origin is None or socket_origin_allowed(app.config, origin)
