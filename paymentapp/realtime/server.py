"""Socket.IO server set-up: gevent, websocket-only, Redis message queue when configured."""

from __future__ import annotations

from flask import Flask
from flask_socketio import SocketIO


def init_socketio(app: Flask, socketio: SocketIO) -> None:
    """Bind Flask-SocketIO with settings from config (CORS never `*` outside simulator)."""
    cors = app.config["CORS_ALLOWED_ORIGINS"]
    socketio.init_app(
        app,
        async_mode=app.config.get("SOCKETIO_ASYNC_MODE", "gevent"),
        message_queue=app.config.get("REDIS_URL"),
        channel=app.config["SOCKETIO_CHANNEL"],
        cors_allowed_origins="*" if cors == ["*"] else cors,
        # Websocket only: no long-polling means no sticky sessions across workers.
        transports=["websocket"],
        max_http_buffer_size=16 * 1024,
        ping_interval=20,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )
