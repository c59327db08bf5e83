"""Partial refunds through B2C (docs/refunds.md): M-Pesa pays the refund's amount from the
B2C shortcode (`MPESA_B2C_SHORTCODE`) to the customer's phone. The refund is recorded
`requested` with OUR OriginatorConversationID before it is sent (`reversals.py`), then:

- Daraja's acknowledgement makes it `pending`; a refusal, or a request that never reached
  M-Pesa, makes it `failed` (no money moved; a new refund may be asked for).
- **A request whose answer never came is never sent again**: money may have left. It is
  `pending` with its outcome unknown, and settled by its result (matched by our
  OriginatorConversationID) or by Transaction Status asked with that id
  (`refund_outcomes.check_pending`). So is a refund left `requested` by a worker that
  died while sending it (`settle_unsent`).
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import func

from ..extensions import db
from ..locking import retried
from ..models import Refund, RefundStatus
from ..mpesa.client import DarajaError, DarajaUnavailable, get_client
from .reconcile import PassReport, after_each_pass, claim_stale
from .refund_outcomes import (
    AFTER_ACKNOWLEDGED,
    acknowledged,
    lock_requested,
    refunds_on,
    refused,
)
from .states import Kind, transition

log = logging.getLogger(__name__)

UNSENT_AFTER_S = 120  # a B2C refund still `requested` this long: its sender died


def b2c_on() -> bool:
    """Can refunds go back by B2C (an initiator and a B2C shortcode)?"""
    return refunds_on() and bool(current_app.config.get("MPESA_B2C_SHORTCODE"))


def send_b2c(refund_id: str) -> None:
    """Ask Daraja to pay a `requested` B2C refund to its phone, once (no transaction open
    while it answers), then record what it said."""
    refund = db.session.get(Refund, refund_id)
    order = refund.payment.order
    config = current_app.config
    base = f"{config['PUBLIC_BASE_URL']}/callbacks/b2c"
    token = config["MPESA_CALLBACK_TOKEN"]
    request = {
        "originator_conversation_id": refund.originator_conversation_id,
        "amount": refund.amount,
        "phone": refund.phone,
        "reason": f"Refund {order.number}",
        "result_url": f"{base}/result/{token}",
        "timeout_url": f"{base}/timeout/{token}",
        "occasion": order.number,
    }
    db.session.rollback()  # hold no transaction (and no lock) while M-Pesa answers
    try:
        ack = get_client().pay_to_phone(**request)
    except DarajaUnavailable as exc:
        if exc.maybe_sent:
            outcome_unknown(refund_id, exc.message)
        else:
            refused(refund_id, f"{exc.message} Nothing was sent; a new refund may be asked for.")
    except DarajaError as exc:
        refused(refund_id, exc.message or "M-Pesa refused the B2C payment")
    else:
        acknowledged(refund_id, ack)


def outcome_unknown(refund_id: str, message: str) -> None:
    """No answer to a B2C request that may have been acted on: `pending`, never sent
    again; Transaction Status (by our OriginatorConversationID) or its result settles it.
    A result that came meanwhile (and waits, stored) is applied now."""
    originator = _unknown(refund_id, message)
    if originator:
        for step in AFTER_ACKNOWLEDGED:
            step(originator)


@retried("refund_outcome_unknown")
def _unknown(refund_id: str, message: str) -> str | None:
    refund = lock_requested(refund_id)
    if refund is None:
        return None
    refund.result_desc = f"no answer from M-Pesa ({message}); never sent again"[:255]
    refund.checked_at = None
    payment = refund.payment
    transition(
        payment.order,
        Kind.REFUND_PENDING,
        f"M-Pesa did not answer the B2C payment of KES {refund.amount:,}: its outcome is "
        "asked with Transaction Status, never sent again",
        payment=payment,
        refund=refund,
        level=logging.WARNING,
        originator_conversation_id=refund.originator_conversation_id,
    )
    db.session.commit()
    return refund.originator_conversation_id


def settle_unsent(older_than_s: float = UNSENT_AFTER_S, limit: int = 20) -> int:
    """B2C refunds left `requested` (their sender died between recording and hearing
    back): they may have been sent, so their outcome is asked, never sent again."""
    touched = func.coalesce(Refund.checked_at, Refund.updated_at, Refund.created_at)
    moved = 0
    b2c = Refund.method == "b2c"
    for refund_id in claim_stale(Refund, RefundStatus.REQUESTED, touched, older_than_s, limit, b2c):
        outcome_unknown(refund_id, "its sender stopped before M-Pesa answered")
        moved += 1
    return moved


@after_each_pass
def settle_unsent_b2c(report: PassReport) -> None:
    """Part of every reconcile pass: B2C refunds whose sender died are asked about."""
    if b2c_on():
        report.refunds_checked += settle_unsent()
