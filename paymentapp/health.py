"""`/healthz`: is the database reachable, and Redis when configured."""

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from .extensions import db
from .redis_client import redis_client

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


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
