"""`/healthz`: is the database reachable, Redis when configured, and are the payment
page's browser files there (a host without them serves a blank page)."""

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from . import vendor
from .extensions import db
from .redis_client import redis_client

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when every dependency answers, 503 naming the one that does not."""
    body = {"status": "ok", "db": "ok", "redis": "disabled", "assets": "ok"}
    # started with PAYMENTAPP_ALLOW_MISSING_ASSETS=1, or the files went since the start
    absent = vendor.missing()
    if absent:
        body.update(status="error", assets="missing", missing_assets=absent)
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
