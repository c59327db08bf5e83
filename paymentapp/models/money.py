"""Orders, their payments and refunds, and the record of what changed them: stored
callbacks and the audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    func,
    or_,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import (
    CallbackOutcome,
    CheckStatus,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    RefundReason,
    RefundStatus,
    UTCDateTime,
    new_id,
    one_of,
    utcnow,
)


class Order(db.Model):
    """What the customer pays for. `version` increases on every committed change, and the
    database counts it (`bump_version`)."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_status_created_at", "status", "created_at"),
        Index("ix_orders_created_at_id", "created_at", "id"),
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_orders_api_key_idempotency"),
        one_of("status", OrderStatus, "status"),
    )
    # every UPDATE of an order reads its `version` back (RETURNING): the database's count
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ord"))
    number: Mapped[str] = mapped_column(String(12), nullable=False, unique=True)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    reference: Mapped[str | None] = mapped_column(String(64))
    customer_phone: Mapped[str | None] = mapped_column(String(12))
    status: Mapped[OrderStatus] = mapped_column(
        String(16), nullable=False, default=OrderStatus.PENDING
    )
    version: Mapped[int] = mapped_column(
        Integer, nullable=False, default=1, server_onupdate=FetchedValue()
    )
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # after this, money for the order is recorded and flagged for a refund (Paybill)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # True for numbers ending in a check digit (orders/services.py); older ones are False
    number_checked: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default="0"
    )

    payments: Mapped[list[Payment]] = relationship(
        back_populates="order", order_by="Payment.created_at", lazy="selectin"
    )

    def bump_version(self) -> None:
        """Record a change, once per transaction, holding the order's row lock: the flush
        writes `version = version + 1` and reads the result back (RETURNING), so the
        version is the database's, never one computed from a row read before a wait."""
        self.version = VERSION_BUMP
        self.updated_at = utcnow()

    @property
    def latest_payment(self) -> Payment | None:
        return self.payments[-1] if self.payments else None

    @property
    def amount_paid(self) -> int:
        """What the payments that count have brought, net of refunds (`Payment.counts`)."""
        return sum(p.net_amount for p in self.payments if p.counts)

    @property
    def amount_refunded(self) -> int:
        """What was given back, on any of the order's payments."""
        return sum(p.refunded_amount or 0 for p in self.payments)

    @property
    def refund_status(self) -> str:
        """`refund_pending` (a refund is on its way back through M-Pesa), `refunded` (all
        the money that arrived went back), `partially_refunded`, or `none`."""
        if any(p.refunding_amount for p in self.payments):
            return "refund_pending"
        refunded = self.amount_refunded
        if not refunded:
            return "none"
        arrived = sum(p.paid_amount or 0 for p in self.payments if p.status == "completed")
        return "refunded" if refunded >= arrived else "partially_refunded"

    @property
    def amount_due(self) -> int:
        return max(0, self.amount - self.amount_paid)


# `version = version + 1`, one expression for every bump (recognised by identity where
# the commit's appended statement takes the row's update, `outbox/updates.py`)
VERSION_BUMP = Order.version + 1


class Payment(db.Model):
    """One STK Push attempt for an order."""

    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_status_created_at", "status", "created_at"),
        Index("ix_payments_phone_created_at", "phone", "created_at"),
        # the dashboard's charts (`admin/charts.py`): payments by when they were made and
        # their outcome (all three columns, so PostgreSQL answers from the index alone),
        # and money by when it arrived
        Index("ix_payments_created_at_outcome", "created_at", "status", "needs_review"),
        Index("ix_payments_paid_at", "paid_at"),
        one_of("status", PaymentStatus, "status"),
        one_of("method", PaymentMethod, "method"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("pay"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    method: Mapped[PaymentMethod] = mapped_column(
        String(16), nullable=False, default=PaymentMethod.STK, server_default="stk"
    )
    # STK: the normalised number; Paybill: Daraja's masked MSISDN (e.g. 2547*****126)
    phone: Mapped[str] = mapped_column(String(12), nullable=False)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    checkout_request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    merchant_request_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[PaymentStatus] = mapped_column(
        String(16), nullable=False, default=PaymentStatus.PENDING
    )
    result_code: Mapped[int | None] = mapped_column(Integer)
    result_desc: Mapped[str | None] = mapped_column(String(255))
    # one receipt is one movement of money: never on two payments (STK or Paybill)
    receipt: Mapped[str | None] = mapped_column(String(32), unique=True)
    # Paybill: the account number as the customer typed it
    account_reference: Mapped[str | None] = mapped_column(String(64))
    # a payment recorded by hand from its receipt: who entered it
    entered_by: Mapped[str | None] = mapped_column(String(64))
    # the sum of its refunds (`Refund`) that succeeded, written with them under the
    # order's lock; and what is on its way back through M-Pesa (refunds in flight)
    refunded_amount: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    refunding_amount: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )
    # money that arrived when the order could not take it (expired or cancelled): it
    # counts only once an admin accepts it (resolves the review)
    held: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    paid_amount: Mapped[int | None] = mapped_column(Integer)
    # "callback" (the amount M-Pesa reported), "query" (STK Query confirmed the prompt,
    # whose requested amount is the one paid) or "hand" (an admin entered it by receipt)
    amount_source: Mapped[str | None] = mapped_column(String(16))
    paid_phone: Mapped[str | None] = mapped_column(String(12))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    needs_review: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    review_reason: Mapped[str | None] = mapped_column(String(255))
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    query_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_query_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_queried_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    order: Mapped[Order] = relationship(back_populates="payments")
    refunds: Mapped[list[Refund]] = relationship(
        back_populates="payment", order_by="Refund.created_at"
    )

    @hybrid_property
    def counts(self) -> bool:
        """The one definition of money that counts toward its order (Python and SQL):
        completed, and trusted: the amount asked for and not held, or an admin accepted
        it (resolved its review)."""
        return self.status == PaymentStatus.COMPLETED and (
            self.reviewed_at is not None or (self.paid_amount == self.amount and not self.held)
        )

    @counts.inplace.expression
    @classmethod
    def _counts_expression(cls):
        return and_(
            cls.status == PaymentStatus.COMPLETED,
            or_(
                cls.reviewed_at.is_not(None),
                and_(cls.paid_amount == cls.amount, cls.held.is_(False)),
            ),
        )

    @hybrid_property
    def net_amount(self) -> int:
        """What the payment brought and kept: paid, less what was refunded."""
        return (self.paid_amount or 0) - (self.refunded_amount or 0)

    @net_amount.inplace.expression
    @classmethod
    def _net_amount_expression(cls):
        return func.coalesce(cls.paid_amount, 0) - cls.refunded_amount


class PaymentRules:
    """A payment's money rules (`Payment.counts`, `Payment.net_amount`) for anything that
    holds a payment's columns as attributes without being one: the decision's views
    (`payments/states.py`), the snapshot's rows (`orders/snapshots.py`)."""

    __slots__ = ()
    counts = property(vars(Payment)["counts"].fget)
    net_amount = property(vars(Payment)["net_amount"].fget)


class OrderRules:
    """An order's money rules for anything that holds an order's columns and its
    `payments` (each with PaymentRules) without being an `Order`."""

    __slots__ = ()
    latest_payment = Order.latest_payment
    amount_paid = Order.amount_paid
    amount_refunded = Order.amount_refunded
    refund_status = Order.refund_status
    amount_due = Order.amount_due


class Refund(db.Model):
    """Money given back from one payment: how much, why, by whom, and how."""

    __tablename__ = "refunds"
    __table_args__ = (
        one_of("status", RefundStatus, "status"),
        one_of("reason", RefundReason, "reason"),
        CheckConstraint("amount > 0", name="amount_positive"),
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_refunds_api_key_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ref"))
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), nullable=False, index=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    # "manual": given back outside the app; "reversal": Daraja's Reversal (the whole
    # transaction); "b2c": paid to `phone` from the B2C shortcode (a partial refund)
    method: Mapped[str] = mapped_column(String(16), nullable=False, default="manual")
    phone: Mapped[str | None] = mapped_column(String(12))
    status: Mapped[RefundStatus] = mapped_column(
        String(20), nullable=False, default=RefundStatus.SUCCEEDED
    )
    reason: Mapped[RefundReason] = mapped_column(String(32), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the merchant API's Idempotency-Key, as for orders
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    # Daraja's: the acknowledgement's ids (the result is matched by ConversationID), the
    # reversal's own receipt, and its result
    conversation_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    originator_conversation_id: Mapped[str | None] = mapped_column(String(64))
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    result_code: Mapped[str | None] = mapped_column(String(16))
    result_desc: Mapped[str | None] = mapped_column(String(255))
    # the last Transaction Status asked about it (its ConversationID, and when)
    check_conversation_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    payment: Mapped[Payment] = relationship(back_populates="refunds")


class ReceiptCheck(db.Model):
    """A receipt entered by hand, counted only once M-Pesa's Transaction Status confirms
    it (`payments/receipt_checks.py`): what the admin typed, and what M-Pesa said."""

    __tablename__ = "receipt_checks"
    __table_args__ = (
        one_of("status", CheckStatus, "status"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("rck"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    receipt: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    amount: Mapped[int] = mapped_column(Integer, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[CheckStatus] = mapped_column(
        String(16), nullable=False, default=CheckStatus.AWAITING
    )
    # the last Transaction Status asked (its ConversationID, and when)
    conversation_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # M-Pesa's answer, in words (amount, shortcode, status) and its code
    result_code: Mapped[str | None] = mapped_column(String(16))
    result_desc: Mapped[str | None] = mapped_column(String(255))
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # a check M-Pesa did not confirm waits in the review queue until an admin closes it
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order: Mapped[Order] = relationship()


class CallbackRecord(db.Model):
    """Every callback body as received: when, from where, and what it did."""

    __tablename__ = "callback_records"
    __table_args__ = (one_of("outcome", CallbackOutcome, "outcome"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # which kind of callback (`callbacks/pipeline.py`): "stk", later "c2b"
    kind: Mapped[str] = mapped_column(
        String(32), nullable=False, default="stk", server_default="stk"
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # how it came: "callback" (Daraja posted it) or "pull" (found by Pull Transactions)
    via: Mapped[str] = mapped_column(
        String(16), nullable=False, default="callback", server_default="callback"
    )
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text, nullable=False)
    # the id the callback was matched by (an STK CheckoutRequestID, later a C2B TransID)
    checkout_request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"), index=True)
    outcome: Mapped[CallbackOutcome] = mapped_column(
        String(32), nullable=False, default=CallbackOutcome.RECEIVED
    )
    # How often applying it failed unexpectedly; the reconciler gives up after a few.
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    detail: Mapped[str | None] = mapped_column(Text)  # a parse error or an admin's note


class OrderEvent(db.Model):
    """Audit trail of status changes, for the admin timeline."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), nullable=False, index=True)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"))
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    detail: Mapped[str | None] = mapped_column(String(255))
    actor: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
