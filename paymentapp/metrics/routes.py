"""`GET /metrics` and who may read it (`METRICS_TOKEN`, `METRICS_ALLOWED_IPS`)."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, request
from prometheus_client.exposition import choose_encoder

from ..config import address_in
from ..errors import Forbidden, NotFound, Unauthorized
from .collector import registry

bp = Blueprint("metrics", __name__)


def authorise() -> None:
    """`METRICS_ALLOWED_IPS` and `METRICS_TOKEN`: each one configured must pass. With
    neither, `/metrics` is open in simulator mode (a laptop) and absent in live modes."""
    config = current_app.config
    token = config.get("METRICS_TOKEN")
    networks = config.get("METRICS_ALLOWED_IPS") or []
    if not token and not networks:
        if config["MPESA_ENV"] == "simulator":
            return
        raise NotFound("Nothing lives at this address.", code="not_found")
    if networks and not address_in(request.remote_addr, networks):
        raise Forbidden("This address may not read the metrics.", code="ip_not_allowed")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized(
                "Send the metrics token as 'Authorization: Bearer <token>'.",
                code="missing_token",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        # compare bytes: compare_digest refuses str with non-ASCII characters
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode()):
            raise Unauthorized(
                "This metrics token is not valid.",
                code="invalid_token",
                headers={"WWW-Authenticate": 'Bearer realm="metrics", error="invalid_token"'},
            )


@bp.get("/metrics")
def metrics():
    """Every process's metrics and the database's counts, in the format the scraper asks
    for (Prometheus text, or OpenMetrics)."""
    authorise()
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    body = encode(registry())
    return body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"}
