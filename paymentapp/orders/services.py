"""Order rules: numbering, creation with idempotency, listing, lookup, cancelling."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import event, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..errors import Conflict, ValidationError, get_or_404
from ..extensions import db
from ..locking import lock_order, retried
from ..models import (
    ApiKey,
    Order,
    OrderNumberCounter,
    OrderStatus,
    PaymentStatus,
    order_number_seq,
    utcnow,
)
from ..mpesa.formats import (  # luhn_digit: bench/load/seed_paymentapp.py imports it here
    ACCOUNT_REFERENCE_MAX,
    ORDER_PREFIX,
    luhn_digit,  # noqa: F401
    order_number,
)
from ..outbox import audited, order_created
from ..payments.states import Kind, transition

log = logging.getLogger(__name__)

FIRST_ORDER_NUMBER = 1001
MAX_NUMBER_LENGTH = ACCOUNT_REFERENCE_MAX  # the order number is the AccountReference
MAX_IDEMPOTENCY_KEY = 128
MAX_PAGE = 100


@event.listens_for(OrderNumberCounter.__table__, "after_create")
def _seed_counter(target, connection, **kw):
    connection.execute(insert(target).values(id=1, value=FIRST_ORDER_NUMBER - 1))


def allocate_order_number(prefix: str = ORDER_PREFIX) -> str:
    """Next `ORD-<n><check digit>`: unique across workers and processes, never reused.

    PostgreSQL: `nextval` on a sequence, which takes no row lock and never hands the
    same value out twice, even when the transaction rolls back. Elsewhere (SQLite): an
    `UPDATE ... RETURNING` on a one-row counter, serialised by the database's write lock.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        value = db.session.execute(select(order_number_seq.next_value())).scalar_one()
    else:
        value = db.session.execute(
            update(OrderNumberCounter)
            .where(OrderNumberCounter.id == 1)
            .values(value=OrderNumberCounter.value + 1)
            .returning(OrderNumberCounter.value)
        ).scalar_one()
    number = order_number(value, prefix)
    if len(number) > MAX_NUMBER_LENGTH:
        raise RuntimeError(f"order number {number} exceeds {MAX_NUMBER_LENGTH} characters")
    return number


def _request_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ValidationError(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters.",
            fields={"Idempotency-Key": "Invalid header value."},
        )
    return key


def _replay(api_key: ApiKey, key: str, request_hash: str) -> Order | None:
    order = db.session.scalar(
        select(Order).where(Order.api_key_id == api_key.id, Order.idempotency_key == key)
    )
    if order is not None and order.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
        )
    return order


def create_order(api_key: ApiKey, data: dict, idempotency_key: str | None = None):
    """Create an order; returns `(order, created)`. A repeated key returns the first order."""
    key = check_idempotency_key(idempotency_key)
    request_hash = _request_hash(data)
    if key and (existing := _replay(api_key, key, request_hash)):
        return existing, False
    order = Order(
        number=allocate_order_number(),
        amount=data["amount"],
        description=data.get("description", ""),
        reference=data.get("reference"),
        customer_phone=data.get("customer_phone"),
        status=OrderStatus.PENDING,
        number_checked=True,
        expires_at=utcnow() + timedelta(seconds=current_app.config["ORDER_EXPIRE_AFTER_S"]),
        api_key_id=api_key.id,
        idempotency_key=key,
        request_hash=request_hash if key else None,
    )
    db.session.add(order)
    db.session.flush()
    audited(
        db.session,
        {
            "order_id": order.id,
            "payment_id": None,
            "kind": "order_created",
            "detail": f"amount {order.amount} KES",
            "actor": api_key.name,
            "created_at": order.created_at,
        },
    )
    order_created(db.session, order)
    try:
        db.session.commit()
    except IntegrityError:
        # Two requests with the same Idempotency-Key raced; the other one won.
        db.session.rollback()
        if key and (existing := _replay(api_key, key, request_hash)):
            return existing, False
        raise
    log.info(
        f"order {order.number} created for {order.amount} KES",
        extra={
            "event": "order.created",
            "order": order.number,
            "order_id": order.id,
            "amount": order.amount,
            "api_key": api_key.name,
            "phone": order.customer_phone,
        },
    )
    return order, True


@retried("cancel_order")
def cancel_order(order_id: str, actor: str) -> Order:
    """Cancel an unpaid order with no prompt in flight."""
    order = lock_order(order_id)
    if order.status == OrderStatus.PAID:
        raise Conflict("A paid order cannot be cancelled.", code="order_paid")
    if order.status == OrderStatus.CANCELLED:
        db.session.rollback()
        return order
    if any(p.status == PaymentStatus.PENDING for p in order.payments):
        raise Conflict(
            "A payment prompt is still open; check its status first.", code="payment_pending"
        )
    transition(
        order,
        Kind.ORDER_CANCELLED,
        f"cancelled by {actor}",
        actor=actor,
        message=f"order {order.number} cancelled by {actor}",
        actor_name=actor,
    )
    audit.record(
        "order.cancelled",
        f"{order.number} cancelled",
        target=order.number,
        changes={"status": [OrderStatus.PENDING, OrderStatus.CANCELLED]},
    )
    db.session.commit()
    return order


def get_order(order_id: str) -> Order:
    """The order with this id or a 404."""
    return get_or_404(Order, order_id, "No order with this id.", "order_not_found")


def _encode_cursor(order: Order) -> str:
    raw = json.dumps([order.created_at.isoformat(), order.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a `next_cursor` names; anything else we did not write is a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, order_id = json.loads(raw)
        if not isinstance(created, str) or not isinstance(order_id, str):
            raise TypeError("cursor parts must be text")
        if "\x00" in order_id or len(order_id) > 64:
            raise ValueError("cursor id is not an order id")
        order_id.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError (a ValueError)
        position = datetime.fromisoformat(created)
        if position.tzinfo is None:
            raise ValueError("cursor time has no time zone")
        return position.astimezone(UTC), order_id
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ValidationError(
            "The cursor is not valid.", fields={"cursor": "Invalid cursor."}
        ) from None


def list_orders(
    *,
    status: str | None = None,
    q: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
    api_key_id: int | None = None,
) -> tuple[list[Order], str | None]:
    """Newest first, keyset-paginated (`api_key_id`: only the orders that key created);
    returns `(orders, next_cursor)`."""
    fields = {}
    if status and status not in OrderStatus.ALL:
        fields["status"] = f"Status must be one of {', '.join(OrderStatus.ALL)}."
    try:
        size = int(limit) if limit not in (None, "") else 20
        if not 1 <= size <= MAX_PAGE:
            raise ValueError
    except ValueError:
        fields["limit"] = f"Limit must be a whole number from 1 to {MAX_PAGE}."
        size = 20
    if q is not None and len(q) > 100:
        fields["q"] = "Search text must be at most 100 characters."
    if fields:
        raise ValidationError("The query parameters are not valid.", fields=fields)

    stmt = select(Order)
    if api_key_id is not None:
        stmt = stmt.where(Order.api_key_id == api_key_id)
    if status:
        stmt = stmt.where(Order.status == status)
    if q and q.strip():
        text = q.strip()
        stmt = stmt.where(
            or_(
                Order.number.istartswith(text, autoescape=True),
                Order.reference == text,
                Order.description.icontains(text, autoescape=True),
            )
        )
    if cursor:
        created, order_id = _decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                Order.created_at < created,
                (Order.created_at == created) & (Order.id < order_id),
            )
        )
    stmt = stmt.order_by(Order.created_at.desc(), Order.id.desc()).limit(size + 1)
    orders = list(db.session.scalars(stmt))
    next_cursor = _encode_cursor(orders[size - 1]) if len(orders) > size else None
    return orders[:size], next_cursor
