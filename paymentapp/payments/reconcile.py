"""Reconciliation: settle payments whose callback is late or never comes.

A pending payment with no callback after `PAYMENT_QUERY_AFTER_S` is checked with STK
Query, then every `QUERY_INTERVAL_S` (longer after a 500.003.x spike arrest), and becomes
`timeout` once `PAYMENT_EXPIRE_AFTER_S` has passed with no final answer. Each payment is
claimed with a compare-and-set on `next_query_at`, and every transition re-checks the
status under a row lock, so any number of reconcilers can run at once without a double
transition. Callbacks that were stored but failed to apply are retried too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from ..extensions import db
from ..models import Payment, PaymentStatus, utcnow
from ..mpesa.client import DarajaBusy, DarajaError, get_client
from .services import expire_pending, settle_from_query

log = logging.getLogger(__name__)

QUERY_INTERVAL_S = 12
BUSY_BACKOFF_S = 60
CLAIM_LEASE_S = 30
BATCH = 50


@dataclass
class PassReport:
    queried: int = 0
    resolved: int = 0
    expired: int = 0
    still_pending: int = 0
    errors: int = 0
    callbacks_retried: int = 0
    callback_errors: int = 0
    refunds_resent: int = 0
    refunds_checked: int = 0
    pulled: int = 0
    changed_orders: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"queried={self.queried} resolved={self.resolved} expired={self.expired} "
            f"pending={self.still_pending} errors={self.errors} "
            f"callbacks_retried={self.callbacks_retried} callback_errors={self.callback_errors} "
            f"refunds_resent={self.refunds_resent} refunds_checked={self.refunds_checked} "
            f"pulled={self.pulled}"
        )


def claim_stale(model, status, touched, older_than_s: float, limit: int, *where):
    """The rows of `model` (refunds, receipt checks) in `status` (and matching `where`)
    whose `touched` time (a column or expression) is at least `older_than_s` old, each
    claimed on its own (its `checked_at` set, committed) so that two reconcilers never act
    on one at once: a scheduling-only update, which changes no status and no money.
    Yields the ids this process claimed."""
    stale = utcnow() - timedelta(seconds=older_than_s)
    which = [model.status == status, touched <= stale, *where]
    due = db.session.scalars(
        select(model.id).where(*which).order_by(model.created_at).limit(limit)
    ).all()
    db.session.commit()
    for row_id in due:
        claimed = db.session.execute(
            update(model).where(model.id == row_id, *which).values(checked_at=utcnow())
        ).rowcount
        db.session.commit()
        if claimed:
            yield row_id


def _claim(payment_id: str, seen_next_query_at) -> bool:
    """Take this payment for one check; False if another reconciler got it first."""
    now = utcnow()
    claimed = db.session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status == PaymentStatus.PENDING,
            Payment.next_query_at == seen_next_query_at,
        )
        .values(next_query_at=now + timedelta(seconds=CLAIM_LEASE_S), last_queried_at=now)
    ).rowcount
    db.session.commit()
    return claimed == 1


def _reschedule(payment_id: str, seconds: int) -> None:
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.PENDING)
        .values(
            next_query_at=utcnow() + timedelta(seconds=seconds), query_count=Payment.query_count + 1
        )
    )
    db.session.commit()


def _settle(payment_id: str, report: PassReport, *, result=None, expire_reason=None) -> None:
    """Apply a query's final answer, or expire the payment; count what changed."""
    if result is not None:
        payment, outcome = settle_from_query(payment_id, result, source="query")
    else:
        payment, outcome = expire_pending(payment_id, expire_reason)
    if outcome == "applied":
        report.changed_orders.append(payment.order.number)
        if result is None:
            report.expired += 1
        else:
            report.resolved += 1


def check_payment(payment: Payment, report: PassReport, client) -> None:
    """Query one claimed payment and settle, expire or reschedule it."""
    config = current_app.config
    age = (utcnow() - payment.created_at).total_seconds()
    expired = age >= config["PAYMENT_EXPIRE_AFTER_S"]
    if payment.checkout_request_id:
        report.queried += 1
        try:
            result = client.stk_query(payment.checkout_request_id)
        except DarajaBusy:
            report.errors += 1
            _reschedule(payment.id, BUSY_BACKOFF_S)
            return
        except DarajaError as exc:
            report.errors += 1
            log.warning(
                f"STK query for payment {payment.id} failed: {exc.message}",
                extra={"event": "reconcile.query_error", "payment": payment.id, "code": exc.code},
            )
            result = None
        if result is not None and not result.pending:
            _settle(payment.id, report, result=result)
            return
    if expired:
        _settle(
            payment.id, report, expire_reason="No answer from the phone before the payment expired."
        )
        return
    report.still_pending += 1
    remaining = config["PAYMENT_EXPIRE_AFTER_S"] - age
    _reschedule(payment.id, max(1, min(QUERY_INTERVAL_S, int(remaining) + 1)))


# Steps that every pass runs after the payments, owned by the feature they belong to and
# registered by it at import (`callbacks/pipeline.py` retries stored callbacks): the
# reconciler needs to know nothing of callbacks.
PASS_STEPS: list[Callable[[PassReport], None]] = []


def after_each_pass(step: Callable[[PassReport], None]) -> Callable[[PassReport], None]:
    """Register `step(report)` to run at the end of every reconcile pass."""
    PASS_STEPS.append(step)
    return step


def reconcile_once() -> PassReport:
    """One pass over due payments; safe to run from several processes at once."""
    report = PassReport()
    now = utcnow()
    due = list(
        db.session.execute(
            select(Payment.id, Payment.next_query_at)
            .where(Payment.status == PaymentStatus.PENDING, Payment.next_query_at <= now)
            .order_by(Payment.next_query_at)
            .limit(BATCH)
        )
    )
    db.session.commit()
    client = get_client() if due else None
    for payment_id, next_query_at in due:
        if not _claim(payment_id, next_query_at):
            continue
        payment = db.session.get(Payment, payment_id)
        try:
            check_payment(payment, report, client)
        except Exception:
            db.session.rollback()
            report.errors += 1
            log.exception("reconciling payment %s failed", payment_id)
    for step in PASS_STEPS:
        step(report)
    done = (report.queried, report.expired, report.resolved, report.callbacks_retried)
    if any(done) or report.refunds_resent or report.refunds_checked or report.pulled:
        log.info(f"reconcile pass: {report}", extra={"event": "reconcile.pass"})
    return report
