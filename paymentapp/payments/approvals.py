"""A second pair of eyes on money moved by hand, or sent back (docs/admin.md, "Approvals").

Recording a payment by receipt (when M-Pesa is not asked about it: `receipt_checks.py`),
accepting a flagged payment's money, recording a manual refund and starting a refund
through M-Pesa are, from the dashboard, proposals (`Approval`) until a *different* owner
approves them. Approving runs the very service the action would have run, as one
transaction with the approval's own change (so an approval never counts twice and never
leaves money moved without its approval, or the other way round); a refund through
M-Pesa waits `awaiting_approval`, its money held, and is sent once approved.

`APPROVALS=off` (a deployment with a single owner) runs each action at once, marked
self-approved in the audit log; in production it is ignored while two or more enabled
owners exist. Merchant API refunds (`refunds:write`) never wait: the key is the merchant's
decision. Every change here holds the order's lock (`locking.lock_approval`).
"""

from __future__ import annotations

import json
import logging

from flask import current_app
from sqlalchemy import select

from .. import audit
from ..errors import Conflict, Forbidden, NotFound
from ..extensions import db
from ..locking import BY_REFUND, lock_approval, lock_order, lock_refund, retried
from ..models import Approval, ApprovalKind, ApprovalStatus, Payment, RefundStatus, utcnow
from ..models.accounts import count_enabled_owners
from . import refunds, reversals
from . import services as payments
from .refund_outcomes import landed
from .services import review_note
from .states import Kind, move_approval, transition

log = logging.getLogger(__name__)

A = ApprovalKind
# What each kind does once approved: the service, called inside the approval's transaction
# (undecorated: the approval is the one retried transaction).
RUN = {
    A.HAND_ENTRY: lambda approval, actor, typed: payments.record_payment_by_hand.__wrapped__(
        approval.order_id, typed["receipt"], typed["amount"], typed["note"], actor
    ),
    A.ACCEPT_REVIEW: lambda approval, actor, typed: payments.resolve_review.__wrapped__(
        approval.payment_id, typed["note"], actor
    ),
    A.MANUAL_REFUND: lambda approval, actor, typed: refunds.record_refund.__wrapped__(
        approval.payment_id, typed["amount"], typed["reason"], typed["note"], actor
    ),
}


def required() -> bool:
    """Does money by hand wait for a second owner here?"""
    if current_app.config.get("APPROVALS", True):
        return True
    if current_app.config.get("MPESA_ENV") == "production":  # refused with two owners
        return db.session.scalar(count_enabled_owners()) >= 2
    return False


def self_approved(kind: str, target: str, actor: str, summary: str) -> None:
    """APPROVALS=off: the action ran at once on its proposer's word; said so in the log."""
    audit.record(
        "approval.self_approved",
        f"{summary} (self-approved: APPROVALS=off)",
        target=target,
        changes={"kind": kind, "self_approved": True, "by": actor},
    )
    db.session.commit()


# -- proposing ------------------------------------------------------------------------------


@retried("approval_proposed")
def propose(
    kind: ApprovalKind,
    order_id: str,
    values: dict,
    summary: str,
    actor: str,
    payment_id: str | None = None,
) -> Approval:
    """A proposal (any kind but a refund through M-Pesa, which `reversals` records with
    its refund): on the order's timeline, in the audit log, and on the dashboard."""
    order = lock_order(order_id)
    if payment_id is not None and all(p.id != payment_id for p in order.payments):
        raise NotFound("No payment with this id on this order.", code="payment_not_found")
    duplicate = db.session.scalar(
        select(Approval.id).where(
            Approval.order_id == order.id,
            Approval.kind == kind,
            Approval.status == ApprovalStatus.PENDING,
            Approval.values == json.dumps(values, sort_keys=True),
        )
    )
    if duplicate is not None:
        raise Conflict("The same proposal is already waiting for approval.", code="proposed")
    _someone_can_approve(actor)
    approval = Approval(
        kind=kind,
        order_id=order.id,
        payment_id=payment_id,
        values=json.dumps(values, sort_keys=True),
        summary=summary[:500],
        proposed_by=actor,
    )
    db.session.add(approval)
    db.session.flush()
    transition(order, Kind.APPROVAL, f"{actor} proposed: {summary}; awaiting approval", actor=actor)
    audit.record(
        "approval.proposed",
        f"{order.number}: {summary}",
        target=order.number,
        changes={"approval": approval.id, "kind": str(kind)},
    )
    db.session.commit()
    return approval


def hand_entry(order_id: str, receipt: str, amount: int, note: str, actor: str):
    """A payment recorded by receipt (M-Pesa not asked): proposed (checked as the entry
    itself would be), or, without approvals, recorded (the `Payment`)."""
    if not required():
        payment = payments.record_payment_by_hand(order_id, receipt, amount, note, actor)
        self_approved(A.HAND_ENTRY, payment.order.number, actor, f"receipt {payment.receipt}")
        return payment
    note = review_note(note)
    receipt = payments.parse_hand_entry(receipt, amount)
    return propose(
        A.HAND_ENTRY,
        order_id,
        {"receipt": receipt, "amount": amount, "note": note},
        f"record receipt {receipt} (KES {amount:,}) by hand: {note}",
        actor,
    )


def accept_review(payment_id: str, note: str, actor: str):
    """Accepting a flagged payment's money (closing its review): proposed, or, without
    approvals, done (the `Payment`)."""
    if not required():
        payment = payments.resolve_review(payment_id, note, actor)
        self_approved(A.ACCEPT_REVIEW, payment.order.number, actor, f"review of {payment_id}")
        return payment
    note = review_note(note)
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        raise NotFound("No payment with this id.", code="payment_not_found")
    if not payment.needs_review:
        raise Conflict("This payment is not waiting for review.", code="not_in_review")
    order_id = payment.order_id
    db.session.rollback()
    return propose(
        A.ACCEPT_REVIEW,
        order_id,
        {"note": note},
        f"accept the money of flagged payment {payment_id}: {note}",
        actor,
        payment_id=payment_id,
    )


def manual_refund(payment_id: str, amount: int | None, reason: str, note: str, actor: str):
    """Money given back outside the app: proposed (its amount is checked again, under the
    lock, when approved), or, without approvals, recorded (the `Refund`)."""
    if not required():
        refund = refunds.record_refund(payment_id, amount, reason, note, actor)
        self_approved(A.MANUAL_REFUND, refund.payment.order.number, actor, f"refund {refund.id}")
        return refund
    note = review_note(note)
    amount = refunds.refund_amount(amount)
    reason = refunds.refund_reason(reason)
    payment = db.session.get(Payment, payment_id)
    if payment is None:
        raise NotFound("No payment with this id.", code="payment_not_found")
    amount = refunds.amount_to_refund(payment, amount)
    order_id = payment.order_id
    db.session.rollback()
    return propose(
        A.MANUAL_REFUND,
        order_id,
        {"amount": amount, "reason": reason, "note": note},
        f"refund KES {amount:,} of payment {payment_id} outside the app ({reason}): {note}",
        actor,
        payment_id=payment_id,
    )


def _someone_can_approve(actor: str) -> None:
    """A proposal nobody could approve is refused at once (one owner: APPROVALS=off)."""
    if not db.session.scalar(count_enabled_owners(but=actor.removeprefix("admin:"))):
        raise Conflict(
            "No other owner can approve this: add an owner on the Users page, or, with a "
            "single owner, set APPROVALS=off.",
            code="no_approver",
        )


# -- deciding -------------------------------------------------------------------------------


def _pending(approval_id: str) -> Approval:
    """The approval, its order locked; 404 for none, 409 once decided."""
    approval = lock_approval(approval_id)
    if approval is None:
        raise NotFound("No such approval.", code="approval_not_found")
    if approval.status != ApprovalStatus.PENDING:
        raise Conflict(f"This proposal was already {approval.status}.", code="already_decided")
    return approval


def _decide(approval: Approval, status: ApprovalStatus, actor: str, note: str | None) -> None:
    move_approval(approval, status)
    approval.decided_by, approval.decided_at, approval.decision_note = actor, utcnow(), note


def mpesa_refund(order_id: str, actor: str, **asked):
    """A refund through M-Pesa asked for in the dashboard: recorded `awaiting_approval`
    with its proposal, or, without approvals, sent (`reversals.request_refund`)."""
    wait = required()
    if wait:
        _someone_can_approve(actor)
    refund, _ = reversals.request_refund(order_id, actor=actor, awaiting_approval=wait, **asked)
    if not wait:
        self_approved(A.MPESA_REFUND, refund.payment.order.number, actor, f"refund {refund.id}")
    return refund


def approve(approval_id: str, actor: str) -> Approval:
    """A different owner approves: the action runs now (a refund through M-Pesa is sent)."""
    approval = _approve(approval_id, actor)
    if approval.kind == A.MPESA_REFUND:
        reversals.send(approval.refund_id)
    return db.session.get(Approval, approval_id)


@retried("approval_approved", unique_is_race=True)
def _approve(approval_id: str, actor: str) -> Approval:
    approval = _pending(approval_id)
    if approval.proposed_by == actor:
        raise Forbidden("You proposed this: a different owner approves it.", code="own_proposal")
    _decide(approval, ApprovalStatus.APPROVED, actor, None)
    audit.record(
        "approval.approved",
        f"{approval.order.number}: {approval.summary} (proposed by {approval.proposed_by})",
        target=approval.order.number,
        changes={"approval": approval.id, "kind": approval.kind, "self_approved": False},
    )
    by = f"{approval.proposed_by}, approved by {actor}"
    if approval.kind == A.MPESA_REFUND:
        refund = lock_refund(BY_REFUND, approval.refund_id)
        payment = refund.payment
        transition(
            payment.order,
            Kind.REFUND_APPROVED,
            f"{actor} approved the refund of KES {refund.amount:,} proposed by "
            f"{approval.proposed_by}: it is sent to M-Pesa",
            payment=payment,
            refund=refund,
            actor=actor,
        )
        db.session.commit()
    else:
        transition(
            approval.order, Kind.APPROVAL, f"{actor} approved: {approval.summary}", actor=actor
        )
        RUN[A(approval.kind)](approval, by, approval.typed)  # commits, with the approval
    log.info(
        f"approval {approval.id} approved by {actor}",
        extra={"event": "approval.approved", "approval": approval.id, "actor": actor},
    )
    return approval


@retried("approval_rejected")
def reject(approval_id: str, actor: str, note: str, *, withdraw: bool = False) -> Approval:
    """An owner rejects a proposal, or its proposer withdraws it; nothing moves (a refund
    through M-Pesa is `rejected`, never sent, and its money is free again)."""
    note = review_note(note) if not withdraw or note else None
    approval = _pending(approval_id)
    if withdraw and approval.proposed_by != actor:
        raise Forbidden("Only its proposer withdraws a proposal.", code="not_proposer")
    status = ApprovalStatus.WITHDRAWN if withdraw else ApprovalStatus.REJECTED
    _decide(approval, status, actor, note)
    said = f"{actor} {status} the proposal: {approval.summary}" + (f" ({note})" if note else "")
    if approval.kind == A.MPESA_REFUND:
        refund = lock_refund(BY_REFUND, approval.refund_id)
        if refund.status == RefundStatus.AWAITING_APPROVAL:
            landed(refund.payment, refund)
            transition(
                refund.payment.order,
                Kind.REFUND_REJECTED,
                said,
                payment=refund.payment,
                refund=refund,
                actor=actor,
            )
    else:
        transition(approval.order, Kind.APPROVAL, said, actor=actor)
    audit.record(
        f"approval.{status}",
        f"{approval.order.number}: {approval.summary}" + (f" ({note})" if note else ""),
        target=approval.order.number,
        changes={"approval": approval.id, "kind": approval.kind},
    )
    db.session.commit()
    return approval


def pending(order_id: str | None = None) -> list[Approval]:
    """Proposals waiting for a second owner, oldest first (all, or one order's)."""
    query = select(Approval).where(Approval.status == ApprovalStatus.PENDING)
    if order_id is not None:
        query = query.where(Approval.order_id == order_id)
    return list(db.session.scalars(query.order_by(Approval.proposed_at, Approval.id)))
