"""The one place that emits. State changes never call it directly: `outbox/hook.py` prepares
the payloads before a commit and calls `send` after it.

Which emitter is used:

- in a web worker (gunicorn, `python wsgi.py`): the app's Socket.IO server. Clients of
  this process get the event directly; with `REDIS_URL` it is also published on the
  `SOCKETIO_CHANNEL` Redis channel so every other worker (on any host) delivers it;
- in a process that serves no sockets (`flask --app wsgi ...` commands such as
  `mpesa reconcile --loop`): a write-only Redis publisher. This is automatic inside a
  click command; anything else calls `use_write_only_emitter(app)` once. Without
  `REDIS_URL` such a process has nobody to tell, and clients catch up from the
  snapshot (subscribe ack, `GET /api/orders/<id>/status`).

An emit that fails (Redis down, say) is logged and swallowed, and never takes more than
about a second (see `message_queue.py`): the state is already committed, and clients
recover through the snapshot.
"""

from __future__ import annotations

import logging

import click
from flask import Flask, current_app
from sqlalchemy import select

from ..extensions import db, socketio
from ..models import Order
from ..orders.schemas import order_json, status_snapshot
from ..phones import masked_payload
from .message_queue import BoundedRedisManager

log = logging.getLogger(__name__)

ADMIN_NAMESPACE = "/admin"
ROOM_PREFIX = "order:"
STATE_KEY = "paymentapp.realtime"


def order_room(order_id: str) -> str:
    return f"{ROOM_PREFIX}{order_id}"


def use_write_only_emitter(app: Flask) -> None:
    """Make this process emit through Redis only (it serves no sockets itself)."""
    app.extensions[STATE_KEY]["write_only"] = True


def _write_only_emitter(app: Flask) -> BoundedRedisManager | None:
    state = app.extensions[STATE_KEY]
    if state["emitter"] is None and app.config.get("REDIS_URL"):
        state["emitter"] = BoundedRedisManager(
            app.config["REDIS_URL"],
            app.config["SOCKETIO_CHANNEL"],
            write_only=True,
            publish_timeout=app.config.get("SOCKETIO_PUBLISH_TIMEOUT_S", 1.0),
        )
    return state["emitter"]


def current_emitter():
    """The Socket.IO server, or the write-only publisher in a CLI process (None: nobody)."""
    app = current_app._get_current_object()
    if app.extensions[STATE_KEY]["write_only"] or click.get_current_context(silent=True):
        return _write_only_emitter(app)
    return socketio


def _safe_emit(event: str, payload: dict, *, to: str | None = None, namespace: str = "/") -> bool:
    try:
        emitter = current_emitter()
        if emitter is None:
            log.debug("no message queue in this process; %s not sent", event)
            return False
        emitter.emit(event, payload, to=to, namespace=namespace)
        return True
    except Exception:  # noqa: BLE001 - an emit must never fail the committed request
        log.exception("emit of %s failed (state is committed; clients will resync)", event)
        return False


def order_update_payload(order) -> dict:
    """The `payment_update` payload: the order's snapshot (built before commit)."""
    return status_snapshot(order)


def order_created_payload(order) -> dict:
    """The `order_created` payload for admin browsers, with the phone masked."""
    return masked_payload(order_json(order))  # browsers see masks


def send(event: str, payload: dict) -> None:
    """Deliver a prepared payload: `payment_update` to its order's room and to admins,
    `order_created` to admins. Called by `outbox/hook.py` after the commit.

    Through Redis, both go out as one published message (`emit_many`)."""
    targets = [("/", order_room(payload["order_id"]))] if event == "payment_update" else []
    targets.append((ADMIN_NAMESPACE, None))
    manager = _batching_manager()
    if manager is not None:
        try:
            manager.emit_many([(event, payload, namespace, room) for namespace, room in targets])
        except Exception:  # noqa: BLE001 - an emit must never fail the committed request
            log.exception("emit of %s failed (state is committed; clients will resync)", event)
        return
    for namespace, room in targets:
        _safe_emit(event, payload, to=room, namespace=namespace)


def _batching_manager() -> BoundedRedisManager | None:
    """The Redis manager that publishes for this process, when there is one."""
    try:
        emitter = current_emitter()
    except Exception:  # noqa: BLE001 - no app context or no emitter: emit one by one
        return None
    if isinstance(emitter, BoundedRedisManager):
        return emitter
    manager = getattr(getattr(emitter, "server", None), "manager", None)
    return manager if isinstance(manager, BoundedRedisManager) else None


def emit_order_update(order) -> None:
    """Send the order's current snapshot now, outside any change (`realtime resend`)."""
    send("payment_update", order_update_payload(order))


def resend_local_snapshots(app: Flask, manager) -> int:
    """After a Redis outage, push fresh snapshots to this process's order rooms, and tell
    its admin dashboards to refresh.

    Emits published while this worker was unsubscribed are lost; its clients are still
    connected and would not know. Clients drop versions they already have, so a repeat
    is harmless. Returns how many snapshots were sent.
    """
    order_ids = [
        room[len(ROOM_PREFIX) :]
        for room in list(manager.rooms.get("/", {}))
        if isinstance(room, str) and room.startswith(ROOM_PREFIX)
    ]
    sent = 0
    with app.app_context():
        for start in range(0, len(order_ids), 500):
            chunk = order_ids[start : start + 500]
            for order in db.session.scalars(select(Order).where(Order.id.in_(chunk))):
                manager.emit(
                    "payment_update",
                    status_snapshot(order),
                    namespace="/",
                    room=order_room(order.id),
                    ignore_queue=True,  # this process only: every worker resyncs its own
                )
                sent += 1
        db.session.remove()
    # Admin dashboards on this worker may have missed updates too: ask them to refresh.
    manager.emit("resync", {}, namespace=ADMIN_NAMESPACE, room=None, ignore_queue=True)
    log.info("socket.io: re-sent %d order snapshots after Redis recovery", sent)
    return sent
