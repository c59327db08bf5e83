"""What one scrape reports: every process's metrics (`instruments.py`), and the state
read from the database at scrape time (payments, orders, backlogs).

The database's numbers are right whatever process answers, because the database is the
one truth: every host reports the same deployment-wide numbers, so dashboards aggregate
them with `max`, not `sum`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    CallbackOutcome,
    CallbackRecord,
    DeliveryStatus,
    Order,
    OrderStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    WebhookDelivery,
    utcnow,
)
from .instruments import MULTIPROC_DIR, MULTIPROCESS

log = logging.getLogger(__name__)


class DatabaseCollector:
    """Counts read from the database for each scrape: a few cheap grouped counts."""

    def collect(self):
        up = GaugeMetricFamily(
            "paymentapp_metrics_database_up",
            "1 when this scrape's database reads (payments, orders, backlogs) worked, else 0.",
        )
        try:
            families = self.read()
        except Exception as exc:  # noqa: BLE001 - the process metrics are still worth a scrape
            db.session.rollback()
            log.warning("metrics: database reads failed: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [*families, up]

    def read(self) -> list[GaugeMetricFamily]:
        session = db.session
        payments = GaugeMetricFamily(
            "paymentapp_payments", "Payments by method and status.", labels=["method", "status"]
        )
        counts = {(str(m), s): 0 for m in PaymentMethod for s in PaymentStatus.ALL}
        grouped = select(Payment.method, Payment.status, func.count()).group_by(
            Payment.method, Payment.status
        )
        for method, status, count in session.execute(grouped):
            counts[(str(method), str(status))] = count
        for (method, status), count in sorted(counts.items()):
            payments.add_metric([method, status], count)

        orders = GaugeMetricFamily("paymentapp_orders", "Orders by status.", labels=["status"])
        by_status = dict.fromkeys(OrderStatus.ALL, 0)
        grouped = select(Order.status, func.count()).group_by(Order.status)
        by_status.update({str(s): c for s, c in session.execute(grouped)})
        for status, count in by_status.items():
            orders.add_metric([status], count)

        # Work a background process should have done by now: how much, and how late.
        now = utcnow()
        retry_after = timedelta(seconds=current_app.config["CALLBACK_RETRY_AFTER_S"])
        queues = {
            # pending payments whose STK Query is due (the reconciler)
            "stk_query": select(func.count(), func.min(Payment.next_query_at)).where(
                Payment.status == PaymentStatus.PENDING, Payment.next_query_at <= now
            ),
            # callbacks stored but not applied, old enough to be retried (the reconciler)
            "callback_retry": select(func.count(), func.min(CallbackRecord.received_at)).where(
                CallbackRecord.outcome == CallbackOutcome.RECEIVED,
                CallbackRecord.received_at < now - retry_after,
            ),
            # webhook deliveries due now (`webhooks deliver --loop`)
            "webhook_delivery": select(
                func.count(), func.min(WebhookDelivery.next_attempt_at)
            ).where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
            ),
        }
        backlog = GaugeMetricFamily(
            "paymentapp_backlog",
            "Items due for a background worker now: STK queries and callback retries "
            "(the reconciler), webhook deliveries.",
            labels=["queue"],
        )
        late = GaugeMetricFamily(
            "paymentapp_backlog_oldest_seconds",
            "How long the oldest due item of each queue has been due (0 when none is).",
            labels=["queue"],
        )
        for queue, query in queues.items():
            count, oldest = session.execute(query).one()
            if oldest is not None and queue == "callback_retry":
                oldest += retry_after  # due once it is CALLBACK_RETRY_AFTER_S old
            backlog.add_metric([queue], count)
            late.add_metric([queue], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)

        outbox = GaugeMetricFamily(
            "paymentapp_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered nor given up (due now or backing off).",
        )
        outbox.add_metric(
            [],
            session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status == DeliveryStatus.PENDING)
            ),
        )
        return [payments, orders, backlog, late, outbox]


class _ThisProcess:
    """The in-process registry, when there is no multiprocess directory."""

    def collect(self):
        return REGISTRY.collect()


def registry() -> CollectorRegistry:
    """What one scrape reports: every process's metrics, and the database's counts."""
    scrape = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS:
        MultiProcessCollector(scrape, path=MULTIPROC_DIR)
    else:
        scrape.register(_ThisProcess())
    scrape.register(DatabaseCollector())
    return scrape
