"""Real crashes at exactly the wrong moment: a gunicorn worker SIGKILLed between a
callback's commit and its emit, or between storing a callback and applying it.

The workers reach the place through a test-only fault point (`paymentapp/faults.py`):
the first one there writes its pid and waits, and the test kills it. No log racing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from paymentapp.models import utcnow
from tests import services
from tests.e2e import (
    Watcher,
    Watchers,
    callback_body,
    callback_url,
    create_order,
    running_stack,
    start_payment,
)

pytestmark = pytest.mark.e2e


def kill_paused_worker(fault_dir: Path, point: str, timeout: float = 15) -> int:
    """Wait until a worker is held at `point`, SIGKILL it; returns its pid."""
    pid_file = fault_dir / f"{point}.pid"
    pid = int(
        services.wait_for(
            lambda: pid_file.exists() and pid_file.read_text(),
            f"a worker to reach {point}",
            timeout,
        )
    )
    os.kill(pid, signal.SIGKILL)
    return pid


def post_and_lose_the_answer(url: str, body: dict) -> threading.Thread:
    """Daraja's first try: the worker dies, so no answer comes (Daraja will retry)."""

    def post():
        try:
            requests.post(url, json=body, timeout=30)
        except requests.RequestException:
            pass

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def money_rows(stack, order_id: str) -> tuple[str, list[str], int]:
    engine = create_engine(stack.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            status = conn.execute(
                text("select status from orders where id = :id"), {"id": order_id}
            ).scalar_one()
            payments = list(
                conn.execute(
                    text("select status from payments where order_id = :id"), {"id": order_id}
                ).scalars()
            )
            paid_events = conn.execute(
                text(
                    "select count(*) from order_events where order_id = :id and kind = 'order_paid'"
                ),
                {"id": order_id},
            ).scalar_one()
    finally:
        engine.dispose()
    return status, payments, paid_events


def test_worker_killed_between_commit_and_emit_leaves_no_dialog_pending(tmp_path):
    """Daraja's retry is a duplicate, and a duplicate re-sends the snapshot."""
    fault_dir = tmp_path / "faults"
    fault_dir.mkdir()
    with running_stack(
        tmp_path,
        PAYMENTAPP_FAULTS="callback.after_commit=pause",
        PAYMENTAPP_FAULT_DIR=str(fault_dir),
    ) as stack:
        watchers = Watchers(stack)
        try:
            group = [w for ws in watchers.on_both_workers(per_worker=2) for w in ws]
            order = create_order(stack, 75)
            assert all(w.subscribe(order)["ok"] for w in group)
            checkout = start_payment(stack, order)
            body = callback_body(checkout, 0, amount=75)
            first_try = post_and_lose_the_answer(callback_url(stack), body)
            killed = kill_paused_worker(fault_dir, "callback.after_commit")
            first_try.join(30)
            # committed, never emitted: nobody has heard
            assert money_rows(stack, order["id"])[0] == "paid"
            survivors = [w for w in group if w.pid != killed]
            time.sleep(0.5)
            assert survivors and not any(
                w.matching(order["id"], order_status="paid") for w in survivors
            )

            retry = stack.http.post(callback_url(stack), json=body, timeout=10)
            assert retry.status_code == 200 and retry.json()["ResultCode"] == 0
            for watcher in survivors:
                update = watcher.wait_for(order["id"], order_status="paid", status="completed")
                assert update["order_status"] == "paid"
            # the dead worker's clients reconnect and get the same state in their snapshot
            fresh = Watcher(stack.url)
            watchers.opened.append(fresh)
            assert fresh.subscribe(order)["status"]["order_status"] == "paid"
        finally:
            watchers.close()
        assert money_rows(stack, order["id"]) == ("paid", ["completed"], 1)
        assert stack.env["MPESA_CALLBACK_TOKEN"] not in stack.server.log()


def test_worker_killed_after_storing_a_callback_and_a_bad_record_are_both_handled(tmp_path):
    """The stored callback is applied by `flask mpesa reconcile` even
    though another stored record fails every time it is applied."""
    fault_dir = tmp_path / "faults"
    fault_dir.mkdir()
    with running_stack(
        tmp_path,
        PAYMENTAPP_FAULTS="callback.after_store=pause",
        PAYMENTAPP_FAULT_DIR=str(fault_dir),
    ) as stack:
        watchers = Watchers(stack)
        try:
            group = [ws[0] for ws in watchers.on_both_workers()]
            order = create_order(stack, 80)
            assert all(w.subscribe(order)["ok"] for w in group)
            checkout = start_payment(stack, order)
            body = callback_body(checkout, 0, amount=80)
            first_try = post_and_lose_the_answer(callback_url(stack), body)
            killed = kill_paused_worker(fault_dir, "callback.after_store")
            first_try.join(30)
            assert money_rows(stack, order["id"])[0] == "pending"

            engine = create_engine(stack.env["DATABASE_URL"])
            try:
                with engine.begin() as conn:
                    conn.execute(
                        text(
                            "insert into callback_records (received_at, body, outcome, attempts) "
                            "values (:at, :body, 'received', 0)"
                        ),
                        {
                            "at": utcnow(),
                            "body": '{"Body": {"stkCallback": '
                            '{"CheckoutRequestID": "ws_CO_bad", "ResultCode": 1032}}}',
                        },
                    )
                    # both are older than the reconciler's 30 s grace period
                    conn.execute(
                        text("update callback_records set received_at = :at"),
                        {"at": utcnow() - timedelta(minutes=2)},
                    )
            finally:
                engine.dispose()
            out = services.flask_cli(
                {**stack.env, "PAYMENTAPP_FAULTS": "callback.apply=raise:ws_CO_bad"},
                "mpesa",
                "reconcile",
            )
            assert "callbacks_retried=2" in out and "callback_errors=1" in out
            for watcher in (w for w in group if w.pid != killed):
                watcher.wait_for(order["id"], order_status="paid")
        finally:
            watchers.close()
        assert money_rows(stack, order["id"]) == ("paid", ["completed"], 1)
