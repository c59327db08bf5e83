"""The built-in Daraja simulator behaves like Daraja, over real HTTP."""

import pytest
import requests
from sqlalchemy import select

from paymentapp.models import Order, Payment
from paymentapp.mpesa.client import DarajaClient, eat_timestamp, stk_password
from tests.helpers import pay
from tests.services import wait_for

SHORTCODE = "174379"


@pytest.fixture
def token(app, live_server):
    return DarajaClient(app.config).access_token()


def stk(live_server, token, **overrides):
    timestamp = eat_timestamp()
    from flask import current_app

    body = {
        "BusinessShortCode": SHORTCODE,
        "Password": stk_password(SHORTCODE, current_app.config["MPESA_PASSKEY"], timestamp),
        "Timestamp": timestamp,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1,
        "PartyA": "254708374149",
        "PartyB": SHORTCODE,
        "PhoneNumber": "254708374149",
        "CallBackURL": f"{live_server.url}/callbacks/stk/abc",
        "AccountReference": "ORD-1205",
        "TransactionDesc": "ORD-1205",
        **overrides,
    }
    return requests.post(
        f"{live_server.url}/_simulator/mpesa/stkpush/v1/processrequest",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_accepts_a_valid_push(live_server, token):
    response = stk(live_server, token)
    assert response.status_code == 200
    body = response.json()
    assert body["ResponseCode"] == "0" and body["CheckoutRequestID"].startswith("ws_CO_")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"BusinessShortCode": "600000"}, "Invalid BusinessShortCode"),
        ({"Timestamp": "2021-06-28"}, "Invalid Timestamp"),
        ({"Password": "d3Jvbmc="}, "Wrong credentials"),
        ({"TransactionType": "Pay"}, "Invalid TransactionType"),
        ({"Amount": 0}, "Invalid Amount"),
        ({"Amount": 250001}, "Invalid Amount"),
        ({"Amount": 1.5}, "Invalid Amount"),
        ({"Amount": "ten"}, "Invalid Amount"),
        ({"PhoneNumber": "0712345678"}, "Invalid PhoneNumber"),
        ({"PartyA": "25471234"}, "Invalid PartyA"),
        ({"PartyB": "1"}, "Invalid PartyB"),
        ({"CallBackURL": "https://example.com/mpesa/callback"}, "Invalid CallBackURL"),
        ({"CallBackURL": "https://example.com/cb?query=1"}, "Invalid CallBackURL"),
        ({"CallBackURL": "not a url"}, "Invalid CallBackURL"),
        ({"AccountReference": "ORD-123456789"}, "Invalid AccountReference"),
        ({"TransactionDesc": "fourteen chars"}, "Invalid TransactionDesc"),
    ],
)
def test_refuses_what_daraja_refuses(live_server, token, overrides, message):
    response = stk(live_server, token, **overrides)
    assert response.status_code in (400, 500)
    assert message in response.json()["errorMessage"]


def test_new_token_invalidates_the_previous_one(app, live_server, token):
    DarajaClient(
        {**app.config, "MPESA_BASE_URL": app.config["MPESA_BASE_URL"] + "/"}
    )._fetch_token()
    response = stk(live_server, token)
    assert response.json()["errorCode"] == "404.001.03"


def test_wrong_consumer_credentials(live_server):
    response = requests.get(
        f"{live_server.url}/_simulator/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=("a", "b"),
        timeout=5,
    )
    assert response.status_code == 400 and response.json()["errorCode"] == "400.008.01"


def test_subscriber_lock_while_a_prompt_is_open(live_server, token):
    assert stk(live_server, token).status_code == 200
    second = stk(live_server, token)
    assert second.json()["errorCode"] == "500.001.1001"
    assert "lock subscriber" in second.json()["errorMessage"]


def test_phone_buttons_need_open_prompts(live_server, token):
    checkout = stk(live_server, token).json()["CheckoutRequestID"]
    live_server.press(checkout, "cancel")
    again = requests.post(f"{live_server.url}/_simulator/api/prompts/{checkout}/accept", timeout=5)
    assert again.status_code == 409
    missing = requests.post(f"{live_server.url}/_simulator/api/prompts/ws_CO_x/accept", timeout=5)
    assert missing.status_code == 404
    bad = requests.post(f"{live_server.url}/_simulator/api/prompts/{checkout}/explode", timeout=5)
    assert bad.status_code == 422


def test_phone_page_lists_prompts_with_buttons(client, live_server):
    page = client.get("/_simulator/phone")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for label in (
        "Enter PIN (pay)",
        "Cancel",
        "Insufficient funds",
        "Wrong PIN",
        "Ignore",
        "Pay, lose callback",
    ):
        assert label in html


@pytest.mark.parametrize(
    ("action", "status", "code"),
    [
        ("accept", "completed", 0),
        ("cancel", "cancelled", 1032),
        ("insufficient", "failed", 1),
        ("wrong_pin", "failed", 2001),
    ],
)
def test_each_button_sends_its_callback(client, live_server, make_order, db, action, status, code):
    order = make_order()
    assert pay(client, order, "0712345678").status_code == 202
    live_server.press(live_server.prompt_for(order["number"])["checkout_request_id"], action)
    payment = wait_for(
        lambda: (p := db.session.scalar(select(Payment))).status != "pending" and p,
        "the payment to settle",
        before=db.session.expire_all,
    )
    assert payment.status == status and payment.result_code == code
    prompt = wait_for(
        lambda: (p := live_server.prompt_for(order["number"]))["callback_status"] and p,
        "the simulator to post its callback",
    )
    assert prompt["callback_status"] == "sent: HTTP 200"


@pytest.mark.parametrize("app_config", [{"MPESA_SIMULATOR_PROMPT_TTL_S": 0.5}])
def test_ignored_prompt_expires_with_1037(client, live_server, make_order, db, app_config):
    order = make_order()
    assert pay(client, order, "0712345678").status_code == 202
    checkout = live_server.prompt_for(order["number"])["checkout_request_id"]
    live_server.press(checkout, "ignore")

    def settled():
        live_server.prompts()  # any use of the simulator sweeps expired prompts
        payment = db.session.scalar(select(Payment))
        return payment.status != "pending" and payment

    payment = wait_for(settled, "the prompt to expire", before=db.session.expire_all)
    assert payment.status == "timeout" and payment.result_code == 1037


@pytest.mark.parametrize(
    "app_config", [{"MPESA_SIMULATOR_AUTO": "accept", "MPESA_SIMULATOR_AUTO_DELAY_S": 0.2}]
)
def test_auto_mode_pays_unattended(client, live_server, make_order, db, app_config):
    order = make_order()
    assert pay(client, order, "0712345678").status_code == 202
    wait_for(
        lambda: db.session.get(Order, order["id"]).status == "paid",
        "the order to be paid",
        before=db.session.expire_all,
    )


def test_duplicate_callback_resend_is_idempotent(client, live_server, make_order, db):
    order = make_order()
    assert pay(client, order, "0712345678").status_code == 202
    checkout = live_server.prompt_for(order["number"])["checkout_request_id"]
    live_server.press(checkout, "accept")
    stored = wait_for(
        lambda: (o := db.session.get(Order, order["id"])).status == "paid" and o,
        "the order to be paid",
        before=db.session.expire_all,
    )
    version = stored.version
    requests.post(
        f"{live_server.url}/_simulator/api/prompts/{checkout}/resend-callback", timeout=10
    )
    db.session.expire_all()
    assert db.session.get(Order, order["id"]).version == version


def test_simulator_is_not_served_outside_simulator_mode(database_url):
    from paymentapp import create_app
    from tests.helpers import LIVE, base_env

    app = create_app(
        {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"},
        env={
            **LIVE,
            **base_env(database_url),
            "MPESA_ENV": "sandbox",
            "ALLOW_SQLITE_IN_PRODUCTION": "1",
        },
    )
    client = app.test_client()
    assert client.get("/_simulator/phone").status_code == 404
    assert client.get("/_simulator/oauth/v1/generate").status_code == 404


def test_simulator_rebuilds_tables_of_an_older_layout(app, db):
    from sqlalchemy import text

    from paymentapp.simulator import models

    db.session.execute(text("DROP TABLE IF EXISTS sim_prompts"))
    db.session.execute(text("CREATE TABLE sim_prompts (checkout_request_id VARCHAR(64))"))
    db.session.commit()
    models._ready_engines.clear()
    models.ensure_tables()
    columns = {c["name"] for c in db.inspect(db.engine).get_columns("sim_prompts")}
    assert {"transaction_type", "party_b", "callback_url"} <= columns
