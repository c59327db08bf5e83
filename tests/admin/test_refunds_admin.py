"""Refunds through M-Pesa in the dashboard: the order page's "Refund through M-Pesa"
(Daraja's Reversal of the whole payment), what it says while the result is on its way
and once it came, and the timeline."""

from tests.helpers import csrf_from, fresh_session, paid
from tests.services import wait_for


def test_an_admin_refunds_a_payment_through_mpesa(
    admin_client, client, auth, live_server, make_order
):
    order = paid(client, auth, live_server, make_order, 320)
    payment_id = order["payments"][0]["id"]
    page = admin_client.get(f"/admin/orders/{order['id']}").get_data(as_text=True)
    assert f'action="/admin/payments/{payment_id}/reverse"' in page
    assert "M-Pesa reverses the whole payment: KES 320 back to the customer" in page
    assert f'id="reverse-amount-{payment_id}"' in page and 'value="320"' in page  # B2C on

    path = f"/admin/orders/{order['id']}"
    answer = admin_client.post(
        f"/admin/payments/{payment_id}/reverse",
        data={
            "reason": "fraudulent",
            "note": "card testing",
            "csrf_token": csrf_from(admin_client, path),
        },
    )
    assert answer.status_code == 302
    wait_for(
        lambda: (
            fresh_session()
            or client.get(f"/api/orders/{order['id']}/refunds", headers=auth).get_json()["refunds"][
                0
            ]["status"]
            == "succeeded"
        ),
        "the refund",
    )
    html = admin_client.get(path).get_data(as_text=True)
    assert "Refunded <strong>KES 320</strong> through M-Pesa" in html
    assert f'action="/admin/payments/{payment_id}/reverse"' not in html  # nothing left
    assert "refund of KES 320 through M-Pesa requested (fraudulent): card testing" in html
    assert "M-Pesa took the reversal of KES 320" in html
    assert "M-Pesa gave back KES 320" in html


def test_a_reversal_without_a_reason_is_refused_on_the_page(
    admin_client, client, auth, live_server, make_order
):
    order = paid(client, auth, live_server, make_order, 90)
    payment_id = order["payments"][0]["id"]
    path = f"/admin/orders/{order['id']}"
    answer = admin_client.post(
        f"/admin/payments/{payment_id}/reverse",
        data={"reason": "because", "csrf_token": csrf_from(admin_client, path)},
    )
    assert answer.status_code == 422
    assert "Not sent: correct the marked fields." in answer.get_data(as_text=True)
    assert client.get(f"/api/orders/{order['id']}/refunds", headers=auth).get_json() == {
        "refunds": []
    }


def test_an_admin_refunds_part_of_a_payment_by_b2c_then_the_rest(
    admin_client, client, auth, live_server, make_order
):
    order = paid(client, auth, live_server, make_order, 400)
    payment_id = order["payments"][0]["id"]
    path = f"/admin/orders/{order['id']}"
    refunds = f"/api/orders/{order['id']}/refunds"

    def reverse(**fields):
        data = {"reason": "requested_by_customer", **fields}
        return admin_client.post(
            f"/admin/payments/{payment_id}/reverse",
            data={**data, "csrf_token": csrf_from(admin_client, path)},
        )

    bad = reverse(amount="lots")
    assert bad.status_code == 422 and "Whole shillings" in bad.get_data(as_text=True)
    too_much = reverse(amount="401")
    assert too_much.status_code == 302
    assert "more than is left to refund" in admin_client.get(path).get_data(as_text=True)
    assert reverse(amount="150").status_code == 302
    wait_for(
        lambda: (
            fresh_session()
            or client.get(refunds, headers=auth).get_json()["refunds"][0]["status"] == "succeeded"
        ),
        "the B2C refund",
    )
    html = admin_client.get(path).get_data(as_text=True)
    assert "by B2C to 2547•••••678 requested" in html and "M-Pesa took the B2C payment" in html
    assert "paid to the customer's phone by B2C: at most KES 250" in html  # the rest
    assert f'id="reverse-phone-{payment_id}"' not in html  # an STK payment's own phone


def test_without_b2c_only_the_whole_payment_is_offered(
    app, admin_client, client, auth, live_server, make_order
):
    app.config["MPESA_B2C_SHORTCODE"] = ""
    order = paid(client, auth, live_server, make_order, 330)
    payment_id = order["payments"][0]["id"]
    page = admin_client.get(f"/admin/orders/{order['id']}").get_data(as_text=True)
    assert "Refund KES 330" in page and f'id="reverse-amount-{payment_id}"' not in page


def test_a_paybill_payment_is_refunded_by_b2c_to_the_phone_the_admin_types(
    admin_client, client, auth, live_server, make_order
):
    order = make_order(500)
    answer = live_server.http.post(
        f"{live_server.url}/_simulator/api/c2b/pay",
        json={"account": order["number"], "amount": 500},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    shown = f"/api/orders/{order['id']}"
    wait_for(
        lambda: fresh_session() or client.get(shown, headers=auth).get_json()["status"] == "paid",
        "paid",
    )
    payment_id = client.get(shown, headers=auth).get_json()["payments"][0]["id"]
    path = f"/admin/orders/{order['id']}"
    assert f'id="reverse-phone-{payment_id}"' in admin_client.get(path).get_data(as_text=True)

    def reverse(**fields):
        data = {"reason": "overpayment", "amount": "200", **fields}
        return admin_client.post(
            f"/admin/payments/{payment_id}/reverse",
            data={**data, "csrf_token": csrf_from(admin_client, path)},
        )

    missing = reverse()
    assert missing.status_code == 422
    assert "give the phone to refund to" in missing.get_data(as_text=True)
    assert f'id="reverse-phone-{payment_id}-error"' in missing.get_data(as_text=True)
    assert reverse(phone="0712 000 111").status_code == 302
    refunds = f"/api/orders/{order['id']}/refunds"
    done = wait_for(
        lambda: (
            fresh_session()
            or (r := client.get(refunds, headers=auth).get_json()["refunds"][0])["status"]
            == "succeeded"
            and r
        ),
        "the B2C refund",
    )
    assert done["method"] == "b2c" and done["phone"] == "2547•••••111"
