"""On PostgreSQL the changed orders and payments are written by the commit's one appended
statement, not by the ORM's flush (`outbox/updates.py`), and the version announced is
the one the database counted, or nothing commits."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm.exc import StaleDataError

from paymentapp import create_app
from paymentapp.extensions import db
from paymentapp.locking import lock_order_of_checkout
from paymentapp.models import Order, OrderStatus, Payment, PaymentStatus
from paymentapp.models.records import ORDER_COLUMNS, OrderRecord
from paymentapp.orders.schemas import status_snapshot
from paymentapp.outbox import updates
from paymentapp.outbox.writer import write_appended
from paymentapp.payments.states import Kind, transition
from tests import services
from tests.helpers import TEST_CALLBACK_TOKEN, base_env, stk_callback


@pytest.fixture(scope="module")
def pg_app():
    url = services.create_pg_database()
    app = create_app({"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=base_env(url))
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()
    services.drop_pg_database(url)


@pytest.fixture
def pending(pg_app):
    """A pending order of 100 with a prompt on the phone: (order id, checkout id)."""
    order = Order(number=f"ORD-{services.free_port()}", amount=100)
    db.session.add(order)
    db.session.flush()
    payment = Payment(
        order_id=order.id, phone="254712345678", amount=100, checkout_request_id=f"ws_CO_{order.id}"
    )
    db.session.add(payment)
    db.session.commit()
    yield order.id, payment.checkout_request_id
    db.session.rollback()


@pytest.fixture
def statements(pg_app):
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def test_a_paid_callback_makes_four_statements_and_the_last_writes_its_rows(
    pg_app, pending, statements
):
    order_id, checkout_id = pending
    response = pg_app.test_client().post(
        f"/callbacks/stk/{TEST_CALLBACK_TOKEN}", json=stk_callback(checkout_id)
    )
    assert response.status_code == 200, response.get_json()

    # store; lock the order; read its payments; everything the transaction changed
    assert [s.split()[0] for s in statements] == ["INSERT", "SELECT", "SELECT", "WITH"]
    assert "FOR UPDATE" in statements[1]
    written = statements[3]
    for part in ("UPDATE orders SET", "UPDATE payments SET", "INSERT INTO order_events"):
        assert part in written
    # the version is the database's: counted in the UPDATE and read back
    assert re.search(r"UPDATE orders SET .*version=\(orders\.version \+ %\(\w+\)s", written)
    assert re.search(r"UPDATE orders SET .* RETURNING orders\.version", written)
    assert written.endswith("SELECT row_update_0.version AS version_0 FROM row_update_0")
    db.session.expire_all()
    order = db.session.get(Order, order_id)
    assert order.status == OrderStatus.PAID and order.version == 2
    assert [(p.status, p.paid_amount) for p in order.payments] == [(PaymentStatus.COMPLETED, 100)]


def test_an_order_changed_without_its_lock_is_never_committed_with_a_wrong_version(pg_app, pending):
    order_id, _ = pending
    order = db.session.get(Order, order_id)  # read, NOT locked: the mistake this catches
    assert order.version == 1
    with db.engine.connect() as other:  # another transaction changes it meanwhile
        other.execute(
            text("UPDATE orders SET version = version + 1 WHERE id = :id"), {"id": order_id}
        )
        other.commit()
    transition(order, Kind.ORDER_CANCELLED, "cancelled by a test")

    with pytest.raises(
        StaleDataError, match=r"versions after the update: \(3,\), announced: \(2,\)"
    ):
        db.session.commit()
    db.session.rollback()
    stored = db.session.get(Order, order_id)
    assert (stored.status, stored.version) == (OrderStatus.PENDING, 2)  # nothing committed


def test_only_changed_columns_are_taken_and_other_computed_values_stay_with_the_flush(
    pg_app, pending, statements
):
    order_id, _ = pending
    order = db.session.get(Order, order_id)
    payment = order.payments[0]
    order.amount = 100  # set back to what was loaded: no change
    order.description = "changed"
    payment.refunded_amount = Payment.refunded_amount + 5  # computed: the flush writes it
    transition(order, Kind.STATUS_CHECKED, "checked by a test", payment=payment)
    taken = []
    real_take = updates.take_updates

    def take(session, records=()):
        taken.extend(real_take(session, records))
        return taken

    statements.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("paymentapp.outbox.hook.take_updates", take)
        db.session.commit()

    assert [(u.table, sorted(u.values), u.version) for u in taken] == [
        ("orders", ["description", "updated_at"], 2)
    ]
    flushed = [s for s in statements if s.startswith("UPDATE")]
    assert len(flushed) == 1 and flushed[0].startswith("UPDATE payments SET refunded_amount")
    db.session.expire_all()
    stored = db.session.get(Order, order_id)
    assert (stored.description, stored.amount, stored.version) == ("changed", 100, 2)
    assert stored.payments[0].refunded_amount == 5


def test_a_paid_callback_leaves_nothing_for_the_flush(pg_app, pending):
    """A payment's columns set to what they were (its `next_query_at` cleared when it
    completes) are not a change: the appended statement writes the rest, and the flush,
    finding nothing dirty, does not run."""
    _, checkout_id = pending
    flushes = []

    def flushed(session, context, instances):
        flushes.append(sorted(type(obj).__name__ for obj in session.dirty))

    event.listen(db.session, "before_flush", flushed)
    try:
        response = pg_app.test_client().post(
            f"/callbacks/stk/{TEST_CALLBACK_TOKEN}", json=stk_callback(checkout_id)
        )
    finally:
        event.remove(db.session, "before_flush", flushed)
    assert response.status_code == 200, response.get_json()
    assert flushes == []


def test_a_paid_callback_reads_its_rows_as_records_and_builds_no_orm_object(
    pg_app, pending, monkeypatch
):
    """The STK callback's lock reads records (`models/records.py`): no Order or Payment
    is loaded into the session, and what the callback changed is in the database, with
    the version the emit announced."""
    order_id, checkout_id = pending
    loaded = []

    def load(target, context):
        loaded.append(target)

    event.listen(Order, "load", load)
    event.listen(Payment, "load", load)
    sent = []
    monkeypatch.setattr("paymentapp.outbox.hook.send", lambda name, payload: sent.append(payload))
    try:
        response = pg_app.test_client().post(
            f"/callbacks/stk/{TEST_CALLBACK_TOKEN}", json=stk_callback(checkout_id)
        )
    finally:
        event.remove(Order, "load", load)
        event.remove(Payment, "load", load)
    assert response.status_code == 200, response.get_json()
    assert loaded == []
    assert [(p["order_id"], p["order_status"], p["version"]) for p in sent] == [
        (order_id, "paid", 2)
    ]
    db.session.expire_all()
    order = db.session.get(Order, order_id)
    assert (order.status, order.version, order.payments[0].status) == ("paid", 2, "completed")
    assert status_snapshot(order) == sent[0]


def test_a_column_set_on_a_record_without_a_move_is_still_written(pg_app, pending):
    """Nothing set on a locked record is lost: the commit writes it as the ORM's flush
    would have written an object's change."""
    order_id, checkout_id = pending
    order, payment, holder = lock_order_of_checkout(checkout_id, None)
    assert (order.id, payment.order, holder) == (order_id, order, None)
    payment.merchant_request_id = "set-by-hand"
    db.session.commit()
    stored = db.session.execute(
        text("SELECT merchant_request_id FROM payments WHERE id = :id"), {"id": payment.id}
    ).scalar_one()
    assert stored == "set-by-hand"
    assert payment.changed() == {}


def test_an_order_changed_both_as_a_record_and_as_an_orm_object_is_never_committed(pg_app, pending):
    """Two readings of one order in one transaction would each write what they alone saw
    and bump the version twice: the commit refuses, and nothing is written."""
    order_id, checkout_id = pending
    record, _, _ = lock_order_of_checkout(checkout_id, None)
    transition(record, Kind.STATUS_CHECKED, "checked through the record")
    orm_order = db.session.get(Order, order_id)
    transition(orm_order, Kind.ORDER_CANCELLED, "cancelled through the ORM object")
    with pytest.raises(RuntimeError, match=f"both as ORM objects and as records: .*{order_id}"):
        db.session.commit()
    db.session.rollback()
    stored = db.session.get(Order, order_id)
    assert (stored.status, stored.version) == (OrderStatus.PENDING, 1)


def test_a_record_takes_only_its_columns_and_its_version_only_by_a_bump():
    order = OrderRecord(tuple(range(len(ORDER_COLUMNS))))
    with pytest.raises(AttributeError, match="no column 'paid'"):
        order.paid = True
    with pytest.raises(AttributeError, match="bump_version"):
        order.version = 7
    order.amount = order.amount  # set to what it was: no change
    order.description = "changed"
    assert order.changed() == {"description": "changed"}
    order.bump_version()
    assert order.bumped and set(order.changed()) == {"description", "updated_at"}


AWKWARD = "say \"paid\" \\ {braces}, commas; NULL Ksh — ✓ 'quoted'"


def test_appended_rows_keep_every_character_and_null(pg_app, pending):
    """The appended statement's rows travel as one JSON array per table
    (`writer._rows_json`): quotes, backslashes, braces, commas, the word NULL and
    non-ASCII text come back as they went in, None stays NULL, and a time in another
    zone is the same instant to the microsecond."""
    order_id, _ = pending
    now = db.session.execute(text("SELECT now()")).scalar_one()
    nairobi = now.astimezone(timezone(timedelta(hours=3)))
    payload = json.dumps({"note": AWKWARD, "nested": {"list": [1, "two", None]}})
    write_appended(
        db.session,
        events=[
            {
                "id": f"evt_{order_id}",
                "type": "order.test",
                "order_id": order_id,
                "version": 1,
                "payload": payload,
                "created_at": now,
            }
        ],
        audit=[
            {
                "order_id": order_id,
                "payment_id": None,
                "kind": "note",
                "detail": AWKWARD,
                "actor": None,
                "created_at": now,
            },
            {
                "order_id": order_id,
                "payment_id": None,
                "kind": "note",
                "detail": "NULL",
                "actor": 'admin "x"',
                "created_at": nairobi,
            },
        ],
    )
    db.session.commit()
    audit = db.session.execute(
        text("SELECT detail, actor, created_at FROM order_events WHERE order_id = :id ORDER BY id"),
        {"id": order_id},
    ).all()
    assert [tuple(row) for row in audit] == [(AWKWARD, None, now), ("NULL", 'admin "x"', now)]
    stored = db.session.execute(
        text("SELECT payload, version FROM webhook_events WHERE id = :id"),
        {"id": f"evt_{order_id}"},
    ).one()
    assert (stored.payload, stored.version) == (payload, 1)


def test_an_appended_row_with_a_naive_time_is_refused(pg_app, pending):
    """A time without a zone is refused before anything is sent, as `UTCDateTime`
    refuses it in a flush: it could be any instant."""
    order_id, _ = pending
    row = {
        "order_id": order_id,
        "payment_id": None,
        "kind": "note",
        "detail": None,
        "actor": None,
        "created_at": datetime(2026, 12, 4, 12, 0),
    }
    with pytest.raises(ValueError, match="naive datetime"):
        write_appended(db.session, audit=[row])
    db.session.rollback()
    count = db.session.execute(
        text("SELECT count(*) FROM order_events WHERE order_id = :id AND kind = 'note'"),
        {"id": order_id},
    ).scalar_one()
    assert count == 0
