"""Production metrics: `/metrics` in the Prometheus text format (docs/metrics.md).

`instruments.py` holds the events counted where they happen (callback handling time,
Daraja latency and errors, Redis publish failures, open sockets, retried transactions)
and the never-raising helpers that count them; `collector.py` is what one scrape
reports: every process's instruments, and the state read from the database at scrape
time (payments, orders, backlogs); `routes.py` is `GET /metrics` and who may read it.

Callers write `from paymentapp import metrics` and `metrics.count_db_retry(...)`: this
face hands on the instruments alone. The collector reads models and callbacks/, which
count through these instruments, so importing it here would close an import circle.
"""

from .instruments import (  # noqa: F401  (handed on: `metrics.observe_callback`, …)
    CALLBACK_SECONDS,
    CALLBACK_TO_EMIT_SECONDS,
    DARAJA_ERRORS,
    DARAJA_SECONDS,
    DB_RETRIES,
    MULTIPROC_DIR,
    MULTIPROCESS,
    REDIS_PUBLISH_FAILURES,
    SOCKETS,
    count_daraja_error,
    count_db_retry,
    count_publish_failure,
    observe_callback,
    observe_callback_to_emit,
    observe_daraja,
    socket_connected,
    socket_disconnected,
)
