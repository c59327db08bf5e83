"""The events counted where they happen: prometheus_client metrics and the helpers that
hot paths call (`observe_callback`, `count_db_retry`, …).

Under gunicorn each worker writes its own memory-mapped files in
`PROMETHEUS_MULTIPROC_DIR` (`gunicorn.conf.py` sets the directory up and forgets dead
workers' live gauges), and a scrape, whichever worker answers it, adds up every
process's files, including those of `flask … --loop` processes given the same directory.
Without the variable (tests, `python wsgi.py`) the numbers live in this process's registry.

The helpers only observe a metric and never raise: a metrics failure must not fail a
callback, an emit or a Daraja call. This module imports nothing of the project but
`config` and `logwriter` (which import nothing of it), so that callbacks/, locking.py,
realtime/ and mpesa/ can count from anywhere without an import circle.
"""

from __future__ import annotations

import atexit
import logging
import os
from contextlib import suppress

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    multiprocess,
    values,
)

from .. import logwriter
from ..config import ConfigError

log = logging.getLogger(__name__)

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
DARAJA_ENDPOINTS = (
    "oauth",
    "stkpush",
    "stkquery",
    "c2b_register",
    "reversal",
    "b2c",
    "transaction_status",
    "pull_register",
    "pull_query",
    "qrcode",
)

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
LOG_LINES_DROPPED = Counter(
    "paymentapp_log_lines_dropped",
    "Log lines dropped because the process's log queue was full (LOG_QUEUE_LINES): the "
    "log's reader (journald, the disk) could not keep up, and logging never waits.",
)
logwriter.count_drops_with(LOG_LINES_DROPPED)
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
        with suppress(OSError):
            multiprocess.mark_process_dead(os.getpid(), MULTIPROC_DIR)
