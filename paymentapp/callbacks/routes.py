"""`POST /callbacks/stk/<token>`: Daraja's STK result. Answer fast, never lose it."""

import hmac
import ipaddress
import logging

from flask import current_app, jsonify, request

from ..errors import ApiError, Forbidden, NotFound
from ..extensions import db
from ..faults import fault_point
from . import bp
from .services import (
    MalformedCallback,
    apply_callback,
    mark_malformed,
    note_apply_failure,
    parse_callback,
    store_callback,
)

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 16 * 1024  # real callbacks are well under 2 KiB
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}


def client_ip() -> str | None:
    """The caller's address, believing only `TRUSTED_PROXY_HOPS` X-Forwarded-For entries."""
    hops = current_app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        forwarded = [
            ip.strip() for ip in request.headers.get("X-Forwarded-For", "").split(",") if ip.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.remote_addr


def ip_allowed(ip: str | None) -> bool:
    networks = current_app.config["MPESA_CALLBACK_ALLOWED_IPS"]
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


def token_matches(token: str) -> bool:
    """Constant-time check against every accepted token (rotation keeps the old one)."""
    config = current_app.config
    given = token.encode("utf-8", "replace")
    matched = False
    for expected in config.get("MPESA_CALLBACK_TOKENS") or [config["MPESA_CALLBACK_TOKEN"]]:
        matched |= hmac.compare_digest(given, expected.encode())
    return matched


@bp.post("/stk/<token>")
def stk(token: str):
    """Store the callback, apply it once, and always answer Daraja's Accepted."""
    if not token_matches(token):
        raise NotFound("Nothing lives at this address.", code="not_found")
    ip = client_ip()
    if not ip_allowed(ip):
        log.warning(
            "callback refused from %s (not in MPESA_CALLBACK_ALLOWED_IPS) | "
            "event=callback.forbidden ip=%s",
            ip,
            ip,
        )
        raise Forbidden("This address may not post callbacks.", code="ip_not_allowed")
    if (request.content_length or 0) > MAX_CALLBACK_BYTES:
        raise ApiError("Callback body too large.", code="payload_too_large", status=413)
    body = request.get_data(cache=False)
    if len(body) > MAX_CALLBACK_BYTES:
        raise ApiError("Callback body too large.", code="payload_too_large", status=413)

    try:
        record = store_callback(body, ip)
    except Exception:  # noqa: BLE001 - not on disk: Daraja must retry, so a 503
        db.session.rollback()
        log.exception("callback could not be stored | event=callback.store_failed")
        raise ApiError(
            "The callback could not be stored; try again.", code="unavailable", status=503
        ) from None
    fault_point("callback.after_store")
    try:
        result = parse_callback(body)
    except MalformedCallback as exc:
        mark_malformed(record, str(exc))
        raise ApiError(f"Not an STK callback: {exc}.", code="malformed_callback") from None
    try:
        apply_callback(record, result)
    except Exception:  # noqa: BLE001 - the body is on disk; the reconciler retries it
        db.session.rollback()
        note_apply_failure(record.id)
    return jsonify(ACCEPTED)
