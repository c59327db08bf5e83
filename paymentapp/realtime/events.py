"""Socket.IO handlers of the default namespace: subscribe to an order's room, unsubscribe.

Protocol (docs/realtime.md): `subscribe {order_id, token}` answers `{ok: true, status:
<snapshot>}` or `{ok: false, error: {code, message}}`; `subscribe_many [{order_id, token},
…]` (a reconnect's resubscribe, a status board) answers `{ok: true, results: [...]}`, one
such answer per order, in order; `unsubscribe {order_id}` answers `{ok: true}`. The
snapshot is read after joining the room, so an update committed at any moment reaches
the client either in the snapshot or as a `payment_update`.

Handlers are bound to each app's Socket.IO server by `register_handlers` (called by
`server.init_socketio`, after `init_app`), the one way every namespace registers them
(`admin/events.py` does the same from its blueprint).
"""

from __future__ import annotations

import functools
import logging
import os
import time

from flask import current_app, request
from flask_socketio import SocketIO, disconnect, join_room, leave_room

from .. import metrics
from ..errors import ApiError, NotFound, bad_text
from ..extensions import db, socketio
from ..orders.snapshots import read_snapshot, read_snapshots
from ..security import check_client_token
from .emit import ROOM_PREFIX, order_room
from .message_queue import BoundedRedisManager

log = logging.getLogger(__name__)

# Defaults of SOCKET_MAX_ROOMS and SOCKET_EVENT_BURST (config.py): a page watches one
# order, a status board a few dozen, and resubscribes to all of them in one burst.
MAX_ROOMS_PER_SOCKET = 50
EVENTS_PER_SECOND = 5  # sustained, per connection
EVENT_BURST = 50
DISCONNECT_AFTER_REFUSED = 50  # a client still flooding after this many refusals is dropped
MAX_ORDER_ID = 64
MAX_TOKEN = 512
LIMITER_KEY = "paymentapp.socket_limiter"
LISTEN_WAIT_S = 2.0


class SocketError(Exception):
    """Refuse a socket event; becomes the ack `{ok: false, error: {code, message}}`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class TokenBucket:
    """Events allowed per connection: `rate` a second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.refused = 0

    def allow(self, cost: int = 1) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            self.refused = 0
            return True
        self.refused += 1
        return False


def _max_rooms() -> int:
    return current_app.config.get("SOCKET_MAX_ROOMS") or MAX_ROOMS_PER_SOCKET


def _limiter() -> TokenBucket:
    # The environ lives as long as the connection, so the bucket needs no cleanup.
    bucket = request.environ.get(LIMITER_KEY)
    if bucket is None:
        burst = current_app.config.get("SOCKET_EVENT_BURST") or EVENT_BURST
        bucket = request.environ[LIMITER_KEY] = TokenBucket(EVENTS_PER_SECOND, burst)
    return bucket


def failure(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def socket_event(handler=None, *, cost=None):
    """Rate-limit an event handler and turn every refusal or error into a failure ack.

    `cost(*args)` is how many events a call counts as (default 1); never more than the
    burst, so a call a fresh connection may make always passes.
    """
    if handler is None:
        return functools.partial(socket_event, cost=cost)

    @functools.wraps(handler)
    def wrapper(*args):
        bucket = _limiter()
        if not bucket.allow(max(1, min(cost(*args), bucket.burst)) if cost else 1):
            if bucket.refused >= DISCONNECT_AFTER_REFUSED:
                log.warning(
                    "socket: disconnecting a client that keeps flooding (sid %s)", request.sid
                )
                disconnect()
            return failure("rate_limited", "Too many events; slow down.")
        try:
            return handler(*args)
        except SocketError as exc:
            return failure(exc.code, exc.message)
        except ApiError as exc:
            return failure(exc.code, exc.message)
        except Exception:  # noqa: BLE001 - a socket client gets an ack, never a dead handler
            db.session.rollback()
            log.exception("socket event %s failed", request.event.get("message"))
            return failure("internal_error", "Something went wrong on our side.")

    return wrapper


def _text(data: dict, name: str, max_length: int, code: str = "invalid_payload") -> str:
    value = data.get(name)
    if value is None or value == "":
        raise SocketError(code, f"'{name}' is required.")
    if not isinstance(value, str) or len(value) > max_length or bad_text(value):
        raise SocketError(
            "invalid_payload", f"'{name}' must be text of at most {max_length} characters."
        )
    return value


def _payload(data) -> dict:
    if not isinstance(data, dict):
        raise SocketError("invalid_payload", "Send an object such as {order_id, token}.")
    return data


def _wait_for_message_queue() -> None:
    """Until a fresh worker listens to Redis, other workers' updates pass it by: wait."""
    # The listener starts with the worker's first connection, so only the first few
    # subscribes ever wait (at most LISTEN_WAIT_S). After that no waiting: a later
    # Redis outage ends with a resync of every local room instead.
    manager = socketio.server.manager
    if isinstance(manager, BoundedRedisManager) and not manager.write_only:
        manager.listening.wait(LISTEN_WAIT_S)


def _order_rooms() -> set[str]:
    """The order rooms this connection is in, from the client manager's sid → rooms
    index (`rooms.py`): no pass over every room of the namespace."""
    rooms = socketio.server.manager.get_rooms(request.sid, "/")
    return {room for room in rooms if room.startswith(ROOM_PREFIX)}


def _leave(order_id: str) -> None:
    leave_room(order_room(order_id))


def _join(data) -> str:
    """Check one `{order_id, token}` and join its room; returns the order id."""
    data = _payload(data)
    order_id = _text(data, "order_id", MAX_ORDER_ID)
    token = _text(data, "token", MAX_TOKEN, code="missing_token")
    check_client_token(order_id, token)
    room = order_room(order_id)
    limit = _max_rooms()
    watched = _order_rooms()
    if room not in watched and len(watched) >= limit:
        raise SocketError(
            "too_many_subscriptions",
            f"One connection may watch at most {limit} orders; unsubscribe first.",
        )
    join_room(room)
    return order_id


def _not_found(order_id: str) -> NotFound:
    _leave(order_id)
    return NotFound("No order with this id.", code="order_not_found")


def connected(auth=None):
    """Count the open connection (`paymentapp_socket_connections`); everyone may connect:
    each subscribe carries its own token."""
    metrics.socket_connected()


def disconnected(*_reason):
    metrics.socket_disconnected()


@socket_event
def subscribe(data=None, *_extra):
    """Join `order:<id>` if the token allows it; the ack carries the current snapshot."""
    # Join first, read second: an update committed before this read is in the
    # snapshot, one committed after it is emitted to the room we are already in.
    order_id = _join(data)
    _wait_for_message_queue()
    # the order and its payments: one autocommitted Core statement, the latest commit
    snapshot = read_snapshot(order_id)
    if snapshot is None:
        raise _not_found(order_id)
    return {"ok": True, "status": snapshot}


@socket_event(cost=lambda data=None, *_: len(data) if isinstance(data, list) else 1)
def subscribe_many(data=None, *_extra):
    """`subscribe` for a list of orders in one event (counted as one event per order).

    Every room is joined before any snapshot is read (the same rule as `subscribe`); the
    ack's `results` answer each order in the order asked, as `subscribe` would have.
    """
    if not isinstance(data, list):
        raise SocketError("invalid_payload", "Send a list such as [{order_id, token}, …].")
    results: list[dict] = []
    joined: dict[int, str] = {}
    for index, item in enumerate(data):
        asked = item.get("order_id") if isinstance(item, dict) else None
        try:
            joined[index] = _join(item)
            results.append({})
        except (SocketError, ApiError) as exc:
            order_id = asked if isinstance(asked, str) and len(asked) <= MAX_ORDER_ID else None
            results.append({"order_id": order_id, **failure(exc.code, exc.message)})
    if joined:
        _wait_for_message_queue()
        snapshots = read_snapshots(joined.values())
        for index, order_id in joined.items():
            snapshot = snapshots.get(order_id)
            if snapshot is None:
                exc = _not_found(order_id)
                answer = failure(exc.code, exc.message)
            else:
                answer = {"ok": True, "status": snapshot}
            results[index] = {"order_id": order_id, **answer}
    return {"ok": True, "results": results}


@socket_event
def unsubscribe(data=None, *_extra):
    """Leave `order:<id>`; leaving a room one is not in is fine."""
    order_id = _text(_payload(data), "order_id", MAX_ORDER_ID)
    _leave(order_id)
    return {"ok": True}


@socket_event
def whoami(data=None, *_extra):
    """Which server process holds this connection (diagnostics; tests of multi-worker)."""
    return {"ok": True, "pid": os.getpid()}


@socket_event
def unknown_event(event, *args):
    """Every other event counts against the limit and is refused."""
    raise SocketError("unknown_event", "Unknown event.")


HANDLERS = (
    ("connect", connected),
    ("disconnect", disconnected),
    ("subscribe", subscribe),
    ("subscribe_many", subscribe_many),
    ("unsubscribe", unsubscribe),
    ("whoami", whoami),
    ("*", unknown_event),
)


def register_handlers(server: SocketIO) -> None:
    """Bind this namespace's handlers to the app's Socket.IO server (each `create_app`
    builds a new one)."""
    for event, handler in HANDLERS:
        server.on_event(event, handler)
