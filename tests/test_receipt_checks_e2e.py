"""A receipt entered by hand (checked with M-Pesa's Transaction Status) and the same
payment's late Paybill confirmation, at the same moment, on gunicorn with 2 workers,
PostgreSQL and the HTTP simulator: whatever the order, the money counts once, the check
ends confirmed, and nothing answers 5xx."""

from __future__ import annotations

import pytest

from tests import services
from tests.e2e import (
    OrderGate,
    c2b_url,
    create_admin,
    create_order,
    order_details,
    race,
    running_stack,
)
from tests.helpers import c2b_confirmation

pytestmark = pytest.mark.e2e

AMOUNT = 800


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # receipt checks are on (the simulator's initiator); nothing else is changed
    with running_stack(tmp_path_factory.mktemp("receipts")) as stack:
        admin = create_admin(stack, "ops", "receipts correct horse")
        try:
            yield stack, admin
        finally:
            admin.close()


def lost_paybill_payment(stack, order: dict) -> str:
    """A Paybill payment M-Pesa took whose confirmation never came: its receipt."""
    paid = stack.http.post(
        f"{stack.url}/_simulator/api/c2b/pay",
        json={"account": order["number"], "amount": AMOUNT, "copies": 0},
        timeout=10,
    )
    assert paid.status_code == 202, paid.text
    return paid.json()["payment"]["trans_id"]


@pytest.mark.parametrize("hand_first", [True, False], ids=["hand-first", "confirmation-first"])
def test_a_receipt_checked_with_mpesa_and_its_confirmation_count_once(world, hand_first):
    stack, admin = world
    order = create_order(stack, AMOUNT)
    receipt = lost_paybill_payment(stack, order)
    body = c2b_confirmation(order["number"], f"{AMOUNT}.00", receipt)
    hand = (
        "hand entry",
        lambda: admin.post(
            f"/admin/orders/{order['id']}/payments",
            receipt=receipt,
            amount=str(AMOUNT),
            note="customer showed the SMS",
        ),
    )
    confirmation = ("paybill", lambda: stack.http.post(c2b_url(stack), json=body, timeout=30))
    groups = [[hand], [confirmation]] if hand_first else [[confirmation], [hand]]
    gate = OrderGate(stack, order["id"])
    try:
        sent = race(gate, *groups)
    finally:
        gate.close()
    for item in sent:
        assert item.error is None, f"{item.label}: {item.error!r}"
        assert item.response.status_code < 500, item.response.text[:500]

    entered = next(item.response for item in sent if item.label == "hand entry")
    if entered.status_code == 422:  # the confirmation was in first: known, refused
        assert "already recorded" in entered.text
    else:  # a check, answered by M-Pesa: confirmed, its money already counted or not
        assert entered.status_code == 302, entered.text[:500]
        page = f"{stack.url}/admin/orders/{order['id']}"
        services.wait_for(
            lambda: "confirmed by M-Pesa" in admin.http.get(page, timeout=10).text,
            "M-Pesa's answer",
            30,
        )
    final = order_details(stack, order["id"])
    assert final["status"] == "paid" and final["amount_paid"] == AMOUNT, final
    assert [p["receipt"] for p in final["payments"]] == [receipt], final
    log = stack.server.log()
    assert "Traceback" not in log and "deadlock detected" not in log, log[-3000:]
