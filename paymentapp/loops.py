"""Background workers (the reconciler, webhook delivery): one pass after another, each in
its own app context, surviving a failed pass. A process of its own in production
(`flask … --loop`), a greenlet of the web worker under `make run`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .extensions import db, socketio

log = logging.getLogger(__name__)


def run_forever(app, one_pass: Callable[[], object], name: str, interval: float, stop=None) -> None:
    """Call `one_pass()` every `interval` seconds until `stop()` says so."""
    log.info(f"{name} started, every {interval:g}s", extra={"event": f"{name}.start"})
    while stop is None or not stop():
        with app.app_context():
            try:
                one_pass()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the worker
                log.exception("%s pass failed", name)
            finally:
                db.session.remove()
        time.sleep(interval)


def start_in_background(app, one_pass: Callable[[], object], name: str, interval: float) -> None:
    """`run_forever` in a background greenlet (thread) of this process."""
    socketio.start_background_task(run_forever, app, one_pass, name, interval)
