"""Daraja's initiator APIs, Reversal first: the SecurityCredential (RSA, PKCS#1 v1.5, with
the `cryptography` package), the initiator settings, and the Reversal request against the
real HTTP simulator, whose result arrives at a real receiver in Daraja's shape."""

from __future__ import annotations

import base64
import json
import pathlib

import pytest
from cryptography.hazmat.primitives.asymmetric import padding

from paymentapp.config import ConfigError, load_config
from paymentapp.mpesa import client as daraja
from paymentapp.mpesa.initiator import encrypt_credential, security_credential
from tests.helpers import LIVE, base_env, key_pair, pay
from tests.receiver import Receiver
from tests.services import wait_for


def test_the_credential_is_the_password_rsa_encrypted_pkcs1v15_in_base64():
    key, public_pem = key_pair()
    first = encrypt_credential("Safaricom#999", public_pem)
    second = encrypt_credential("Safaricom#999", public_pem)
    assert first != second  # PKCS#1 v1.5 is randomised
    for credential in (first, second):
        raw = base64.b64decode(credential, validate=True)
        assert len(raw) == 256
        assert key.decrypt(raw, padding.PKCS1v15()) == b"Safaricom#999"


def test_a_portal_credential_is_sent_as_it_is():
    config = {"MPESA_INITIATOR_NAME": "apiop", "MPESA_SECURITY_CREDENTIAL": "Zm9vYmFy"}
    assert security_credential(config) == "Zm9vYmFy"


def test_the_password_is_encrypted_with_the_certificate_file(tmp_path):
    key, public_pem = key_pair()
    cert = tmp_path / "production.cer"
    cert.write_bytes(public_pem)
    config = load_config(
        base_env(
            "sqlite://",
            MPESA_INITIATOR_NAME="apiop",
            MPESA_INITIATOR_PASSWORD="pa$$word",
            MPESA_CERT_PATH=str(cert),
        )
    )
    credential = security_credential(config)
    assert key.decrypt(base64.b64decode(credential), padding.PKCS1v15()) == b"pa$$word"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"MPESA_INITIATOR_NAME": "apiop"}, "MPESA_INITIATOR_NAME needs"),
        ({"MPESA_SECURITY_CREDENTIAL": "Zm9v"}, "MPESA_INITIATOR_NAME is required"),
        ({"MPESA_INITIATOR_PASSWORD": "x", "MPESA_INITIATOR_NAME": "a"}, "go together"),
        ({"MPESA_CERT_PATH": "/nowhere/cert.cer", "MPESA_INITIATOR_PASSWORD": "x"}, "no file"),
        (
            {"MPESA_SECURITY_CREDENTIAL": "Zm9v", "MPESA_INITIATOR_PASSWORD": "x"},
            "already encrypted",
        ),
    ],
)
def test_half_an_initiator_is_refused_at_start(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config(base_env("sqlite://", **settings))


def test_live_without_an_initiator_has_reversals_off():
    config = {
        "MPESA_INITIATOR_NAME": "",
        "MPESA_SECURITY_CREDENTIAL": "",
        "MPESA_INITIATOR_PASSWORD": "",
        "MPESA_CERT_PATH": "",
    }
    assert not daraja.initiator_configured(config)
    with pytest.raises(daraja.InitiatorNotConfigured, match="MPESA_INITIATOR_NAME"):
        security_credential(config)


def test_the_simulator_has_its_own_initiator_and_certificate(app):
    config = app.config
    assert daraja.initiator_configured(config)
    certificate = pathlib.Path(config["MPESA_CERT_PATH"]).read_bytes()
    assert certificate.startswith(b"-----BEGIN CERTIFICATE")


# -- Reversal against the simulator ----------------------------------------------------------


def _paid_receipt(client, live_server, make_order) -> tuple[str, int]:
    order = make_order(250)
    assert pay(client, order).status_code == 202
    prompt = live_server.open_prompt(order["number"])
    live_server.press(prompt["checkout_request_id"], "accept")
    return live_server.prompt_for(order["number"])["receipt"], 250


def _reverse(app, receiver, receipt, amount, config=None):
    return daraja.DarajaClient(config or app.config).reverse(
        receipt=receipt,
        amount=amount,
        shortcode=app.config["MPESA_SHORTCODE"],
        reason="Customer asked for a refund",
        result_url=f"{receiver.url}/result",
        timeout_url=f"{receiver.url}/timeout",
    )


def _result(receiver, conversation_id) -> dict:
    def arrived():
        for got in receiver.received:
            body = json.loads(got.body)
            if body["Result"]["ConversationID"] == conversation_id:
                assert got.path.endswith("/result")
                return body["Result"]
        return None

    return wait_for(arrived, timeout=15)


def test_a_reversal_is_acknowledged_then_its_result_comes_in_darajas_shape(
    app, client, live_server, make_order
):
    receipt, amount = _paid_receipt(client, live_server, make_order)
    with Receiver() as receiver:
        ack = _reverse(app, receiver, receipt, amount)
        assert ack.conversation_id.startswith("AG_") and ack.originator_conversation_id
        result = _result(receiver, ack.conversation_id)
        assert result["ResultCode"] == 0  # a number on success
        assert result["OriginatorConversationID"] == ack.originator_conversation_id
        parameters = {p["Key"]: p["Value"] for p in result["ResultParameters"]["ResultParameter"]}
        assert parameters["OriginalTransactionID"] == receipt
        assert parameters["Amount"] == amount
        assert result["TransactionID"] != receipt

        again = _reverse(app, receiver, receipt, amount)
        assert _result(receiver, again.conversation_id)["ResultCode"] == "R000001"  # a string
    # the simulated phone lists the money it got back
    phone = live_server.http.get(f"{live_server.url}/_simulator/api/prompts", timeout=10).json()
    assert [(r["receipt"], r["amount"]) for r in phone["refunds"]] == [(receipt, amount)]


def test_an_unknown_transaction_and_a_wrong_password_fail_in_the_result(
    app, client, live_server, make_order
):
    receipt, amount = _paid_receipt(client, live_server, make_order)
    with Receiver() as receiver:
        unknown = _reverse(app, receiver, "SXXXXXXXX1", amount)
        assert _result(receiver, unknown.conversation_id)["ResultCode"] == "R000002"

        _, other_certificate = key_pair()  # encrypted for another key: cannot be read
        wrong = {
            **app.config,
            "MPESA_SECURITY_CREDENTIAL": encrypt_credential("Simulator#2026", other_certificate),
        }
        bad = _reverse(app, receiver, receipt, amount, wrong)
        assert _result(receiver, bad.conversation_id)["ResultCode"] == 2001


def test_a_refused_reversal_request_is_a_clear_error(app, live_server):
    with Receiver() as receiver:
        with pytest.raises(daraja.DarajaRefused, match="Invalid Amount"):
            _reverse(app, receiver, "SABCDEFGH1", 0)
        live_server.fault(
            "reversal", 500, {"errorCode": "500.003.1001", "errorMessage": "Internal Server Error"}
        )
        with pytest.raises(daraja.DarajaError):
            _reverse(app, receiver, "SABCDEFGH1", 10)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"MPESA_B2C_SHORTCODE": "60A000"}, "MPESA_B2C_SHORTCODE must be"),
        ({"MPESA_B2C_COMMAND_ID": "Salary"}, "MPESA_B2C_COMMAND_ID must be one of"),
        ({"MPESA_RECEIPT_CHECKS": "maybe"}, "MPESA_RECEIPT_CHECKS must be on or off"),
    ],
)
def test_bad_b2c_and_receipt_check_settings_are_refused_at_start(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config(base_env("sqlite://", **settings))


def test_b2c_needs_an_initiator_when_live_and_is_on_in_the_simulator():
    with pytest.raises(ConfigError, match="MPESA_B2C_SHORTCODE needs MPESA_INITIATOR_NAME"):
        load_config({**LIVE, "MPESA_B2C_SHORTCODE": "600100"})
    assert load_config(LIVE)["MPESA_B2C_SHORTCODE"] == ""  # live: off unless configured
    simulator = load_config(base_env("sqlite://"))
    assert simulator["MPESA_B2C_SHORTCODE"] == "600000" and simulator["MPESA_RECEIPT_CHECKS"]
    assert (
        load_config(base_env("sqlite://", MPESA_B2C_SHORTCODE="off"))["MPESA_B2C_SHORTCODE"] == ""
    )
    off = load_config(base_env("sqlite://", MPESA_RECEIPT_CHECKS="OFF"))
    assert off["MPESA_RECEIPT_CHECKS"] is False
