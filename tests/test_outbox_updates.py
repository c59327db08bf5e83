"""On PostgreSQL the changed orders and payments are written by the commit's one appended
statement, not by the ORM's flush (`outbox/updates.py`), and the version announced is
the one the database counted, or nothing commits."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm.exc import StaleDataError

from paymentapp import create_app
from paymentapp.extensions import db
from paymentapp.models import Order, OrderStatus, Payment, PaymentStatus
from paymentapp.outbox import updates
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

    def take(session):
        taken.extend(real_take(session))
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
