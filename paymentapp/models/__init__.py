"""Database models (SQLAlchemy 2.0 style). Models never commit and never emit.

  base.py       UTC time, ids, the status enums (each with its CHECK), the order-number
                sequence and its SQLite counter
  accounts.py   merchant API keys and dashboard admins
  audit.py      the audit log: who did what, from where (append-only in the database)
  money.py      orders, payments, refunds, stored callbacks and the audit trail
  webhooks.py   webhook endpoints, events, deliveries and attempts; the demo shop's record

Every model is importable from here (`from ..models import Order`).
"""

from .accounts import AdminUser, ApiKey, Role
from .approvals import Approval, ApprovalKind, ApprovalStatus
from .audit import AuditEvent
from .base import (
    CallbackOutcome,
    CheckStatus,
    DeliveryStatus,
    OrderNumberCounter,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    RefundReason,
    RefundStatus,
    UTCDateTime,
    as_utc,
    new_id,
    one_of,
    order_number_seq,
    utcnow,
)
from .money import (
    CallbackRecord,
    Order,
    OrderEvent,
    OrderRules,
    Payment,
    PaymentRules,
    ReceiptCheck,
    Refund,
)
from .webhooks import (
    ShopFulfilment,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = [
    "AdminUser",
    "ApiKey",
    "Approval",
    "ApprovalKind",
    "ApprovalStatus",
    "AuditEvent",
    "CallbackOutcome",
    "CallbackRecord",
    "CheckStatus",
    "DeliveryStatus",
    "Order",
    "OrderEvent",
    "OrderNumberCounter",
    "OrderRules",
    "OrderStatus",
    "Payment",
    "PaymentMethod",
    "PaymentRules",
    "PaymentStatus",
    "ReceiptCheck",
    "Refund",
    "RefundReason",
    "RefundStatus",
    "Role",
    "ShopFulfilment",
    "UTCDateTime",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "as_utc",
    "new_id",
    "one_of",
    "order_number_seq",
    "utcnow",
]
