"""Initiator results: Daraja POSTs the outcome of a Reversal (`mpesa/reversal.py`), a B2C
payment (`mpesa/b2c.py`) or a Transaction Status query to its ResultURL, or to its
QueueTimeOutURL when the request timed out in Safaricom's queue. All come through the
pipeline like every callback: stored raw first, token-checked, never a 5xx, matched by
ConversationID (a B2C's also by our OriginatorConversationID) under the order's lock.

A result can arrive before the acknowledgement that told us its ConversationID was
committed: it then stays `received` and the reconciler applies it again later
(`UNMATCHED_FOR_S`); after that, unmatched, it waits for an admin like any unknown
callback. Body: `{"Result": {ResultType, ResultCode (the number 0, or a string such as
"R000001"), ResultDesc, OriginatorConversationID, ConversationID, TransactionID,
ResultParameters: {ResultParameter: [{Key, Value}]}, ReferenceData}}`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from ..extensions import db
from ..locking import (
    BY_CHECK_CONVERSATION,
    BY_CONVERSATION,
    BY_ORIGINATOR,
    BY_STATUS_CHECK,
    lock_receipt_check,
    lock_refund,
)
from ..models import (
    CallbackOutcome,
    CallbackRecord,
    Order,
    ReceiptCheck,
    Refund,
    RefundStatus,
    utcnow,
)
from ..models.records import StoredCallback
from ..payments.receipt_checks import settle_receipt
from ..payments.refund_outcomes import (
    AFTER_ACKNOWLEDGED,
    settle_by_status,
    settle_refund,
    timed_out,
)
from .pipeline import (
    KINDS,
    CallbackKind,
    MalformedCallback,
    apply_stored,
    clean_text,
    load_json,
    register,
)

log = logging.getLogger(__name__)

# A result whose ConversationID no refund has yet (our acknowledgement not committed):
# retried by the reconciler until this old, then unknown.
UNMATCHED_FOR_S = 600


@dataclass(frozen=True)
class InitiatorResult:
    """An initiator API's result, as sent (the code as text: "0", "R000001", "2001")."""

    result_code: str
    result_desc: str
    conversation_id: str
    originator_conversation_id: str | None
    transaction_id: str | None
    parameters: dict = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.result_code == "0"


def _parameters(value) -> dict:
    """`{"ResultParameter": [{"Key", "Value"}]}` (one item may come as a lone object) as
    a dict of clean text and numbers."""
    items = value.get("ResultParameter") if isinstance(value, dict) else None
    if isinstance(items, dict):
        items = [items]
    out = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("Key"), str):
            raw = item.get("Value")
            key = clean_text(item["Key"], 64)
            if isinstance(raw, bool) or raw is None:
                continue
            out[key] = raw if isinstance(raw, int | float) else clean_text(raw, 255)
    return out


def parse_result(body: bytes) -> InitiatorResult:
    data = load_json(body)
    result = data.get("Result") if isinstance(data, dict) else None
    if not isinstance(result, dict):
        raise MalformedCallback("no Result object")
    code = result.get("ResultCode")
    if isinstance(code, bool) or not isinstance(code, int | str) or str(code).strip() == "":
        raise MalformedCallback("ResultCode missing or invalid")
    conversation_id = clean_text(result.get("ConversationID"), 64)
    if not conversation_id:
        raise MalformedCallback("ConversationID missing")
    return InitiatorResult(
        result_code=str(code).strip()[:16],
        result_desc=clean_text(result.get("ResultDesc"), 255) or "",
        conversation_id=conversation_id,
        originator_conversation_id=clean_text(result.get("OriginatorConversationID"), 64),
        transaction_id=clean_text(result.get("TransactionID"), 32),
        parameters=_parameters(result.get("ResultParameters")),
    )


class ReversalResult(CallbackKind):
    """The outcome of a Reversal: the refund succeeds or fails."""

    name = "reversal"
    path = "reversal/result"
    matched_by = BY_CONVERSATION
    subject = "refund"

    def parse(self, body: bytes) -> InitiatorResult:
        return parse_result(body)

    def match_key(self, parsed: InitiatorResult) -> str:
        return parsed.conversation_id

    def apply(
        self, record: StoredCallback, result: InitiatorResult
    ) -> tuple[CallbackOutcome, Order | None]:
        row = self.find(result)  # a refund, or a receipt check
        if row is None or row.status == RefundStatus.REQUESTED:
            # our acknowledgement is not committed yet: retried (`apply_waiting`)
            return _unmatched(record, result), None
        outcome = self.settle(row, result)
        record.payment_id = row.payment_id
        record.detail = f"{self.subject} {row.id}: {outcome}, {row.status}"
        log.info(
            f"{self.name} result for {self.subject} {row.id}: "
            f"{result.result_code} {result.result_desc}",
            extra={
                "event": f"{self.name}.{outcome}",
                self.subject.replace(" ", "_"): row.id,
                "record": record.id,
                "result_code": result.result_code,
            },
        )
        return CallbackOutcome(outcome), db.session.get(Order, row.order_id)  # locked

    def find(self, result: InitiatorResult) -> Refund | None:
        """The refund this result is about, its order locked."""
        return lock_refund(self.matched_by, result.conversation_id)

    @staticmethod
    def settle(refund, result: InitiatorResult) -> str:
        return settle_refund(refund, result)


class ReversalTimeout(ReversalResult):
    """Safaricom's queue timed out on a Reversal: not a failure; the refund stays pending
    and says so (Transaction Status will tell)."""

    name = "reversal_timeout"
    path = "reversal/timeout"

    @staticmethod
    def settle(refund, result: InitiatorResult) -> str:
        return timed_out(refund, result)


class StatusResult(ReversalResult):
    """Transaction Status's answer about a refund whose reversal result never came: the
    refund succeeds when M-Pesa says the reversal completed, fails when it has none."""

    name = "transaction_status"
    path = "status/result"
    matched_by = BY_STATUS_CHECK

    @staticmethod
    def settle(refund, result: InitiatorResult) -> str:
        return settle_by_status(refund, result)


class StatusTimeout(StatusResult):
    """Safaricom's queue timed out on a Transaction Status query: it is asked again on a
    later pass."""

    name = "transaction_status_timeout"
    path = "status/timeout"

    @staticmethod
    def settle(refund, result: InitiatorResult) -> str:
        return "ignored"


class B2CResult(ReversalResult):
    """The outcome of a B2C payment (a partial refund): matched by ConversationID, or by
    our own OriginatorConversationID when the acknowledgement never came."""

    name = "b2c"
    path = "b2c/result"

    def find(self, result: InitiatorResult) -> Refund | None:
        refund = lock_refund(BY_CONVERSATION, result.conversation_id)
        if refund is None and result.originator_conversation_id:
            refund = lock_refund(BY_ORIGINATOR, result.originator_conversation_id)
        return refund if refund is not None and refund.method == "b2c" else None


class B2CTimeout(B2CResult):
    """Safaricom's queue timed out on a B2C payment: not a failure, never sent again;
    Transaction Status settles it."""

    name = "b2c_timeout"
    path = "b2c/timeout"

    @staticmethod
    def settle(refund, result: InitiatorResult) -> str:
        return timed_out(refund, result)


class ReceiptStatusResult(ReversalResult):
    """Transaction Status's answer about a receipt entered by hand: it counts when M-Pesa
    confirms it (completed, the amount entered, to our shortcode), goes to the admin
    with M-Pesa's answer when that differs (`payments/receipt_checks.py`)."""

    name = "receipt_status"
    path = "status/receipt/result"
    subject = "receipt check"

    def find(self, result: InitiatorResult) -> ReceiptCheck | None:
        return lock_receipt_check(BY_CHECK_CONVERSATION, result.conversation_id)

    @staticmethod
    def settle(check, result: InitiatorResult) -> str:
        return settle_receipt(check, result)


class ReceiptStatusTimeout(ReceiptStatusResult):
    """Safaricom's queue timed out on the question: it is asked again on a later pass."""

    name = "receipt_status_timeout"
    path = "status/receipt/timeout"

    @staticmethod
    def settle(check, result: InitiatorResult) -> str:
        return "ignored"


def _unmatched(record: StoredCallback, result: InitiatorResult) -> CallbackOutcome:
    if record.received_at > utcnow() - timedelta(seconds=UNMATCHED_FOR_S):
        record.detail = "nothing has this ConversationID yet; retried"
        return CallbackOutcome.RECEIVED
    record.detail = "nothing has this ConversationID"
    log.warning(
        f"reversal result for unknown conversation {result.conversation_id} recorded",
        extra={"event": "reversal.unknown", "record": record.id},
    )
    return CallbackOutcome.UNKNOWN


register(ReversalResult())
register(ReversalTimeout())
register(StatusResult())
register(StatusTimeout())
register(B2CResult())
register(B2CTimeout())
register(ReceiptStatusResult())
register(ReceiptStatusTimeout())


def apply_waiting(conversation_id: str) -> None:
    """Apply the stored results that came before their acknowledgement was committed,
    now that a refund has this ConversationID (the reconciler would otherwise retry them
    later). Found by their body, which is committed before a result is applied: so a
    result whose own apply found no refund yet is found here, whatever the interleaving
    (both take the order's lock; the refund settles once)."""
    names = [kind.name for kind in KINDS.values() if isinstance(kind, ReversalResult)]
    waiting = db.session.execute(
        select(CallbackRecord.id, CallbackRecord.kind, CallbackRecord.body).where(
            CallbackRecord.kind.in_(names),
            CallbackRecord.outcome == CallbackOutcome.RECEIVED,
            CallbackRecord.body.contains(conversation_id, autoescape=True),
        )
    ).all()
    db.session.commit()
    for record_id, kind_name, body in waiting:
        kind = KINDS[kind_name]
        try:
            apply_stored(kind, record_id, kind.parse(body.encode()))
        except Exception:  # noqa: BLE001 - the reconciler retries it; the refund is pending
            db.session.rollback()
            log.warning("waiting result %s not applied", record_id, exc_info=True)


AFTER_ACKNOWLEDGED.append(apply_waiting)
