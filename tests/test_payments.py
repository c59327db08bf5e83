"""Starting payments: STK Push through the real HTTP simulator, and every refusal."""

import threading

import pytest
import requests
from sqlalchemy import func, select

from paymentapp.models import Order, Payment
from tests.helpers import assert_error, pay
from tests.services import wait_for


def count_payments(db) -> int:
    return db.session.scalar(select(func.count()).select_from(Payment))


def test_payment_sends_stk_push_with_daraja_fields(client, live_server, make_order, db):
    order = make_order(1500)
    response = pay(client, order, "+254 712 345 678")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "pending" and body["amount"] == 1500
    assert body["phone_masked"] == "2547•••••678" and "phone" not in body
    payment = db.session.get(Payment, body["id"])
    assert payment.phone == "254712345678"
    assert payment.checkout_request_id.startswith("ws_CO_") and payment.merchant_request_id
    prompt = live_server.prompt_for(order["number"])
    assert prompt["checkout_request_id"] == payment.checkout_request_id
    assert prompt["amount"] == 1500 and prompt["account_reference"] == order["number"]
    assert len(prompt["transaction_desc"]) <= 13
    assert prompt["transaction_type"] == "CustomerPayBillOnline"
    assert db.session.get(Order, order["id"]).version == 2  # payment started


@pytest.mark.parametrize(
    "phone",
    [
        "0712345678",
        "0712 345 678",
        "+254712345678",
        "254712345678",
        "0112 345 678",
        " 254-110-345-678 ",
    ],
)
def test_accepted_phone_formats(client, live_server, make_order, phone):
    assert pay(client, make_order(), phone).status_code == 202


@pytest.mark.parametrize(
    "phone",
    [
        "020 123 4567",
        "071234567",
        "07123456789",
        "07I2345678",
        "",
        None,
        712345678.0,
        "+1 415 555 0100",
        "0812345678",
        "2547123456789",
        "x" * 500,
    ],
)
def test_bad_phones_are_422_with_example(client, live_server, make_order, db, phone):
    order = make_order()
    error = assert_error(pay(client, order, phone), 422, "invalid_phone")
    assert "0712 345 678" in error["fields"]["phone"]
    assert count_payments(db) == 0
    assert live_server.prompts() == []


def test_paid_and_cancelled_orders_refuse_payment(client, live_server, make_order, db):
    order = make_order()
    stored = db.session.get(Order, order["id"])
    stored.status = "paid"
    db.session.commit()
    assert_error(pay(client, order), 409, "order_paid")
    stored.status = "cancelled"
    db.session.commit()
    assert_error(pay(client, order), 409, "order_cancelled")
    assert count_payments(db) == 0


def test_second_payment_while_one_is_pending_returns_it(client, live_server, make_order, db):
    order = make_order()
    first = pay(client, order).get_json()
    response = pay(client, order, "0722 000 000")
    body = response.get_json()
    assert response.status_code == 409 and body["error"]["code"] == "payment_pending"
    assert body["payment"]["id"] == first["id"]
    assert count_payments(db) == 1


def test_concurrent_double_click_sends_exactly_one_push(client, live_server, make_order, db):
    order = make_order()
    url = f"{live_server.url}/api/orders/{order['id']}/payments"
    start, statuses = threading.Barrier(6), []

    def click():
        start.wait()
        statuses.append(
            requests.post(
                url,
                json={"phone": "0712345678"},
                timeout=30,
                headers={"X-Order-Token": order["client_token"]},
            ).status_code
        )

    threads = [threading.Thread(target=click) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [202] + [409] * 5
    assert count_payments(db) == 1
    assert len(live_server.prompts()) == 1


def test_payment_needs_the_orders_token(client, live_server, make_order, db):
    order, other = make_order(), make_order()
    assert_error(
        client.post(f"/api/orders/{order['id']}/payments", json={"phone": "0712345678"}),
        401,
        "missing_token",
    )
    assert_error(pay(client, order, token=other["client_token"]), 403, "invalid_token")
    assert count_payments(db) == 0


def test_payment_body_errors(client, live_server, make_order, db):
    order = make_order()
    headers = {"X-Order-Token": order["client_token"]}
    url = f"/api/orders/{order['id']}/payments"
    assert_error(client.post(url, data="phone=07", headers=headers), 415)
    assert_error(
        client.post(url, data="{", headers={**headers, "Content-Type": "application/json"}), 400
    )
    error = assert_error(
        client.post(url, json={"phone": "0712345678", "amount": 1}, headers=headers), 422
    )
    assert "amount" in error["fields"]
    assert count_payments(db) == 0


def test_daraja_refusal_is_502_with_its_message_and_payment_failed(
    client, live_server, make_order, db
):
    order = make_order()
    live_server.fault(
        "stkpush",
        400,
        {
            "requestId": "1",
            "errorCode": "400.002.02",
            "errorMessage": "Bad Request - Invalid PartyB",
        },
    )
    error = assert_error(pay(client, order), 502, "mpesa_refused")
    assert error["message"] == "Bad Request - Invalid PartyB"
    payment = db.session.scalar(select(Payment))
    assert payment.status == "failed" and payment.result_desc == "Bad Request - Invalid PartyB"
    assert db.session.get(Order, order["id"]).version == 3  # started, then failed
    # a refused push did not reach the phone: trying again right away is allowed
    assert pay(client, order).status_code == 202


def test_spike_arrest_is_502_busy(client, live_server, make_order, db):
    live_server.fault(
        "stkpush",
        500,
        {"requestId": "1", "errorCode": "500.003.02", "errorMessage": "Spike arrest violation"},
    )
    error = assert_error(pay(client, make_order()), 502, "mpesa_busy")
    assert "try again" in error["message"]
    assert db.session.scalar(select(Payment)).status == "failed"
    # back off: the next push is not sent to Daraja until the pause is over
    response = pay(client, make_order(), "0722000000")
    assert_error(response, 429, "mpesa_busy")
    assert 1 <= int(response.headers["Retry-After"]) <= 10
    assert count_payments(db) == 1
    assert len(live_server.prompts()) == 0


def test_daraja_subscriber_lock_is_reported(client, live_server, make_order):
    live_server.fault(
        "stkpush",
        500,
        {
            "requestId": "1",
            "errorCode": "500.001.1001",
            "errorMessage": "Unable to lock subscriber, a "
            "transaction is already in process for the current "
            "subscriber",
        },
    )
    assert_error(pay(client, make_order()), 502, "phone_busy")


def test_gateway_error_page_is_502_unavailable(client, live_server, make_order, db):
    live_server.fault("stkpush", 503, "<html>Service Unavailable</html>")
    assert_error(pay(client, make_order()), 502, "mpesa_unavailable")
    assert db.session.scalar(select(Payment)).status == "failed"


@pytest.mark.parametrize("app_config", [{"MPESA_READ_TIMEOUT_S": 0.5}])
def test_push_timeout_keeps_payment_pending_without_checkout_id(
    client, live_server, make_order, db, app_config
):
    live_server.fault("stkpush", 200, {"ResponseCode": "0"}, delay_s=1.5)
    response = pay(client, make_order())
    assert response.status_code == 202
    payment = db.session.scalar(select(Payment))
    assert payment.status == "pending" and payment.checkout_request_id is None


def test_phone_with_an_open_prompt_on_another_order_is_429(client, live_server, make_order):
    pay(client, make_order())
    answer = pay(client, make_order())
    error = assert_error(answer, 429, "prompt_open")
    assert "already open" in error["message"]
    assert answer.headers["Retry-After"] == "5"  # not a fixed wait: until it is settled


def pay_and_cancel(client, live_server, order, db) -> None:
    """Start a payment, press Cancel on the phone, and wait until its callback is applied."""
    pay(client, order)
    live_server.press(live_server.prompt_for(order["number"])["checkout_request_id"], "cancel")
    wait_for(
        lambda: db.session.scalar(select(Payment)).status == "cancelled",
        "the payment to be cancelled",
        before=db.session.expire_all,
    )


def test_retry_right_after_cancel_waits_for_the_cooldown(client, live_server, make_order, db):
    order = make_order()
    pay_and_cancel(client, live_server, order, db)
    assert_error(pay(client, order), 429, "phone_busy")


@pytest.mark.parametrize("app_config", [{"PAYMENT_PHONE_COOLDOWN_S": 0}])
def test_retry_after_cancel_sends_a_new_prompt(client, live_server, make_order, db, app_config):
    order = make_order()
    pay_and_cancel(client, live_server, order, db)
    assert pay(client, order).status_code == 202
    assert count_payments(db) == 2


@pytest.mark.parametrize(
    "app_env_extra",
    [{"MPESA_TRANSACTION_TYPE": "CustomerBuyGoodsOnline", "MPESA_PARTY_B": "5544332"}],
)
def test_buy_goods_till_mode(request, app_env, app_env_extra):
    app_env.update(app_env_extra)
    client, live_server = request.getfixturevalue("client"), request.getfixturevalue("live_server")
    order = request.getfixturevalue("make_order")()
    assert pay(client, order).status_code == 202
    prompt = live_server.prompt_for(order["number"])
    assert prompt["transaction_type"] == "CustomerBuyGoodsOnline"
    assert prompt["party_b"] == "5544332"


@pytest.fixture
def dead_redis(app_env):
    from tests import services

    app_env["REDIS_URL"] = f"redis://127.0.0.1:{services.free_port()}/0"


def test_payments_keep_working_while_redis_is_down(dead_redis, client, live_server, make_order, db):
    """Redis only shares the Daraja token and carries emits; neither may stop a payment."""
    order = make_order()
    response = pay(client, order)
    assert response.status_code == 202, response.get_json()
    live_server.press(live_server.prompt_for(order["number"])["checkout_request_id"], "accept")
    wait_for(
        lambda: db.session.get(Order, order["id"]).status == "paid",
        "the order to be paid",
        before=db.session.expire_all,
    )
