"""Production metrics: `/metrics` in the Prometheus text format (docs/metrics.md).

Two kinds of number:

- **Events**, counted where they happen (callback handling time, Daraja latency and
  errors, Redis publish failures, open sockets): prometheus_client metrics. Under
  gunicorn each worker writes its own memory-mapped files in `PROMETHEUS_MULTIPROC_DIR`
  (`gunicorn.conf.py` sets the directory up and forgets dead workers' live gauges), and
  a scrape, whichever worker answers it, adds up every process's files, including those
  of `flask … --loop` processes given the same directory. Without the variable (tests,
  `python wsgi.py`) the numbers live in this process's registry.
- **State**, read from the database at scrape time (payments, orders, backlogs): right
  whatever process answers, because the database is the one truth. Every host reports
  the same deployment-wide numbers, so dashboards aggregate them with `max`, not `sum`.

The helpers called from hot paths (`observe_callback`, …) only observe a metric and never
raise: a metrics failure must not fail a callback, an emit or a Daraja call.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import os
from contextlib import suppress
from datetime import timedelta

from flask import Blueprint, current_app, request
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from .config import ConfigError, address_in
from .errors import Forbidden, NotFound, Unauthorized

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

# prometheus_client chooses in-process or multiprocess values when it is first imported,
# from PROMETHEUS_MULTIPROC_DIR; follow its choice rather than re-reading the variable.
MULTIPROCESS = values.ValueClass is not values.MutexValue
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") if MULTIPROCESS else None
if MULTIPROC_DIR:
    try:
        os.makedirs(MULTIPROC_DIR, exist_ok=True)  # a CLI process may be the first here
    except OSError as exc:
        raise ConfigError(
            f"PROMETHEUS_MULTIPROC_DIR: cannot create {MULTIPROC_DIR} ({exc})"
        ) from None
    if not os.access(MULTIPROC_DIR, os.W_OK):
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR: {MULTIPROC_DIR} is not writable")

# No `*_created` series: multiprocess mode has none, and in-process output should match it.
disable_created_metrics()

# Callbacks are answered in milliseconds: fine buckets at the low end, a few for stalls.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Daraja answers in tenths of seconds to seconds; the client's read timeout is 30 s.
DARAJA_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DARAJA_ENDPOINTS = ("oauth", "stkpush", "stkquery", "c2b_register")

CALLBACK_SECONDS = Histogram(
    "paymentapp_callback_seconds",
    "Time to handle a Daraja callback, from its arrival to the answer, by kind and outcome.",
    ["kind", "outcome"],
    buckets=FAST_BUCKETS,
)
CALLBACK_TO_EMIT_SECONDS = Histogram(
    "paymentapp_callback_to_emit_seconds",
    "From a callback's arrival to its payment_update being handed to the Socket.IO server "
    "(and so to Redis).",
    buckets=FAST_BUCKETS,
)
DARAJA_SECONDS = Histogram(
    "paymentapp_daraja_request_seconds",
    "One HTTP request to Daraja (or the simulator), by endpoint; failed requests included.",
    ["endpoint"],
    buckets=DARAJA_BUCKETS,
)
DARAJA_ERRORS = Counter(
    "paymentapp_daraja_errors",
    "Daraja calls that ended in an error, by endpoint and kind "
    "(unavailable, refused, auth, busy, subscriber_locked).",
    ["endpoint", "kind"],
)
SOCKETS = Gauge(
    "paymentapp_socket_connections",
    "Open Socket.IO connections of the default namespace, per worker process (pid).",
    multiprocess_mode="liveall",
)
REDIS_PUBLISH_FAILURES = Counter(
    "paymentapp_redis_publish_failures",
    "Socket.IO emits not published to Redis: reason=error (the publish failed) or "
    "skipped (sent during the pause after a failure).",
    ["reason"],
)
DB_RETRIES = Counter(
    "paymentapp_db_retries",
    "Transactions retried in place after a deadlock or serialization failure (reason), "
    "by what was running (what: callback_stk, admin, …) and whether the last try gave up.",
    ["what", "reason", "result"],
)
for _endpoint in DARAJA_ENDPOINTS:  # every endpoint's series exists from the start (0)
    DARAJA_SECONDS.labels(_endpoint)

_warned: set[str] = set()


def _failed(what: str) -> None:
    """A metric could not be recorded: say so once per process, never raise."""
    if what not in _warned:
        _warned.add(what)
        log.warning("metrics: could not record %s", what, exc_info=True)


# -- helpers for the hot paths (cheap, never raise) --------------------------------------------


def observe_callback(kind: str, outcome: str, seconds: float) -> None:
    """Record one callback's handling time: `kind` (stk, c2b_confirmation, …) and
    `outcome` (what the stored record says it did)."""
    try:
        CALLBACK_SECONDS.labels(kind, outcome).observe(seconds)
    except Exception:  # noqa: BLE001 - a metric must never fail a callback
        _failed("callback")


def observe_callback_to_emit(seconds: float) -> None:
    """Record the time from a callback's arrival to its emit being handed over."""
    try:
        CALLBACK_TO_EMIT_SECONDS.observe(seconds)
    except Exception:  # noqa: BLE001
        _failed("callback_to_emit")


def observe_daraja(endpoint: str, seconds: float) -> None:
    """Record one HTTP request to Daraja."""
    try:
        DARAJA_SECONDS.labels(endpoint).observe(seconds)
    except Exception:  # noqa: BLE001
        _failed("daraja")


def count_daraja_error(endpoint: str, kind: str) -> None:
    """Count a Daraja call that ended in an error (`DarajaError.kind`)."""
    try:
        DARAJA_ERRORS.labels(endpoint, kind).inc()
    except Exception:  # noqa: BLE001
        _failed("daraja_error")


def socket_connected() -> None:
    try:
        SOCKETS.inc()
    except Exception:  # noqa: BLE001
        _failed("socket")


def socket_disconnected() -> None:
    try:
        SOCKETS.dec()
    except Exception:  # noqa: BLE001
        _failed("socket")


def count_db_retry(what: str, reason: str, result: str) -> None:
    """Count a transaction retried in place (`locking.retry_conflicts`): result `retried`
    or `gave_up`."""
    try:
        DB_RETRIES.labels(what, reason, result).inc()
    except Exception:  # noqa: BLE001
        _failed("db_retry")


def count_publish_failure(reason: str) -> None:
    """Count an emit that was not published to Redis (`error` or `skipped`)."""
    try:
        REDIS_PUBLISH_FAILURES.labels(reason).inc()
    except Exception:  # noqa: BLE001
        _failed("redis_publish")


if MULTIPROCESS:

    @atexit.register
    def _forget_live_gauges() -> None:
        """A process that ends (a CLI command, a worker) takes its live gauges along;
        gunicorn's `child_exit` does the same for workers that die without exiting."""
        from prometheus_client import multiprocess

        with suppress(OSError):
            multiprocess.mark_process_dead(os.getpid(), MULTIPROC_DIR)


# -- state read from the database at scrape time ---------------------------------------------


class DatabaseCollector:
    """Counts read from the database for each scrape: a few cheap grouped counts."""

    def collect(self):
        from .extensions import db

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
        from sqlalchemy import func, select

        from .callbacks.pipeline import RETRY_AFTER_S
        from .extensions import db
        from .models import (
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
        retry_after = timedelta(seconds=RETRY_AFTER_S)
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
                oldest += retry_after  # due once it is RETRY_AFTER_S old
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
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(scrape, path=MULTIPROC_DIR)
    else:
        scrape.register(_ThisProcess())
    scrape.register(DatabaseCollector())
    return scrape


# -- the endpoint ------------------------------------------------------------------------------


def authorise() -> None:
    """`METRICS_ALLOWED_IPS` and `METRICS_TOKEN`: each one configured must pass. With
    neither, `/metrics` is open in simulator mode (a laptop) and absent in live modes."""
    config = current_app.config
    token = config.get("METRICS_TOKEN")
    networks = config.get("METRICS_ALLOWED_IPS") or []
    if not token and not networks:
        if config["MPESA_ENV"] == "simulator":
            return
        raise NotFound("Nothing lives at this address.", code="not_found")
    if networks and not address_in(request.remote_addr, networks):
        raise Forbidden("This address may not read the metrics.", code="ip_not_allowed")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized(
                "Send the metrics token as 'Authorization: Bearer <token>'.",
                code="missing_token",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        # compare bytes: compare_digest refuses str with non-ASCII characters
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode()):
            raise Unauthorized(
                "This metrics token is not valid.",
                code="invalid_token",
                headers={"WWW-Authenticate": 'Bearer realm="metrics", error="invalid_token"'},
            )


@bp.get("/metrics")
def metrics():
    """Every process's metrics and the database's counts, in the format the scraper asks
    for (Prometheus text, or OpenMetrics)."""
    authorise()
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    body = encode(registry())
    return body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"}
