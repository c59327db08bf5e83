"""The simulator's Paybill (C2B) side, over real HTTP: Register URL like Daraja's, Pay Bill
payments posted in Daraja's format to the app's registered URLs, duplicates, validation,
and the C2B twins of STK payments in either order (docs/payments.md, "The Daraja
simulator")."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import select

from paymentapp.models import CallbackRecord, Order, utcnow
from paymentapp.mpesa.client import EAT, DarajaClient, DarajaError
from tests import services
from tests.helpers import TEST_CALLBACK_TOKEN, assert_paid_once, pay
from tests.services import wait_for

RECEIPT = re.compile(r"S[A-HJ-NP-Z0-9]{9}")  # the STK receipts' alphabet (no I, no O)
MASKED = re.compile(r"2547 \*{5} \d{3}")


class C2B:
    """The simulator's Paybill test API of the app `live_server` serves."""

    def __init__(self, live_server):
        self.live = live_server
        self.url = live_server.url + "/_simulator"

    def state(self, **params) -> dict:
        response = requests.get(f"{self.url}/api/c2b", params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def pay_raw(self, **fields) -> requests.Response:
        return requests.post(f"{self.url}/api/c2b/pay", json=fields, timeout=10)

    def pay(self, **fields) -> dict:
        response = self.pay_raw(**fields)
        assert response.status_code == 202, response.text
        return response.json()

    def settle(self, trans_id: str) -> dict:
        """The payment once the simulator is done posting it."""

        def done():
            payments = self.state(trans_id=trans_id)["payments"]
            return payments and payments[0]["done"] and payments[0]

        return wait_for(done, f"Paybill payment {trans_id} to be posted", timeout=30, interval=0.1)

    def settings(self, **values) -> requests.Response:
        return requests.post(f"{self.url}/api/c2b/settings", json=values, timeout=10)

    def register(self, token: str, **overrides) -> requests.Response:
        from flask import current_app

        from paymentapp.simulator.c2b import app_urls

        confirmation, validation = app_urls(current_app.config)
        body = {
            "ShortCode": current_app.config["MPESA_C2B_SHORTCODE"],
            "ResponseType": "Completed",
            "ConfirmationURL": confirmation,
            "ValidationURL": validation,
            **overrides,
        }
        return requests.post(
            f"{self.url}/mpesa/c2b/v2/registerurl",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )


def join_background() -> None:
    """Wait for the simulator's background posts (STK callbacks, their twins, Paybill)."""
    for task in threading.enumerate():
        if task.name.endswith(("(post_callback)", "(post_c2b)", "(answer_later)")):
            task.join(30)


@pytest.fixture
def sim(live_server):
    yield C2B(live_server)
    join_background()  # before live_server's teardown disposes the database engine


@pytest.fixture
def token(app, sim):
    return DarajaClient(app.config).access_token()


def records(db, kind: str | None = None) -> list[CallbackRecord]:
    db.session.expire_all()
    stmt = select(CallbackRecord).order_by(CallbackRecord.id)
    if kind:
        stmt = stmt.where(CallbackRecord.kind == kind)
    return list(db.session.scalars(stmt))


def paid_order(db, order_id: str) -> Order:
    return wait_for(
        lambda: (o := db.session.get(Order, order_id)).status == "paid" and o,
        "the order to be paid",
        before=db.session.expire_all,
    )


# -- Register URL ----------------------------------------------------------------------------


def test_register_url_answers_in_darajas_words_and_stores_the_urls(app, sim, token):
    response = sim.register(token)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"OriginatorCoversationID", "ResponseCode", "ResponseDescription"}
    assert body["ResponseCode"] == "0" and body["ResponseDescription"] == "Success"
    assert re.fullmatch(r"\d+-\d+-1", body["OriginatorCoversationID"])
    [stored] = sim.state()["registrations"]
    base = f"{app.config['PUBLIC_BASE_URL']}/callbacks/c2b"
    assert stored["shortcode"] == app.config["MPESA_C2B_SHORTCODE"]
    assert stored["confirmation_url"] == f"{base}/confirmation/{TEST_CALLBACK_TOKEN}"
    assert stored["validation_url"] == f"{base}/validation/{TEST_CALLBACK_TOKEN}"
    assert stored["response_type"] == "Completed" and stored["automatic"] is False
    # registering again replaces them (as the sandbox allows)
    assert sim.register(token, ResponseType="Cancelled").status_code == 200
    [again] = sim.state()["registrations"]
    assert again["response_type"] == "Cancelled"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ShortCode": "600000"}, "Invalid ShortCode"),
        ({"ShortCode": None}, "Invalid ShortCode"),
        ({"ResponseType": "completed"}, "Invalid ResponseType"),
        ({"ResponseType": "Accepted"}, "Invalid ResponseType"),
        ({"ResponseType": None}, "Invalid ResponseType"),
        ({"ConfirmationURL": "https://example.com/mpesa/confirm"}, "Invalid ConfirmationURL"),
        ({"ConfirmationURL": "https://example.com/c?query=1"}, "Invalid ConfirmationURL"),
        ({"ConfirmationURL": None}, "Invalid ConfirmationURL"),
        ({"ValidationURL": "not a url"}, "Invalid ValidationURL"),
        ({"ValidationURL": "ftp://example.com/v"}, "Invalid ValidationURL"),
        ({"ValidationURL": "https://safaricom.example.com/v"}, "Invalid ValidationURL"),
    ],
)
def test_register_url_refuses_what_daraja_refuses(sim, token, overrides, message):
    response = sim.register(token, **overrides)
    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.002.02"
    assert response.json()["errorMessage"] == f"Bad Request - {message}"
    assert sim.state()["registrations"] == []


def test_register_url_needs_a_valid_token_and_json(sim, token):
    assert sim.register("not-a-token").json()["errorCode"] == "404.001.03"
    response = requests.post(
        f"{sim.url}/mpesa/c2b/v2/registerurl",
        data="not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400 and "Invalid JSON" in response.json()["errorMessage"]


def test_the_register_c2b_command_registers_through_the_real_client(app, sim):
    result = app.test_cli_runner().invoke(
        args=["mpesa", "register-c2b", "--response-type", "Cancelled"]
    )
    assert result.exit_code == 0, result.output
    assert "OriginatorCoversationID" in result.output
    [stored] = sim.state()["registrations"]
    assert stored["response_type"] == "Cancelled" and stored["automatic"] is False


def test_a_queued_fault_answers_the_next_registration(app, sim):
    sim.live.fault("registerurl", 500, {"errorCode": "500.003.1001", "errorMessage": "boom"})
    from paymentapp.simulator.c2b import app_urls

    confirmation, validation = app_urls(app.config)
    with pytest.raises(DarajaError):
        DarajaClient(app.config).register_c2b_urls(
            shortcode=app.config["MPESA_C2B_SHORTCODE"],
            confirmation_url=confirmation,
            validation_url=validation,
            response_type="Completed",
        )
    assert sim.state()["registrations"] == []


# -- Pay Bill --------------------------------------------------------------------------------


def test_paybill_pays_an_order_typed_loosely_in_darajas_format(app, sim, make_order, db):
    order = make_order(1450)
    typed = "ord " + order["number"][4:]
    answer = sim.pay(account=typed, amount=1450, msisdn="254712345126")
    assert answer["registered_automatically"] is True  # nothing was registered: the app's own
    assert answer["registration"]["automatic"] is True
    payment = sim.settle(answer["payment"]["trans_id"])
    assert payment["state"] == "completed" and payment["result_code"] == "0"
    assert payment["confirmation_status"] == "sent: HTTP 200"
    assert payment["validation_status"] == "not asked (validation is off)"
    stored = paid_order(db, order["id"])
    [paid] = stored.payments
    assert paid.method == "paybill" and paid.receipt == payment["trans_id"]
    [record] = records(db, "c2b")
    body = json.loads(record.body)
    assert body["TransactionType"] == "Pay Bill"
    assert RECEIPT.fullmatch(body["TransID"])
    assert body["TransAmount"] == "1450.00"
    assert body["BillRefNumber"] == typed  # exactly as typed
    assert body["BusinessShortCode"] == app.config["MPESA_C2B_SHORTCODE"]
    assert body["MSISDN"] == "2547 ***** 126" and MASKED.fullmatch(body["MSISDN"])
    sent_at = datetime.strptime(body["TransTime"], "%Y%m%d%H%M%S").replace(tzinfo=EAT)
    assert abs(sent_at - utcnow()) < timedelta(minutes=1)  # East Africa Time
    assert set(body) >= {"InvoiceNumber", "OrgAccountBalance", "ThirdPartyTransID", "FirstName"}
    assert records(db, "c2b_validation") == []  # validation is off
    # registered now: the next payment does not register again
    later = sim.pay(account="nobody", amount=5)
    assert later["registered_automatically"] is False
    assert_paid_once(db)


def test_duplicate_confirmations_are_counted_once(sim, make_order, db):
    order = make_order(800)
    answer = sim.pay(account=order["number"].lower(), amount=800, copies=3)
    payment = sim.settle(answer["payment"]["trans_id"])
    assert payment["confirmation_status"] == "sent 3×: HTTP 200, 200, 200"
    stored = paid_order(db, order["id"])
    assert len(stored.payments) == 1 and stored.amount_paid == 800
    assert sorted(r.outcome for r in records(db, "c2b")) == ["applied", "duplicate", "duplicate"]
    assert_paid_once(db)


def test_validation_rejects_with_darajas_codes_and_then_nothing_is_confirmed(
    app, sim, make_order, db
):
    app.config.update(MPESA_C2B_VALIDATION=True, MPESA_C2B_MIN_AMOUNT=100)
    order = make_order(500)
    unknown = sim.settle(sim.pay(account="ORD-99999", amount=500)["payment"]["trans_id"])
    assert unknown["state"] == "rejected" and unknown["result_code"] == "C2B00012"
    assert unknown["result_desc"] == "invalid account number"
    assert unknown["confirmation_status"] is None
    small = sim.settle(sim.pay(account=order["number"], amount=50)["payment"]["trans_id"])
    assert small["state"] == "rejected" and small["result_code"] == "C2B00013"
    good = sim.settle(sim.pay(account=order["number"], amount=500)["payment"]["trans_id"])
    assert good["state"] == "completed" and good["validation_status"] == "accepted (ResultCode 0)"
    paid_order(db, order["id"])
    assert len(records(db, "c2b_validation")) == 3 and len(records(db, "c2b")) == 1
    assert_paid_once(db)


@pytest.mark.parametrize(
    ("response_type", "state"), [("Completed", "completed"), ("Cancelled", "rejected")]
)
def test_a_validation_url_that_does_not_answer_follows_the_response_type(
    app, sim, token, make_order, db, response_type, state
):
    app.config["MPESA_C2B_VALIDATION"] = True
    dead = f"http://127.0.0.1:{services.free_port()}/callbacks/c2b/validation/x"
    assert sim.register(token, ResponseType=response_type, ValidationURL=dead).ok
    order = make_order(300)
    payment = sim.settle(sim.pay(account=order["number"], amount=300)["payment"]["trans_id"])
    assert payment["state"] == state
    assert f"as ResponseType {response_type} says" in payment["validation_status"]
    if state == "completed":
        paid_order(db, order["id"])
    else:
        assert records(db, "c2b") == [] and db.session.get(Order, order["id"]).status == "pending"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": 250_001}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"copies": -1}, "copies"),
        ({"copies": 11}, "copies"),
        ({"account": "x" * 65}, "account"),
        ({"account": 12}, "account"),
        ({"shortcode": "12"}, "shortcode"),
        ({"shortcode": "999999"}, "shortcode"),  # no URLs registered for it
        ({"msisdn": "0712345678"}, "msisdn"),
        ({"trans_id": ""}, "trans_id"),
        ({"overrides": [1]}, "overrides"),
        ({"pin": "12"}, "pin"),
        ({"pin": "1234", "account": "  "}, "account"),  # the phone needs an account number
    ],
)
def test_the_pay_api_refuses_bad_fields(sim, fields, field):
    response = sim.pay_raw(**{"account": "ORD-1", "amount": 10, **fields})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "simulator_error" and field in error["fields"]
    assert sim.state()["payments"] == []


def test_settings_api(sim):
    assert sim.state()["settings"] == {
        "stk_twins": "after",
        "initiator_results": "result",
        "initiator_state": "ok",
        "b2c_funds": "enough",
    }
    for value in ("off", "before", "after"):
        response = sim.settings(stk_twins=value)
        assert response.status_code == 200 and response.json()["stk_twins"] == value
    for value in ("timeout", "result"):
        response = sim.settings(initiator_results=value)
        assert response.status_code == 200 and response.json()["initiator_results"] == value
    for value in ("insufficient", "enough"):
        response = sim.settings(b2c_funds=value)
        assert response.status_code == 200 and response.json()["b2c_funds"] == value
    for value in ("no_role", "locked", "ok"):
        response = sim.settings(initiator_state=value)
        assert response.status_code == 200 and response.json()["initiator_state"] == value
    assert sim.settings(stk_twins="sometimes").status_code == 422
    assert sim.settings(initiator_results="never").status_code == 422
    assert sim.settings(colour="green").status_code == 422
    assert sim.settings().status_code == 422


def test_trans_ids_are_unique_across_stk_receipts_and_c2b(app, sim, monkeypatch):
    from sqlalchemy import insert

    from paymentapp.extensions import db
    from paymentapp.simulator import models

    db.session.execute(
        insert(models.sim_prompts).values(
            checkout_request_id="ws_CO_1",
            merchant_request_id="1-1-1",
            phone="254712345678",
            amount=1,
            account_reference="ORD-1",
            transaction_desc="ORD-1",
            callback_url="http://127.0.0.1/cb",
            transaction_type="CustomerPayBillOnline",
            party_b="174379",
            state="answered",
            receipt="SAAAAAAAAA",
            send_callback=True,
            created_at=utcnow(),
            expires_at=utcnow(),
        )
    )
    db.session.commit()
    taken = iter("A" * 9 + "B" * 9)
    monkeypatch.setattr(models.secrets, "choice", lambda alphabet: next(taken))
    assert models.new_receipt() == "SBBBBBBBBB"  # SAAAAAAAAA is an STK receipt already


# -- STK twins -------------------------------------------------------------------------------


def _stk_accept(client, sim, order) -> dict:
    assert pay(client, order, "0712345678").status_code == 202
    checkout = sim.live.prompt_for(order["number"])["checkout_request_id"]
    return sim.live.press(checkout, "accept")


@pytest.mark.parametrize("twin_order", ["before", "after"])
def test_an_stk_payment_and_its_c2b_twin_are_one_payment_in_either_order(
    client, sim, token, make_order, db, twin_order
):
    assert sim.register(token).ok
    assert sim.settings(stk_twins=twin_order).ok
    order = make_order(450)
    prompt = _stk_accept(client, sim, order)

    def twin():
        payments = sim.state(source="stk_twin")["payments"]
        return payments and payments[0]["done"] and payments[0]

    sent = wait_for(twin, "the STK payment's C2B twin", timeout=30)
    assert sent["trans_id"] == prompt["receipt"] and sent["account"] == order["number"]
    assert sent["amount"] == 450 and sent["twin_order"] == twin_order
    assert sent["msisdn_masked"] == "2547 ***** 678"
    join_background()
    stored = paid_order(db, order["id"])
    [payment] = stored.payments
    assert payment.method == "stk" and payment.receipt == prompt["receipt"]
    [stk] = records(db, "stk")
    [confirmation] = records(db, "c2b")
    first, second = sorted([stk, confirmation], key=lambda r: r.id)
    assert (first.kind, second.kind) == (
        ("c2b", "stk") if twin_order == "before" else ("stk", "c2b")
    )
    assert second.outcome == "duplicate"
    assert json.loads(confirmation.body)["TransID"] == prompt["receipt"]
    assert_paid_once(db)


@pytest.mark.parametrize("setup", ["twins off", "nothing registered"])
def test_no_twin_when_switched_off_or_unregistered(client, sim, token, make_order, db, setup):
    if setup == "twins off":
        assert sim.register(token).ok
        assert sim.settings(stk_twins="off").ok
    order = make_order(300)
    _stk_accept(client, sim, order)
    paid_order(db, order["id"])
    join_background()
    assert sim.state()["payments"] == [] and records(db, "c2b") == []
    assert_paid_once(db)


def test_resending_an_stk_callback_sends_no_second_twin(client, sim, token, make_order, db):
    assert sim.register(token).ok
    order = make_order(200)
    prompt = _stk_accept(client, sim, order)
    paid_order(db, order["id"])
    join_background()
    response = requests.post(
        f"{sim.url}/api/prompts/{prompt['checkout_request_id']}/resend-callback", timeout=10
    )
    assert response.status_code == 200
    join_background()
    assert len(sim.state(source="stk_twin")["payments"]) == 1
    assert len(records(db, "c2b")) == 1 and len(records(db, "stk")) == 2
    assert_paid_once(db)


def test_the_phone_page_has_a_pay_bill_screen(client, app, sim):
    html = client.get("/_simulator/phone").get_data(as_text=True)
    assert "Pay Bill" in html and 'id="paybill-form"' in html
    assert f'value="{app.config["MPESA_C2B_SHORTCODE"]}"' in html
