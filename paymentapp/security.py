"""API keys (stored hashed, each with its scopes) and the per-order client token (signed,
expiring)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets

from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from . import audit
from .errors import Forbidden, NotFound, Unauthorized, ValidationError
from .extensions import db
from .models import ApiKey, utcnow

log = logging.getLogger(__name__)

API_KEY_PREFIX = "pk_"
CLIENT_TOKEN_SALT = "paymentapp.order-client-token"


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# What a key may do (docs/api.md, "Scopes"); a key made without scopes may do all of it.
ORDERS_WRITE = "orders:write"
ORDERS_READ = "orders:read"
REFUNDS_WRITE = "refunds:write"
WEBHOOKS_MANAGE = "webhooks:manage"
SCOPE_WORDING = {  # what each scope lets a key do, as the API keys page says it
    ORDERS_WRITE: "create and cancel orders",
    ORDERS_READ: "list and read orders and their refunds",
    REFUNDS_WRITE: "refund through M-Pesa",
    WEBHOOKS_MANAGE: "manage webhook endpoints",
}
SCOPES = tuple(SCOPE_WORDING)


def parse_scopes(raw: str | None) -> str | None:
    """Scopes as typed (commas or spaces), checked and in the canonical order; None (every
    scope) for nothing typed. A 422 names the unknown ones."""
    given = (raw or "").replace(",", " ").split()
    if not given:
        return None
    unknown = sorted(set(given) - set(SCOPES))
    if unknown:
        raise ValidationError(
            f"Unknown scope {', '.join(unknown)}: use {', '.join(SCOPES)}.",
            code="validation_error",
            fields={"scopes": f"One or more of {', '.join(SCOPES)}."},
        )
    return " ".join(scope for scope in SCOPES if scope in given)


def create_api_key(
    name: str, *, scopes: str | None = None, own_orders: bool = False, actor: str = "cli"
) -> tuple[ApiKey, str]:
    """Create a key (`scopes`: `parse_scopes`'s; None: every scope); the plain key is
    returned once and never stored."""
    plain = API_KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        name=name,
        prefix=plain[:10],
        key_hash=hash_api_key(plain),
        scopes=scopes,
        own_orders=own_orders,
    )
    db.session.add(record)
    audit.record(
        "apikey.created",
        f"API key {name!r} ({record.prefix}…) created: {scopes_text(record)}",
        target=record.prefix,
        changes={"name": name, "scopes": scopes or "all", "own_orders": own_orders},
    )
    db.session.commit()
    log.info(
        f"API key {record.name!r} ({record.prefix}…) created by {actor}",
        extra={
            "event": "apikey.created",
            "key_id": record.id,
            "prefix": record.prefix,
            "scopes": scopes or "all",
            "own_orders": own_orders,
            "actor": actor,
        },
    )
    return record, plain


def scopes_text(key: ApiKey) -> str:
    """A key's scopes as people read them."""
    text = ", ".join(key.scopes.split()) if key.scopes is not None else "all scopes"
    return text + (" · own orders only" if key.own_orders else "")


def list_api_keys() -> list[ApiKey]:
    """Every key, active ones first, newest first within each group."""
    return list(
        db.session.scalars(
            select(ApiKey).order_by(
                ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc(), ApiKey.id.desc()
            )
        )
    )


def revoke_api_keys(
    actor: str, *, name: str | None = None, key_id: int | None = None
) -> list[ApiKey]:
    """Revoke the active keys with this name (all of them) or this id; returns those revoked.

    The key is looked up in the database on every request (`authenticate_api_key`), so a
    revoked key is refused from the next request on, by every worker and host.
    """
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if key_id is not None:
        query = query.where(ApiKey.id == key_id)
    else:
        query = query.where(ApiKey.name == name)
    keys = list(db.session.scalars(query.with_for_update()))
    now = utcnow()
    for key in keys:
        key.revoked_at = now
        audit.record(
            "apikey.revoked",
            f"API key {key.name!r} ({key.prefix}…) revoked",
            target=key.prefix,
            changes={"name": key.name, "revoked": [False, True]},
        )
    db.session.commit()
    for key in keys:
        log.info(
            f"API key {key.name!r} ({key.prefix}…) revoked by {actor}",
            extra={
                "event": "apikey.revoked",
                "key_id": key.id,
                "prefix": key.prefix,
                "actor": actor,
            },
        )
    return keys


def authenticate_api_key(scope: str | None = None) -> ApiKey:
    """The ApiKey named by `Authorization: Bearer <key>`, or raise 401; with `scope`, a
    key without it is a 403 `insufficient_scope` naming it."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "Send your API key as 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    record = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key.strip())))
    if record is None or record.revoked_at is not None:
        raise Unauthorized("This API key is not valid.", code="invalid_api_key")
    if scope is not None and not record.may(scope):
        raise Forbidden(f"This API key lacks the {scope} scope.", code="insufficient_scope")
    g.api_key = record  # who `audit.record` names for what this request does
    return record


def check_order_access(key: ApiKey, order) -> None:
    """A key made with --own-orders sees only the orders it created: any other is a 404,
    as if it did not exist."""
    if key.own_orders and order.api_key_id != key.id:
        raise NotFound("No order with this id.", code="order_not_found")


def _serializer() -> URLSafeTimedSerializer:
    return _serializer_for(current_app.config["SECRET_KEY"])


@functools.lru_cache(maxsize=8)
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    """Made once per key: making one test-serializes a value to learn its output type,
    work every dialog's subscribe and status read would repeat."""
    return URLSafeTimedSerializer(secret_key, salt=CLIENT_TOKEN_SALT)


def make_client_token(order_id: str) -> str:
    """A token that lets the browser holding it pay and watch exactly this order."""
    return _serializer().dumps(order_id)


def check_client_token(order_id: str, token: str | None) -> None:
    """Raise 401/403 unless `token` is a valid, unexpired token for `order_id`."""
    if not token:
        raise Unauthorized(
            "This order's client token is required (X-Order-Token header or ?token=).",
            code="missing_token",
        )
    try:
        signed_id = _serializer().loads(token, max_age=current_app.config["CLIENT_TOKEN_MAX_AGE_S"])
    except SignatureExpired:
        raise Unauthorized("This payment link has expired.", code="token_expired") from None
    except BadSignature:
        raise Forbidden("This token is not valid for this order.", code="invalid_token") from None
    # compare bytes: compare_digest refuses str with non-ASCII characters (a TypeError)
    if not isinstance(signed_id, str) or not hmac.compare_digest(
        signed_id.encode("utf-8", "replace"), order_id.encode("utf-8", "replace")
    ):
        raise Forbidden("This token is not valid for this order.", code="invalid_token")


def request_client_token() -> str | None:
    return request.headers.get("X-Order-Token") or request.args.get("token")
