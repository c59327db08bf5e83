"""The `/admin` Socket.IO namespace: only a live admin session may listen.

The server emits `order_created` and `payment_update` to this namespace after every
commit (`realtime/emit.py`); this module only decides who may connect, and hangs up
on a socket whose session has gone idle, grown too old, or been revoked by a logout.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from flask import current_app, request

from ..extensions import db, socketio
from ..models import AdminUser
from ..realtime.emit import ADMIN_NAMESPACE
from . import bp
from .auth import current_admin, session_expires_at

log = logging.getLogger(__name__)

# How often an open dashboard socket re-checks that its session was not revoked.
RECHECK_S = 60.0


def same_origin(origin: str | None) -> bool:
    """A browser's handshake must come from a page on this host (no cross-site sockets)."""
    return origin is None or urlsplit(origin).netloc == request.host


def admin_connect(auth=None):
    """Accept the socket only with a logged-in, non-idle admin session from our origin."""
    if not same_origin(request.headers.get("Origin")):
        raise ConnectionRefusedError("forbidden_origin")
    admin = current_admin()
    if admin is None:
        raise ConnectionRefusedError("unauthorized")
    socketio.start_background_task(
        _hang_up_when_expired,
        socketio.server,
        current_app._get_current_object(),
        request.sid,
        admin.id,
        admin.session_version,
        session_expires_at(),
    )
    log.info(
        f"admin {admin.username} connected",
        extra={"event": "admin.socket", "admin": admin.username},
    )


def _session_still_valid(app, user_id: int, version: int) -> bool:
    with app.app_context():
        try:
            user = db.session.get(AdminUser, user_id)
            return user is not None and user.session_version == version
        finally:
            db.session.remove()


def _hang_up_when_expired(
    server, app, sid: str, user_id: int, version: int, expires_at: float
) -> None:
    """Disconnect at the session's expiry, or within RECHECK_S of a logout.

    The socket cannot see later cookie refreshes; admin.js simply reconnects, and the
    new handshake carries the refreshed cookie (or is refused, and the page logs out).
    """
    manager = server.manager
    while True:
        # Sleep first: while this handler's connect is still pending, the manager does
        # not report the socket as connected yet.
        socketio.sleep(max(0.0, min(expires_at - time.time(), RECHECK_S)))
        if not manager.is_connected(sid, ADMIN_NAMESPACE):
            return  # the browser left
        try:
            valid = time.time() < expires_at and _session_still_valid(app, user_id, version)
        except Exception:  # noqa: BLE001 - a database blip must not kill the watcher
            log.exception("could not re-check an admin socket's session; will retry")
            continue
        if not valid:
            server.disconnect(sid, namespace=ADMIN_NAMESPACE)
            return


@bp.record
def register_handlers(state) -> None:
    """Bind to this app's Socket.IO server: each `create_app` builds a new one, and a
    module-level `@socketio.on` would only reach the first app built in a process."""
    socketio.on_event("connect", admin_connect, namespace=ADMIN_NAMESPACE)
