"""The one place that emits: called by services after their commit.

An emit that fails (Redis down, say) is logged and swallowed: the state is already
committed, and clients recover through the subscribe snapshot or the status endpoint.
"""

from __future__ import annotations

import logging

from ..extensions import socketio

log = logging.getLogger(__name__)

ADMIN_NAMESPACE = "/admin"


def order_room(order_id: str) -> str:
    return f"order:{order_id}"


def _safe_emit(event: str, payload: dict, **kwargs) -> bool:
    try:
        socketio.emit(event, payload, **kwargs)
        return True
    except Exception:  # noqa: BLE001 - an emit must never fail the committed request
        log.exception("emit of %s failed (state is committed; clients will resync)", event)
        return False


def emit_order_update(order) -> None:
    """Send the order's snapshot to its room and to admins (after commit)."""
    from ..orders.schemas import status_snapshot

    payload = status_snapshot(order)
    _safe_emit("payment_update", payload, to=order_room(order.id))
    _safe_emit("payment_update", payload, namespace=ADMIN_NAMESPACE)


def emit_order_created(order) -> None:
    """Tell admin dashboards about a new order (after commit)."""
    from ..orders.schemas import order_json

    _safe_emit("order_created", order_json(order), namespace=ADMIN_NAMESPACE)
