"""What an admin does with a stored callback: close one that matched no payment, assign
an unmatched Paybill payment to its order, or apply or dismiss one that came from an
untrusted address."""

from __future__ import annotations

import logging

from sqlalchemy import select

from .. import audit
from ..errors import Conflict, NotFound, ValidationError
from ..extensions import db
from ..locking import lock_order_with_receipt, retried
from ..models import CallbackOutcome, CallbackRecord, Order, utcnow
from ..mpesa.formats import normalise_account
from ..payments.services import review_note
from .c2b import apply_confirmation, parse_c2b
from .pipeline import KINDS, MalformedCallback, apply_stored, mark_malformed

log = logging.getLogger(__name__)


def resolve_unknown_callback(record_id: int, note: str | None, actor: str) -> CallbackRecord:
    """Close a callback for an unknown checkout id; the note goes into its `detail`."""
    note = review_note(note)
    record = db.session.get(CallbackRecord, record_id)
    if record is None or record.outcome not in (
        CallbackOutcome.UNKNOWN,
        CallbackOutcome.UNKNOWN_RESOLVED,
    ):
        raise NotFound("No unknown callback with this id.", code="review_not_found")
    if record.outcome == CallbackOutcome.UNKNOWN_RESOLVED:
        raise Conflict("This callback was already resolved.", code="already_resolved")
    record.outcome = CallbackOutcome.UNKNOWN_RESOLVED
    record.detail = f"resolved by {actor} {utcnow():%Y-%m-%d %H:%MZ}: {note}"
    audit.record(
        "review.resolved",
        f"callback {record.id} for unknown checkout id {record.checkout_request_id} closed",
        target=f"callback:{record.id}",
        changes={"outcome": [CallbackOutcome.UNKNOWN, CallbackOutcome.UNKNOWN_RESOLVED]},
    )
    db.session.commit()
    log.info(
        f"unknown callback {record.id} resolved by {actor}",
        extra={"event": "admin.review_resolved", "callback_id": record.id, "admin": actor},
    )
    return record


@retried("assign_paybill", unique_is_race=True)
def assign_c2b_payment(record_id: int, order_ref: str, note: str | None, actor: str):
    """An admin assigns an unmatched Paybill payment to an order: the same rules apply as
    if the customer had typed that account (`callbacks/c2b.py`). Returns the order."""
    note = review_note(note)
    record = db.session.get(CallbackRecord, record_id)
    if record is None or record.kind != "c2b" or record.outcome != CallbackOutcome.UNKNOWN:
        raise NotFound("No unmatched Paybill payment with this id.", code="review_not_found")
    try:
        parsed = parse_c2b(record.body.encode())
    except MalformedCallback as exc:
        raise Conflict(f"This confirmation cannot be read: {exc}.", code="unreadable") from None
    if parsed.amount is None:
        raise Conflict(
            "This confirmation has no usable amount; record the payment by its receipt.",
            code="amount_unusable",
        )
    ref = (order_ref or "").strip()
    number = normalise_account(ref)
    order = db.session.get(Order, ref) if ref.startswith("ord_") else None
    if order is None and number:
        order = db.session.scalar(select(Order).where(Order.number == number))
    if order is None:
        raise ValidationError(
            "No order with this number.", fields={"order": "Give an order number, e.g. ORD-10017."}
        )
    order, holder = lock_order_with_receipt(order.id, parsed.trans_id)
    outcome = apply_confirmation(order, holder, parsed, source=f"assigned by {actor}")
    record.outcome = CallbackOutcome.APPLIED if outcome == "applied" else CallbackOutcome.DUPLICATE
    record.detail = f"assigned to {order.number} by {actor} {utcnow():%Y-%m-%d %H:%MZ}: {note}"
    audit.record(
        "paybill.assigned",
        f"Paybill payment {parsed.trans_id} (KES {parsed.amount:,}) assigned to {order.number}: "
        f"{outcome}",
        target=order.number,
        changes={"callback": record.id, "receipt": parsed.trans_id, "outcome": outcome},
    )
    db.session.commit()
    log.info(
        f"Paybill payment {parsed.trans_id} assigned to {order.number} by {actor}: {outcome}",
        extra={
            "event": "admin.c2b_assigned",
            "callback_id": record.id,
            "order": order.number,
            "admin": actor,
        },
    )
    return order


def _untrusted(record_id: int) -> CallbackRecord:
    record = db.session.get(CallbackRecord, record_id)
    if record is None or record.outcome != CallbackOutcome.UNTRUSTED:
        raise NotFound(
            "No callback from an untrusted address waits with this id (already handled?).",
            code="review_not_found",
        )
    return record


def apply_untrusted(record_id: int, note: str | None, actor: str) -> CallbackRecord:
    """An admin who checked with M-Pesa (its portal, Transaction Status) applies a callback
    that came from outside MPESA_CALLBACK_ALLOWED_IPS: it goes through the pipeline as if
    it had come from Safaricom (same matching, same rules, duplicates harmless)."""
    note = review_note(note)
    record = _untrusted(record_id)
    kind = KINDS[record.kind]
    body = record.body.encode()
    db.session.rollback()
    try:
        parsed = kind.parse(body)
    except MalformedCallback as exc:
        mark_malformed(record_id, str(exc))
        raise Conflict(f"It cannot be applied: {exc}.", code="malformed_callback") from None
    outcome, detail, _ = apply_stored(kind, record_id, parsed)
    record = db.session.get(CallbackRecord, record_id)
    record.detail = f"{detail or outcome}; applied by {actor} from an untrusted address: {note}"[
        :2000
    ]
    audit.record(
        "callback.applied_by_admin",
        f"{record.kind} callback {record_id} from untrusted {record.remote_addr} applied: "
        f"{outcome}",
        target=f"callback:{record_id}",
        changes={"outcome": outcome, "source": record.remote_addr},
    )
    db.session.commit()
    log.warning(
        f"untrusted callback {record_id} applied by {actor}: {outcome}",
        extra={"event": "admin.untrusted_applied", "callback_id": record_id, "admin": actor},
    )
    return record


def dismiss_untrusted(record_id: int, note: str | None, actor: str) -> CallbackRecord:
    """An admin sets aside a callback from an untrusted address (not M-Pesa's): ignored."""
    note = review_note(note)
    record = _untrusted(record_id)
    record.outcome = CallbackOutcome.IGNORED
    record.detail = f"untrusted address; dismissed by {actor} {utcnow():%Y-%m-%d %H:%MZ}: {note}"
    audit.record(
        "callback.dismissed",
        f"{record.kind} callback {record_id} from untrusted {record.remote_addr} dismissed",
        target=f"callback:{record_id}",
        changes={"outcome": [CallbackOutcome.UNTRUSTED, CallbackOutcome.IGNORED]},
    )
    db.session.commit()
    log.info(
        f"untrusted callback {record_id} dismissed by {actor}",
        extra={"event": "admin.untrusted_dismissed", "callback_id": record_id, "admin": actor},
    )
    return record
