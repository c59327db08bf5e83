"""Receipts entered by hand, checked with M-Pesa (docs/paybill.md, "Record a payment by
receipt"). With an initiator (and `MPESA_RECEIPT_CHECKS` on), a receipt an admin types
does not count on their word: it is a `ReceiptCheck`, "awaiting M-Pesa" on the order,
and Transaction Status is asked about it (`/callbacks/status/receipt/…`). It is its own
record, not a pending payment, so new STK pushes are not blocked meanwhile.

- M-Pesa says the transaction completed, for the amount entered, to one of our
  shortcodes: `confirmed`, and the money is recorded as a hand entry M-Pesa confirmed
  (`services.enter_by_hand`; the same receipt already recorded elsewhere counts once).
- Any of those differs: `mismatch`, with M-Pesa's answer on the order; nothing counts,
  and the admin enters it again as M-Pesa said it, if it is right.
- M-Pesa has no such transaction: `not_found`; nothing counts.
- No answer (or an initiator problem): asked again on a later reconcile pass.

Without an initiator a hand entry counts at once, flagged, as before
(`services.record_payment_by_hand`). Every change holds the order's lock.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import func, select

from .. import audit
from ..errors import Conflict, found
from ..extensions import db
from ..locking import BY_CHECK, lock_order_with_receipt, lock_receipt_check, retried
from ..models import CheckStatus, Payment, ReceiptCheck, utcnow
from ..mpesa.client import DarajaError, get_client, initiator_configured
from ..mpesa.formats import parse_amount
from . import approvals
from .money import Money
from .queries import payment_by_receipt
from .reconcile import PassReport, after_each_pass, claim_stale
from .refund_outcomes import AFTER_ACKNOWLEDGED
from .services import enter_by_hand, parse_hand_entry, review_note
from .states import Kind, move_check, transition

log = logging.getLogger(__name__)

ASK_AGAIN_AFTER_S = 120  # an awaiting check with no answer this long is asked again
ASK_BATCH = 20
# Result codes that say our initiator could not ask (not that the receipt is unknown):
# no permission, invalid initiator, credential locked. Asked again later.
COULD_NOT_ASK = {"21", "2001", "8006"}


def checks_on() -> bool:
    """Are hand entries checked with M-Pesa (an initiator, and the setting on)?"""
    config = current_app.config
    return initiator_configured(config) and bool(config.get("MPESA_RECEIPT_CHECKS", True))


def enter_receipt(
    order_id: str, receipt: str, amount: int, note: str | None, actor: str
) -> Payment | ReceiptCheck:
    """A receipt an admin typed: checked with M-Pesa before it counts (a `ReceiptCheck`),
    or, with checks off, proposed for a second owner's approval (`approvals.hand_entry`:
    a payment at once on the admin's word with APPROVALS=off)."""
    if not checks_on():
        return approvals.hand_entry(order_id, receipt, amount, note, actor)
    check = _record(order_id, parse_hand_entry(receipt, amount), amount, review_note(note), actor)
    ask(check.id)
    return db.session.get(ReceiptCheck, check.id)


@retried("receipt_check")
def _record(order_id: str, receipt: str, amount: int, note: str, actor: str) -> ReceiptCheck:
    order, holder = lock_order_with_receipt(order_id, receipt)
    if holder is not None:
        raise Conflict("This receipt is already recorded.", code="receipt_known")
    awaiting = db.session.scalar(
        select(ReceiptCheck.id).where(
            ReceiptCheck.receipt == receipt, ReceiptCheck.status == CheckStatus.AWAITING
        )
    )
    if awaiting is not None:
        raise Conflict("This receipt is already awaiting M-Pesa's answer.", code="receipt_awaiting")
    check = ReceiptCheck(order_id=order.id, receipt=receipt, amount=amount, note=note, actor=actor)
    db.session.add(check)
    transition(
        order,
        Kind.RECEIPT_CHECK,
        f"{actor}: receipt {receipt} (KES {amount:,}) entered by hand; awaiting M-Pesa",
        actor=actor,
        receipt=receipt,
        amount=amount,
    )
    audit.record(
        "payment.recorded_by_hand",
        f"{order.number}: receipt {receipt} (KES {amount:,}) entered by hand, awaiting "
        "M-Pesa's confirmation",
        target=order.number,
        changes={"receipt": receipt, "amount": amount, "check": "awaiting"},
    )
    db.session.commit()
    return check


def ask(check_id: str) -> None:
    """Ask Transaction Status about the receipt (no transaction open while M-Pesa
    answers); its answer comes to `/callbacks/status/receipt/…`."""
    check = db.session.get(ReceiptCheck, check_id)
    config = current_app.config
    base = f"{config['PUBLIC_BASE_URL']}/callbacks/status/receipt"
    token = config["MPESA_CALLBACK_TOKEN"]
    request = {
        # a hand entry is Paybill money, or an STK prompt's on the same shortcode
        "shortcode": config["MPESA_C2B_SHORTCODE"],
        "result_url": f"{base}/result/{token}",
        "timeout_url": f"{base}/timeout/{token}",
        "transaction_id": check.receipt,
        "reason": f"Check {check.receipt}",
    }
    db.session.rollback()
    try:
        ack = get_client().transaction_status(**request)
    except DarajaError as exc:  # asked again on a later pass
        _note(check_id, f"M-Pesa not asked yet ({exc.message}); asked again shortly")
        return
    _asked(check_id, ack.conversation_id)
    for step in AFTER_ACKNOWLEDGED:  # an answer that came first is applied now
        step(ack.conversation_id)


@retried("receipt_check_asked")
def _asked(check_id: str, conversation_id: str) -> None:
    check = lock_receipt_check(BY_CHECK, check_id)
    if check.status == CheckStatus.AWAITING:
        check.conversation_id = conversation_id
    db.session.commit()


@retried("receipt_check_note")
def _note(check_id: str, text: str) -> None:
    check = lock_receipt_check(BY_CHECK, check_id)
    if check.status == CheckStatus.AWAITING:
        check.result_desc = text[:255]
    db.session.commit()
    log.warning(
        f"receipt check {check_id}: {text}",
        extra={"event": "receipt_check.unasked", "check": check_id},
    )


def ask_awaiting(older_than_s: float = ASK_AGAIN_AFTER_S, limit: int = ASK_BATCH) -> int:
    """Ask again about checks M-Pesa has not answered, each claimed first. Returns how
    many were asked."""
    touched = func.coalesce(ReceiptCheck.checked_at, ReceiptCheck.created_at)
    asked = 0
    for check_id in claim_stale(ReceiptCheck, CheckStatus.AWAITING, touched, older_than_s, limit):
        ask(check_id)
        asked += 1
    return asked


@after_each_pass
def ask_about_receipts(report: PassReport) -> None:
    """Part of every reconcile pass: receipts M-Pesa has not answered about are asked
    again."""
    if checks_on():
        report.refunds_checked += ask_awaiting()


def our_shortcodes() -> set[str]:
    config = current_app.config
    names = ("MPESA_SHORTCODE", "MPESA_C2B_SHORTCODE", "MPESA_PARTY_B")
    return {str(config.get(name)) for name in names if config.get(name)}


def settle_receipt(check: ReceiptCheck, result) -> str:
    """Apply Transaction Status's answer to a LOCKED check; returns the callback outcome.
    The pipeline commits."""
    if check.status != CheckStatus.AWAITING:
        return "duplicate"
    check.result_code = result.result_code
    order = check.order
    if not result.succeeded:
        if result.result_code in COULD_NOT_ASK:
            check.result_desc = f"M-Pesa could not be asked: {result.result_desc}"[:255]
            return "ignored"
        check.result_desc = f"M-Pesa has no such transaction: {result.result_desc}"[:255]
        move_check(check, CheckStatus.NOT_FOUND)
        transition(
            order,
            Kind.RECEIPT_CHECK,
            f"receipt {check.receipt}: M-Pesa has no such transaction; not counted",
            level=logging.WARNING,
            receipt=check.receipt,
            result_code=result.result_code,
        )
        return "applied"
    said = result.parameters
    status = str(said.get("TransactionStatus") or "").strip()
    amount = parse_amount(said.get("Amount"))[0]
    party = str(said.get("CreditPartyName") or "").strip()
    check.result_desc = (
        f"M-Pesa: {status or 'no status'}, KES {amount if amount is not None else '?'}, "
        f"to {party or 'no named party'}"
    )[:255]
    problems = []
    if status.lower() != "completed":
        problems.append(f"not completed ({status or 'no status'})")
    if amount != check.amount:
        problems.append(f"KES {amount} paid, KES {check.amount:,} entered")
    if party.split("-", 1)[0].strip() not in our_shortcodes():
        problems.append(f"paid to {party or 'no named party'}, not to our shortcode")
    if problems:
        move_check(check, CheckStatus.MISMATCH)
        transition(
            order,
            Kind.RECEIPT_CHECK,
            f"receipt {check.receipt} entered by {check.actor} does not match M-Pesa: "
            f"{'; '.join(problems)}; not counted",
            level=logging.WARNING,
            receipt=check.receipt,
        )
        return "applied"
    holder = payment_by_receipt(check.receipt)  # read after the lock
    if holder is None:
        holder = enter_by_hand(
            order,
            Money(check.receipt, check.amount),
            check.note or "",
            check.actor,
            confirmed=True,
        )
    move_check(check, CheckStatus.CONFIRMED)
    check.payment_id = holder.id
    transition(
        order,
        Kind.RECEIPT_CHECK,
        f"receipt {check.receipt} confirmed by M-Pesa (KES {check.amount:,})",
        receipt=check.receipt,
    )
    return "applied"


def _locked_or_404(check_id: str) -> ReceiptCheck:
    """The check, its order locked; a 404 for an id no check has."""
    return found(
        lock_receipt_check(BY_CHECK, check_id), "No such receipt check.", "check_not_found"
    )


@retried("receipt_check_withdrawn")
def withdraw(check_id: str, actor: str) -> ReceiptCheck:
    """An admin takes back a receipt still awaiting M-Pesa (typed wrongly, say)."""
    check = _locked_or_404(check_id)
    if check.status != CheckStatus.AWAITING:
        raise Conflict("M-Pesa has already answered about this receipt.", code="check_answered")
    move_check(check, CheckStatus.WITHDRAWN)
    transition(
        check.order,
        Kind.RECEIPT_CHECK,
        f"{actor}: receipt {check.receipt} withdrawn before M-Pesa answered",
        actor=actor,
    )
    audit.record(
        "receipt_check.withdrawn",
        f"{check.order.number}: receipt {check.receipt} withdrawn before M-Pesa answered",
        target=check.order.number,
        changes={"receipt": check.receipt, "status": [CheckStatus.AWAITING, check.status]},
    )
    db.session.commit()
    return check


@retried("receipt_check_resolved")
def resolve(check_id: str, note: str, actor: str) -> ReceiptCheck:
    """An admin closes a receipt M-Pesa did not confirm, with a note; it leaves the review
    queue (nothing counts: a right receipt is entered again as M-Pesa said)."""
    note = review_note(note)
    check = _locked_or_404(check_id)
    if check.status not in (CheckStatus.MISMATCH, CheckStatus.NOT_FOUND) or check.reviewed_at:
        raise Conflict("This receipt is not waiting for a review.", code="not_in_review")
    check.review_note, check.reviewed_at = note, utcnow()
    transition(
        check.order,
        Kind.RECEIPT_CHECK,
        f"{actor}: receipt {check.receipt} ({check.status}) reviewed: {note}",
        actor=actor,
    )
    audit.record(
        "receipt_check.resolved",
        f"{check.order.number}: receipt {check.receipt} ({check.status}) closed",
        target=check.order.number,
        changes={"receipt": check.receipt, "status": check.status},
    )
    db.session.commit()
    return check
