"""The bare Flask-SocketIO floor of the callback benchmark: what the stack itself costs.

Same shape as paymentapp in production: gunicorn with gunicorn.conf.py's gevent-websocket
Worker, 2 workers, websocket transport only, the same Redis message queue. No database,
no checks: `subscribe {order_id}` joins `order:<id>`; `POST /cb/<order_id>` emits
`payment_update {order_id, order_status: "paid", version}` to that room and answers 200.

    REDIS_URL=redis://127.0.0.1:6379/0 SOCKETIO_CHANNEL=floor WEB_CONCURRENCY=2 \
        .venv/bin/gunicorn -c gunicorn.conf.py --pythonpath bench/peers floor:app
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from flask_socketio import SocketIO, join_room

app = Flask(__name__)
socketio = SocketIO(
    app,
    async_mode="gevent",
    message_queue=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    channel=os.environ.get("SOCKETIO_CHANNEL", "floor"),
    transports=["websocket"],
    cors_allowed_origins="*",
    ping_interval=20,
    ping_timeout=20,
    logger=False,
    engineio_logger=False,
)


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.post("/cb/<order_id>")
def callback(order_id: str):
    request.get_json(force=True, silent=True)  # read the body, as a real handler would
    payload = {"order_id": order_id, "order_status": "paid", "version": 2}
    socketio.emit("payment_update", payload, to=f"order:{order_id}")
    return jsonify(ResultCode=0, ResultDesc="Accepted")


@socketio.on("subscribe")
def subscribe(data=None):
    order_id = data.get("order_id") if isinstance(data, dict) else None
    if not isinstance(order_id, str) or not order_id:
        return {"ok": False, "error": {"code": "invalid_payload", "message": "order_id"}}
    join_room(f"order:{order_id}")
    return {"ok": True, "status": {"order_id": order_id, "order_status": "pending", "version": 1}}
