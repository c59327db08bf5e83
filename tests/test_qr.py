"""Pay by QR (Daraja Dynamic QR): the app's `GET /api/orders/<id>/qr.png` asks Daraja (the
HTTP simulator) for a QR of the amount due to the Paybill with the order number as the
account, keeps it per order and amount, and refuses what cannot be paid; the simulator's
image is a real QR, read back here as a phone would; scanning it on the simulated phone
pays the order through the ordinary C2B confirmation. A till gets no QR."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from paymentapp.models import Order
from paymentapp.simulator.models import sim_qr_codes
from paymentapp.simulator.qr import build_payload, parse_payload
from tests.helpers import assert_error, decode_qr, pay_by_paybill
from tests.services import wait_for


def qr(client, order, token=None, **params):
    return client.get(
        f"/api/orders/{order['id']}/qr.png",
        query_string={"token": order["client_token"] if token is None else token, **params},
    )


def generated(db) -> int:
    return db.session.scalar(select(func.count()).select_from(sim_qr_codes))


def test_the_qr_pays_the_amount_due_to_the_paybill_for_the_order(
    app, client, live_server, make_order, db
):
    order = make_order(1450)
    answer = qr(client, order)
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    said = parse_payload(decode_qr(answer.data))
    assert said == {
        "merchant_name": "M-Pesa checkout",
        "ref_no": order["number"],
        "amount": 1450,
        "trx_code": "PB",
        "cpi": app.config["MPESA_C2B_SHORTCODE"],
    }
    # asked of Daraja once per order and amount due
    assert qr(client, order).data == answer.data
    assert generated(db) == 1
    # part of it paid at the Paybill: the next QR asks for the rest
    pay_by_paybill(client, order["number"], 450, "QRPART0001")
    rest = parse_payload(decode_qr(qr(client, order).data))
    assert rest["amount"] == 1000 and generated(db) == 2


def test_scanning_it_on_the_phone_pays_the_order(client, live_server, make_order, db):
    order = make_order(700)
    payload = decode_qr(qr(client, order).data)
    scanned = live_server.http.post(
        f"{live_server.url}/_simulator/api/qr/scan", json={"payload": payload}, timeout=10
    )
    assert scanned.status_code == 202, scanned.text
    assert scanned.json()["payment"]["account"] == order["number"]
    wait_for(
        lambda: db.session.expire_all() or db.session.get(Order, order["id"]).status == "paid",
        "the order paid by the scanned QR",
    )
    assert_error(qr(client, order), 409, "order_not_payable")  # nothing left to pay


def test_what_cannot_be_paid_by_qr_is_a_clear_error(app, client, auth, live_server, make_order, db):
    order = make_order(300)
    assert_error(qr(client, order, token=""), 401, "missing_token")
    assert_error(qr(client, order, token="not-a-token"), 403, "invalid_token")
    cancelled = make_order(200)
    assert client.post(f"/api/orders/{cancelled['id']}/cancel", headers=auth).status_code == 200
    assert_error(qr(client, cancelled), 409, "order_not_payable")
    # M-Pesa refuses: a 502 in the error shape, nothing kept
    live_server.fault(
        "qrcode", 400, {"errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid CPI"}
    )
    error = assert_error(qr(client, order), 502, "mpesa_refused")
    assert "Invalid CPI" in error["message"]
    assert qr(client, order).status_code == 200  # asked again, and answered
    # an answer that is no image is M-Pesa failing, not a broken picture
    live_server.fault("qrcode", 200, {"ResponseCode": "AG_1", "QRCode": "bm90IGEgcG5n"})
    assert_error(qr(client, make_order(120)), 502, "mpesa_unavailable")
    app.config["MPESA_QR"] = False
    assert_error(qr(client, order), 404, "qr_unavailable")


def test_the_status_says_whether_a_qr_is_offered(app, client, make_order):
    order = make_order(100)
    status = client.get(
        f"/api/orders/{order['id']}/status", headers={"X-Order-Token": order["client_token"]}
    ).get_json()
    assert status["paybill"]["qr"] is True
    app.config["MPESA_TRANSACTION_TYPE"] = "CustomerBuyGoodsOnline"  # a till: no account no.
    status = client.get(
        f"/api/orders/{order['id']}/status", headers={"X-Order-Token": order["client_token"]}
    ).get_json()
    assert status["paybill"]["qr"] is False
    assert_error(qr(client, order), 404, "qr_unavailable")


@pytest.mark.parametrize("app_config", [{"QR_RATE_LIMIT": "2 per minute"}])
def test_the_qr_is_rate_limited_per_address(client, live_server, make_order, app_config):
    order = make_order(100)
    assert [qr(client, order).status_code for _ in range(3)] == [200, 200, 429]


def test_the_simulator_checks_the_request_as_daraja_does(app, live_server):
    from paymentapp.mpesa.client import DarajaRefused, get_client

    with pytest.raises(DarajaRefused, match="Invalid CPI"):
        get_client().paybill_qr(merchant_name="Duka", paybill="12", account="A1", amount=10)
    with pytest.raises(DarajaRefused, match="Invalid Amount"):
        get_client().paybill_qr(merchant_name="Duka", paybill="174379", account="A1", amount=0)


def test_a_scan_of_anything_else_is_refused(live_server):
    url = f"{live_server.url}/_simulator/api/qr/scan"
    for payload, says in [
        ("hello", "not an M-Pesa QR code"),
        (
            build_payload(merchant_name="D", ref_no="A", amount=5, trx_code="BG", cpi="5544332"),
            "not BG",
        ),
    ]:
        answer = live_server.http.post(url, json={"payload": payload}, timeout=10)
        assert answer.status_code == 422 and says in answer.json()["error"]["message"]
