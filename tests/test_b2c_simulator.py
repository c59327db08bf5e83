"""B2C against the HTTP simulator, through the real client: the payment is acknowledged with
our OriginatorConversationID and its result arrives at a real receiver in Daraja's shape;
an id used before is refused (Daraja's guard against paying twice); a wrong credential
and an empty float fail in the result; a lost result leaves Transaction Status to find
the payment. And Transaction Status names the parties of a customer's payment."""

from __future__ import annotations

import json
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from paymentapp.mpesa import client as daraja
from paymentapp.mpesa.initiator import encrypt_credential
from tests.helpers import pay
from tests.receiver import Receiver
from tests.services import wait_for

PHONE = "254708374149"


def _pay(app, receiver, originator=None, amount=150, phone=PHONE, config=None):
    return daraja.DarajaClient(config or app.config).pay_to_phone(
        originator_conversation_id=originator or daraja.new_originator_id(),
        amount=amount,
        phone=phone,
        reason="Partial refund of ORD-1",
        result_url=f"{receiver.url}/result",
        timeout_url=f"{receiver.url}/timeout",
        occasion="ORD-1",
    )


def _status(app, receiver, **asked):
    return daraja.DarajaClient(app.config).transaction_status(
        shortcode=app.config["MPESA_SHORTCODE"],
        result_url=f"{receiver.url}/result",
        timeout_url=f"{receiver.url}/timeout",
        **asked,
    )


def _arrived(receiver, conversation_id, path="/result") -> dict:
    """The body posted about this conversation (waits for it), and that it went to `path`."""

    def find():
        for got in receiver.received:
            body = json.loads(got.body)
            if body["Result"]["ConversationID"] == conversation_id:
                assert got.path.endswith(path), got.path
                return body["Result"]
        return None

    return wait_for(find, f"the result of {conversation_id}", timeout=15)


def _parameters(result) -> dict:
    return {p["Key"]: p["Value"] for p in result["ResultParameters"]["ResultParameter"]}


def _settings(live_server, **values) -> None:
    answer = live_server.http.post(
        f"{live_server.url}/_simulator/api/c2b/settings", json=values, timeout=10
    )
    assert answer.ok, answer.text


def _money_received(live_server) -> list[dict]:
    return live_server.http.get(f"{live_server.url}/_simulator/api/prompts", timeout=10).json()[
        "refunds"
    ]


def _other_certificate() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_payment_is_acknowledged_with_our_id_then_its_result_comes_in_darajas_shape(
    app, live_server
):
    originator = daraja.new_originator_id()
    with Receiver() as receiver:
        ack = _pay(app, receiver, originator)
        assert ack.originator_conversation_id == originator  # ours, echoed
        assert ack.conversation_id.startswith("AG_")
        result = _arrived(receiver, ack.conversation_id)
    assert result["ResultType"] == 0
    assert result["ResultCode"] == 0 and type(result["ResultCode"]) is int  # a number
    assert result["ResultDesc"] == "The service request is processed successfully."
    assert result["OriginatorConversationID"] == originator
    assert result["ReferenceData"]["ReferenceItem"] == {
        "Key": "QueueTimeoutURL",
        "Value": f"{receiver.url}/timeout",
    }
    parameters = _parameters(result)
    assert parameters["TransactionAmount"] == 150
    assert parameters["TransactionReceipt"] == result["TransactionID"]
    assert re.fullmatch(r"S[A-Z0-9]{9}", parameters["TransactionReceipt"])
    assert parameters["B2CRecipientIsRegisteredCustomer"] == "Y"
    assert parameters["ReceiverPartyPublicName"] == f"{PHONE} - Simulated Customer"
    assert re.fullmatch(
        r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d", parameters["TransactionCompletedDateTime"]
    )
    for funds in ("B2CChargesPaidAccountAvailableFunds", "B2CUtilityAccountAvailableFunds"):
        assert isinstance(parameters[funds], int | float)
    assert isinstance(parameters["B2CWorkingAccountAvailableFunds"], int | float)

    # the simulated phone lists the money it got
    [received] = _money_received(live_server)
    assert received["via"] == "b2c"
    assert (received["receipt"], received["amount"], received["phone"]) == (
        parameters["TransactionReceipt"],
        150,
        PHONE,
    )
    assert received["created_at"]


def test_an_originator_id_used_before_is_refused(app, live_server):
    originator = daraja.new_originator_id()
    with Receiver() as receiver:
        first = _pay(app, receiver, originator, amount=80)
        _arrived(receiver, first.conversation_id)
        with pytest.raises(daraja.DarajaRefused, match="Duplicate OriginatorConversationID") as e:
            _pay(app, receiver, originator, amount=80)
        assert e.value.code == "400.002.02"
    assert [r["amount"] for r in _money_received(live_server)] == [80]  # paid once


def test_a_wrong_credential_and_an_empty_float_fail_in_the_result(app, live_server):
    wrong = {
        **app.config,
        "MPESA_SECURITY_CREDENTIAL": encrypt_credential("Simulator#2026", _other_certificate()),
    }
    with Receiver() as receiver:
        bad = _pay(app, receiver, config=wrong)
        refused = _arrived(receiver, bad.conversation_id)
        assert refused["ResultCode"] == 2001
        assert refused["ResultDesc"] == "The initiator information is invalid."
        assert "ResultParameters" not in refused

        _settings(live_server, b2c_funds="insufficient")
        poor = _pay(app, receiver)
        broke = _arrived(receiver, poor.conversation_id)
        assert broke["ResultCode"] == 1
        assert broke["ResultDesc"] == "The balance is insufficient for the transaction."
        assert "ResultParameters" not in broke

        # a payment that failed is no transaction to Transaction Status
        asked = _status(app, receiver, original_conversation_id=poor.originator_conversation_id)
        assert _arrived(receiver, asked.conversation_id)["ResultCode"] == "R000002"
    assert _money_received(live_server) == []


def test_a_lost_result_goes_to_the_timeout_url_and_transaction_status_finds_the_payment(
    app, live_server
):
    _settings(live_server, initiator_results="timeout")
    with Receiver() as receiver:
        ack = _pay(app, receiver, amount=420)
        lost = _arrived(receiver, ack.conversation_id, path="/timeout")
        assert lost["OriginatorConversationID"] == ack.originator_conversation_id
        assert "ResultParameters" not in lost

        # the payment was made all the same: only its result was lost
        asked = _status(app, receiver, original_conversation_id=ack.originator_conversation_id)
        status = _arrived(receiver, asked.conversation_id)
    assert status["ResultCode"] == 0
    parameters = _parameters(status)
    [received] = _money_received(live_server)
    assert parameters["ReceiptNo"] == received["receipt"]
    assert parameters["TransactionStatus"] == "Completed"
    assert parameters["Amount"] == 420
    assert parameters["ReasonType"] == "Business Payment"
    assert re.fullmatch(r"\d{14}", str(parameters["FinalisedTime"]))
    assert parameters["CreditPartyName"] == f"{PHONE} - Simulated Customer"
    assert parameters["DebitPartyName"] == f"{app.config['MPESA_B2C_SHORTCODE']} - Simulator Shop"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"phone": "0712345678"}, "PartyB"),
        ({"phone": "254612345678"}, "PartyB"),
        ({"config": {"MPESA_B2C_SHORTCODE": "600001"}}, "PartyA"),
        ({"amount": 0}, "Amount"),
        ({"originator": "x" * 65}, "OriginatorConversationID"),
        ({"originator": "   "}, "OriginatorConversationID"),
        ({"config": {"MPESA_B2C_COMMAND_ID": "TransactionReversal"}}, "CommandID"),
    ],
)
def test_a_refused_request_names_the_field(app, live_server, change, field):
    request = dict(change)
    config = {**app.config, **request.pop("config", {})}
    with Receiver() as receiver:
        with pytest.raises(daraja.DarajaRefused, match=f"Bad Request - Invalid {field}$"):
            _pay(app, receiver, config=config, **request)
    assert _money_received(live_server) == []


def test_a_queued_fault_answers_the_next_request(app, live_server):
    live_server.fault(
        "b2c", 500, {"errorCode": "500.003.1001", "errorMessage": "Internal Server Error"}
    )
    with Receiver() as receiver:
        with pytest.raises(daraja.DarajaError):
            _pay(app, receiver)
        ack = _pay(app, receiver)  # the fault was used up
        assert _arrived(receiver, ack.conversation_id)["ResultCode"] == 0


# -- Transaction Status of a customer's payment --------------------------------------------------


def test_transaction_status_names_the_parties_of_an_stk_and_a_paybill_payment(
    app, client, live_server, make_order
):
    order = make_order(250)
    assert pay(client, order, phone="0712 345 678").status_code == 202
    live_server.answer(order["number"], "accept")
    stk_receipt = live_server.prompt_for(order["number"])["receipt"]

    paid = live_server.http.post(  # its confirmation lost: only the simulator knows it
        f"{live_server.url}/_simulator/api/c2b/pay",
        json={"account": make_order(75)["number"], "amount": 75, "copies": 0},
        timeout=10,
    )
    assert paid.status_code == 202, paid.text
    paybill_receipt = paid.json()["payment"]["trans_id"]

    def paybill_state():
        payments = live_server.http.get(
            f"{live_server.url}/_simulator/api/c2b", params={"trans_id": paybill_receipt}
        ).json()["payments"]
        return payments[0]["state"] if payments[0]["state"] in ("completed", "rejected") else None

    assert wait_for(paybill_state, "the Paybill payment to complete") == "completed"

    with Receiver() as receiver:
        stk = _parameters(
            _arrived(receiver, _status(app, receiver, transaction_id=stk_receipt).conversation_id)
        )
        paybill = _parameters(
            _arrived(
                receiver, _status(app, receiver, transaction_id=paybill_receipt).conversation_id
            )
        )
    assert (stk["ReceiptNo"], stk["Amount"], stk["TransactionStatus"]) == (
        stk_receipt,
        250,
        "Completed",
    )
    assert stk["DebitPartyName"] == "2547*****678 - Customer"
    assert stk["CreditPartyName"] == f"{app.config['MPESA_SHORTCODE']} - Simulator Shop"
    assert re.fullmatch(r"\d{14}", str(stk["FinalisedTime"]))
    assert (paybill["ReceiptNo"], paybill["Amount"]) == (paybill_receipt, 75)
    assert paybill["DebitPartyName"] == "2547*****149 - Customer"
    assert paybill["CreditPartyName"] == f"{app.config['MPESA_C2B_SHORTCODE']} - Simulator Shop"
    assert re.fullmatch(r"\d{14}", str(paybill["FinalisedTime"]))


@pytest.mark.browser
def test_the_phone_page_shows_the_money_received(app, live_server, page):
    from playwright.sync_api import expect

    with Receiver() as receiver:
        ack = _pay(app, receiver, amount=1450)
        receipt = _parameters(_arrived(receiver, ack.conversation_id))["TransactionReceipt"]
    page.goto(f"{live_server.url}/_simulator/phone")
    received = page.locator(".prompt.refund", has_text=receipt)
    expect(received).to_contain_text("KES 1,450 from Simulator Shop (B2C)")
