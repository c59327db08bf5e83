"""The dashboard shows a refund made through M-Pesa: the order page's refunded amount
and its timeline (requested, pending, succeeded)."""

from tests.helpers import pay
from tests.services import wait_for


def test_the_order_page_shows_a_reversal_and_its_timeline(
    admin_client, client, auth, live_server, make_order
):
    order = make_order(320)
    assert pay(client, order).status_code == 202
    live_server.press(live_server.open_prompt(order["number"])["checkout_request_id"], "accept")
    wait_for(
        lambda: (
            client.get(f"/api/orders/{order['id']}", headers=auth).get_json()["status"] == "paid"
        ),
        "the order paid",
    )
    answer = client.post(
        f"/api/orders/{order['id']}/refunds", json={"reason": "fraudulent"}, headers=auth
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    wait_for(
        lambda: (
            client.get(f"/api/orders/{order['id']}/refunds", headers=auth).get_json()["refunds"][0][
                "status"
            ]
            == "succeeded"
        ),
        "the refund",
    )
    page = admin_client.get(f"/admin/orders/{order['id']}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "refund of KES 320 through M-Pesa requested (fraudulent)" in html
    assert "M-Pesa took the reversal of KES 320" in html
    assert "M-Pesa gave back KES 320" in html
