"""Missed Paybill payments pulled back: Pull Transactions lists the C2B payments M-Pesa
received on the Paybill in a time window (`mpesa/pull.py`); each one no payment and no
stored confirmation knows by its receipt goes through the C2B confirmation kind as if its
callback had arrived (same matching, same flags, lateness judged by its time), its
record marked `via = "pull"`. `flask mpesa pull --since 6h` by hand, and every
`MPESA_PULL_INTERVAL_S` in the reconciler's pass when set (docs/paybill.md).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import literal, select

from ..extensions import db
from ..models import CallbackRecord, Payment, utcnow
from ..mpesa.client import PulledTransaction, get_client
from ..mpesa.formats import eat_timestamp
from ..payments.reconcile import PassReport, after_each_pass
from .c2b import C2BConfirmation
from .pipeline import KINDS, receive

log = logging.getLogger(__name__)

MAX_SINCE = timedelta(hours=48)
_last_pass: dict[int, float] = {}  # when this process last pulled, by app


@dataclass
class PullReport:
    listed: int = 0
    known: int = 0
    applied: int = 0

    def __str__(self) -> str:
        return f"listed={self.listed} known={self.known} applied={self.applied}"


def _known(receipt: str) -> bool:
    """Is this receipt on a payment, or in a stored confirmation (matched or not)?"""
    on_payment = select(literal(1)).where(Payment.receipt == receipt)
    stored = select(literal(1)).where(
        CallbackRecord.kind == C2BConfirmation.name,
        CallbackRecord.checkout_request_id == receipt,
    )
    return db.session.execute(on_payment.union_all(stored).limit(1)).first() is not None


def confirmation_body(pulled: PulledTransaction) -> bytes:
    """The C2B confirmation Daraja would have posted for this payment."""
    return json.dumps(
        {
            "TransactionType": "Pay Bill",
            "TransID": pulled.receipt,
            "TransTime": eat_timestamp(pulled.at or utcnow()),
            "TransAmount": f"{pulled.amount}.00" if pulled.amount is not None else "",
            "BusinessShortCode": pulled.shortcode,
            "BillRefNumber": pulled.account,
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": pulled.msisdn,
            "FirstName": "",
            "MiddleName": "",
            "LastName": "",
        }
    ).encode()


def pull_missed(since: timedelta) -> PullReport:
    """Pull the Paybill's payments of the last `since` (at most 48 hours) and apply the
    ones never confirmed."""
    since = min(since, MAX_SINCE)
    end = utcnow()
    shortcode = current_app.config["MPESA_C2B_SHORTCODE"]
    listed = get_client().pull_transactions(shortcode=shortcode, start=end - since, end=end)
    db.session.commit()  # no transaction held while the rest is applied one by one
    report = PullReport(listed=len(listed))
    kind = KINDS[C2BConfirmation.name]
    for pulled in listed:
        if _known(pulled.receipt):
            report.known += 1
            continue
        db.session.commit()
        receive(kind, confirmation_body(pulled), None, via="pull")
        report.applied += 1
        log.info(
            f"Paybill payment {pulled.receipt} found by Pull Transactions, applied",
            extra={"event": "c2b.pulled", "receipt": pulled.receipt, "amount": pulled.amount},
        )
    return report


@after_each_pass
def pull_pass(report: PassReport) -> None:
    """Part of every reconcile pass when MPESA_PULL_INTERVAL_S is set: pull back what was
    missed since twice the interval (at least an hour), once per interval."""
    interval = current_app.config.get("MPESA_PULL_INTERVAL_S") or 0
    now = time.monotonic()
    key = id(current_app._get_current_object())
    if not interval or now - _last_pass.get(key, -interval) < interval:
        return
    _last_pass[key] = now
    since = max(timedelta(hours=1), timedelta(seconds=2 * interval))
    report.pulled += pull_missed(since).applied
