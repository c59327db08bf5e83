"""`POST /callbacks/<kind>/<token>`: every kind of Daraja callback. Answer fast, never
lose one: the checks here, then `pipeline.receive` (store raw → parse → apply)."""

import hmac
import logging
import time

from flask import Blueprint, current_app, jsonify, request

from ..config import address_in
from ..errors import ApiError, NotFound
from ..extensions import limiter
from . import c2b, initiator, pull, stk  # noqa: F401  (kinds and passes register on import)
from .pipeline import hold_untrusted, kind_at, receive

bp = Blueprint("callbacks", __name__, url_prefix="/callbacks")

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 16 * 1024  # real callbacks are well under 2 KiB


@limiter.request_filter
def _never_rate_limited() -> bool:
    """Daraja's callbacks have no rate limit (a refused one is money M-Pesa retries or
    gives up on; the token and MPESA_CALLBACK_ALLOWED_IPS guard the door), so the
    limiter skips them before resolving limits: about 2 % of a callback's CPU."""
    return request.blueprint == bp.name


def ip_allowed(ip: str | None) -> bool:
    networks = current_app.config["MPESA_CALLBACK_ALLOWED_IPS"]
    return not networks or address_in(ip, networks)


def token_matches(token: str) -> bool:
    """Constant-time check against every accepted token (rotation keeps the old one)."""
    config = current_app.config
    given = token.encode("utf-8", "replace")
    matched = False
    for expected in config.get("MPESA_CALLBACK_TOKENS") or [config["MPESA_CALLBACK_TOKEN"]]:
        matched |= hmac.compare_digest(given, expected.encode())
    return matched


@bp.post("/<path:kind_path>/<token>")
def callback(kind_path: str, token: str):
    """Check token, address and size; store, apply and answer Daraja."""
    started = time.perf_counter()
    kind = kind_at(kind_path)
    if kind is None or not token_matches(token):
        raise NotFound("Nothing lives at this address.", code="not_found")
    ip = request.remote_addr  # the real client's, behind trusted proxies (ProxyFix)
    if (request.content_length or 0) > MAX_CALLBACK_BYTES:
        raise ApiError("Callback body too large.", code="payload_too_large", status=413)
    body = request.get_data(cache=False)
    if len(body) > MAX_CALLBACK_BYTES:
        raise ApiError("Callback body too large.", code="payload_too_large", status=413)
    if not ip_allowed(ip):  # stored, not applied: an admin decides (docs/payments.md)
        return jsonify(hold_untrusted(kind, body, ip, started))
    return jsonify(receive(kind, body, ip, started))
