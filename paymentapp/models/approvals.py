"""Money moved by hand, or sent back, waits for a second person (`payments/approvals.py`):
an `Approval` is the proposal, what it would do, and who decided."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import UTCDateTime, new_id, one_of, utcnow
from .money import Order


class ApprovalKind(StrEnum):
    """What is proposed: each runs the same service as it would without approvals."""

    HAND_ENTRY = "hand_entry"  # a payment recorded by receipt (M-Pesa not asked)
    ACCEPT_REVIEW = "accept_review"  # a flagged payment's money accepted (its review closed)
    MANUAL_REFUND = "manual_refund"  # money given back outside the app, recorded
    MPESA_REFUND = "mpesa_refund"  # a Reversal or B2C refund (its refund: awaiting_approval)


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Approval(db.Model):
    __tablename__ = "approvals"
    __table_args__ = (
        one_of("kind", ApprovalKind, "kind"),
        one_of("status", ApprovalStatus, "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("apr"))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, default=ApprovalStatus.PENDING, index=True
    )
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"))
    refund_id: Mapped[str | None] = mapped_column(ForeignKey("refunds.id"))
    # what the proposer typed (JSON): receipt, amount, reason, note, phone
    values: Mapped[str] = mapped_column(Text, nullable=False)
    summary: Mapped[str] = mapped_column(String(500), nullable=False)
    proposed_by: Mapped[str] = mapped_column(String(64), nullable=False)
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(Text)
    # approved by the proposer themself (APPROVALS=off: a deployment with one owner)
    self_approved: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    order: Mapped[Order] = relationship()

    @property
    def typed(self) -> dict:
        return json.loads(self.values)
