"""The status snapshot read in one Core statement (`orders/snapshots.py`) is the one
`status_snapshot` builds from the ORM's order and payments, whatever the money did."""

from __future__ import annotations

from datetime import timedelta

import pytest

from paymentapp.models import Order, OrderStatus, Payment, PaymentMethod, PaymentStatus, utcnow
from paymentapp.orders.schemas import status_snapshot
from paymentapp.orders.snapshots import read_snapshot, read_snapshots

T0 = utcnow() - timedelta(minutes=30)


def payment(order: dict, minute: int, **values) -> Payment:
    return Payment(
        order_id=order["id"],
        phone="254712345678",
        amount=values.pop("amount", order["amount"]),
        created_at=T0 + timedelta(minutes=minute),
        **values,
    )


def paid(minute: int, order: dict, amount: int, **values) -> Payment:
    return payment(
        order,
        minute,
        status=PaymentStatus.COMPLETED,
        paid_amount=amount,
        receipt=f"RCP{minute:07d}",
        paid_at=T0 + timedelta(minutes=minute, seconds=20),
        **values,
    )


SHAPES = {
    "no payment": lambda order: [],
    "a prompt on the phone": lambda order: [
        payment(order, 1, checkout_request_id="ws_CO_snap_1", merchant_request_id="29115-1")
    ],
    "a failed prompt, then paid by Paybill, part refunded, part on its way back": lambda o: [
        payment(o, 1, status=PaymentStatus.FAILED, result_code=1032, result_desc="Cancelled"),
        paid(
            2, o, o["amount"], method=PaymentMethod.PAYBILL, refunded_amount=10, refunding_amount=5
        ),
    ],
    "paid twice (a second movement of money)": lambda o: [
        paid(1, o, o["amount"], checkout_request_id="ws_CO_snap_2"),
        paid(2, o, o["amount"], method=PaymentMethod.PAYBILL),
    ],
    "a wrong amount held for review, then one accepted by an admin": lambda o: [
        paid(1, o, 7, held=True, needs_review=True, review_reason="amount_mismatch"),
        paid(2, o, 9, reviewed_at=T0 + timedelta(minutes=3), review_note="ok"),
    ],
    "refunded in full": lambda o: [paid(1, o, o["amount"], refunded_amount=o["amount"])],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_the_core_snapshot_is_the_orm_snapshot(app, db, make_order, shape):
    order = make_order(120)
    for row in SHAPES[shape](order):
        db.session.add(row)
    stored = db.session.get(Order, order["id"])
    stored.status = OrderStatus.PAID if "paid" in shape.lower() else stored.status
    stored.bump_version()
    db.session.commit()
    db.session.expire_all()

    from_orm = status_snapshot(db.session.get(Order, order["id"]))
    db.session.expire_all()
    from_core = read_snapshot(order["id"])

    assert from_core == from_orm
    assert [p["id"] for p in from_core["payments"]] == [
        p.id for p in db.session.get(Order, order["id"]).payments
    ]


def test_several_orders_in_one_statement_and_a_missing_one_left_out(app, db, make_order):
    orders = [make_order(amount) for amount in (10, 20, 30)]
    db.session.add(paid(1, orders[1], 20))
    db.session.commit()

    snapshots = read_snapshots([o["id"] for o in orders] + ["ord_missing", orders[0]["id"]])

    assert sorted(snapshots) == sorted(o["id"] for o in orders)
    assert [snapshots[o["id"]]["amount_due"] for o in orders] == [10, 0, 30]
    assert snapshots[orders[1]["id"]]["payment"]["phone_masked"] != "254712345678"
    assert read_snapshot("ord_missing") is None
