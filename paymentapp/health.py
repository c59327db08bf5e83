"""`/healthz`: is the database reachable, and Redis when configured."""

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from .extensions import db

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


def redis_client():
    """A Redis client for `REDIS_URL` (short timeouts), or None when unset."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    import redis

    client = current_app.extensions.get("paymentapp_redis")
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        current_app.extensions["paymentapp_redis"] = client
    return client


@bp.get("/healthz")
def healthz():
    """200 when every dependency answers, 503 naming the one that does not."""
    body = {"status": "ok", "db": "ok", "redis": "disabled"}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        db.session.rollback()
        log.warning("healthz: database unreachable: %s", exc.__class__.__name__)
        body.update(status="error", db="error")
    client = redis_client()
    if client is not None:
        try:
            client.ping()
            body["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            log.warning("healthz: redis unreachable: %s", exc.__class__.__name__)
            body.update(status="error", redis="error")
    return jsonify(body), 200 if body["status"] == "ok" else 503
