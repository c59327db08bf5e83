"""Daraja's initiator APIs as the simulator answers them: Reversal and Transaction Status,
and what B2C (b2c.py) shares with them: the initiator check, the acknowledgement, the
result posted once in the background.

The request is checked as Daraja checks it (token, fields, the initiator and its
SecurityCredential, which must decrypt with the simulator's key: keys.py), answered with
an acknowledgement only, and the outcome is POSTed to the ResultURL in the background, in
Daraja's shape: ResultCode the number 0 on success, a string on failure (`R000001` the
transaction is already reversed, `R000002` no such transaction), `2001` when the
initiator's name or password is wrong.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from typing import NamedTuple

import requests
from flask import current_app, jsonify, request
from sqlalchemy import insert, or_, select, update

from ..extensions import db, socketio
from ..models import utcnow
from ..mpesa.formats import eat_timestamp
from . import bp
from .c2b import get_setting, mask_msisdn
from .daraja import callback_url_ok, daraja_error, take_fault, token_ok, whole_shillings
from .keys import decrypt_credential
from .models import (
    new_receipt,
    sim_b2c_payments,
    sim_c2b_payments,
    sim_prompts,
    sim_reversals,
    sim_status_checks,
)

log = logging.getLogger(__name__)

INVALID = "400.002.02"
SUCCESS = (0, "The service request is processed successfully.")
ALREADY_REVERSED = ("R000001", "The transaction has already been reversed.")
NO_SUCH_TRANSACTION = ("R000002", "The OriginalTransactionID is invalid.")
BAD_INITIATOR = (2001, "The initiator information is invalid.")
INITIATOR_STATES = {  # the `initiator_state` setting
    "no_role": (21, "The initiator is not allowed to initiate this request."),
    "locked": (8006, "The security credential is locked."),
}
SHOP = "Simulator Shop"  # the business's public name, as parties are named in results
B2C_CUSTOMER = "Simulated Customer"  # the public name of a phone that B2C pays


def _validate_reversal(body: dict) -> str | None:
    """Daraja's field checks (its words); None when the request is acceptable."""
    config = current_app.config
    if body.get("CommandID") != "TransactionReversal":
        return "Bad Request - Invalid CommandID"
    if not isinstance(body.get("TransactionID"), str) or not body["TransactionID"].strip():
        return "Bad Request - Invalid TransactionID"
    if whole_shillings(body.get("Amount")) is None:
        return "Bad Request - Invalid Amount"
    if str(body.get("ReceiverParty")) not in (
        config["MPESA_SHORTCODE"],
        config["MPESA_C2B_SHORTCODE"],
    ):
        return "Bad Request - Invalid ReceiverParty"
    if str(body.get("RecieverIdentifierType")) != "11":  # Daraja's spelling
        return "Bad Request - Invalid RecieverIdentifierType"
    for field in ("ResultURL", "QueueTimeOutURL"):
        if not callback_url_ok(body.get(field)):
            return f"Bad Request - Invalid {field}"
    remarks = body.get("Remarks")
    if not isinstance(remarks, str) or not 2 <= len(remarks) <= 100:
        return "Bad Request - Invalid Remarks"
    if not isinstance(body.get("Initiator"), str) or not isinstance(
        body.get("SecurityCredential"), str
    ):
        return "Bad Request - Invalid Initiator"
    return None


class Payment(NamedTuple):
    """A completed simulated payment: how much, from which phone, to which shortcode, when."""

    amount: int
    phone: str
    shortcode: str
    finalised_at: datetime


def _payment(receipt: str) -> Payment | None:
    """The completed simulated payment with this receipt: an STK prompt (paid to
    MPESA_SHORTCODE) or else a Paybill payment (paid to its shortcode); None if neither."""
    prompt = db.session.execute(
        select(sim_prompts).where(sim_prompts.c.receipt == receipt, sim_prompts.c.result_code == 0)
    ).first()
    if prompt is not None:
        return Payment(
            prompt.amount,
            prompt.phone,
            current_app.config["MPESA_SHORTCODE"],
            prompt.answered_at or prompt.created_at,
        )
    paybill = db.session.execute(
        select(sim_c2b_payments).where(
            sim_c2b_payments.c.trans_id == receipt, sim_c2b_payments.c.state == "completed"
        )
    ).first()
    if paybill is not None:
        return Payment(paybill.amount, paybill.msisdn, paybill.shortcode, paybill.created_at)
    return None


def initiator_problem(name, credential) -> tuple[int, str] | None:
    """What M-Pesa says against this initiator, or None: 2001 unless it is the
    simulator's initiator, its password inside a SecurityCredential that decrypts with
    the simulator's key; then the `initiator_state` setting's 21 (no role for the API)
    or 8006 (credential locked), on demand."""
    config = current_app.config
    password = decrypt_credential(config, str(credential or ""))
    if name != config["MPESA_INITIATOR_NAME"] or password != config.get("MPESA_INITIATOR_PASSWORD"):
        return BAD_INITIATOR
    return INITIATOR_STATES.get(get_setting("initiator_state"))


def _outcome(body: dict, amount: int) -> tuple[int | str, str]:
    if problem := initiator_problem(body["Initiator"], body["SecurityCredential"]):
        return problem
    receipt = body["TransactionID"].strip()
    payment = _payment(receipt)
    if payment is None or payment.amount != amount:
        return NO_SUCH_TRANSACTION
    reversed_before = db.session.execute(
        select(sim_reversals.c.conversation_id).where(
            sim_reversals.c.receipt == receipt,
            or_(sim_reversals.c.result_code == "0", sim_reversals.c.result_code.is_(None)),
        )
    ).first()
    return ALREADY_REVERSED if reversed_before else SUCCESS


@bp.post("/mpesa/reversal/v1/request")
def reversal():
    """Acknowledge a Reversal request; its result follows in the background."""
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := take_fault("reversal"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, INVALID, "Bad Request - Invalid JSON")
    if problem := _validate_reversal(body):
        return daraja_error(400, INVALID, problem)
    amount = whole_shillings(body["Amount"])
    code, desc = _outcome(body, amount)
    originator, conversation_id = _new_ids()
    db.session.execute(
        insert(sim_reversals).values(
            conversation_id=conversation_id,
            originator_conversation_id=originator,
            receipt=body["TransactionID"].strip(),
            amount=amount,
            result_url=body["ResultURL"],
            timeout_url=body["QueueTimeOutURL"],
            result_code=str(code),
            result_desc=desc,
            reversal_receipt=new_receipt() if code == 0 else None,
            created_at=utcnow(),
        )
    )
    db.session.commit()
    return acknowledge(post_result, originator, conversation_id)


def new_conversation_id() -> str:
    """A ConversationID in Daraja's shape."""
    return f"AG_{utcnow():%Y%m%d}_{secrets.token_hex(10)}"


def _new_ids() -> tuple[str, str]:
    """A request's OriginatorConversationID and ConversationID, in Daraja's shapes."""
    originator = f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(9 * 10**7) + 10**7}-1"
    return originator, new_conversation_id()


def acknowledge(post, originator: str, conversation_id: str):
    """Daraja's acknowledgement of an initiator request; `post` sends its result later,
    in the background."""
    socketio.start_background_task(post, current_app._get_current_object(), conversation_id)
    return jsonify(
        {
            "OriginatorConversationID": originator,
            "ConversationID": conversation_id,
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }
    )


def result_body(row) -> dict:
    """What Daraja posts to the ResultURL: ResultCode a number on success, a string for
    the R-codes."""
    code: int | str = int(row.result_code) if row.result_code.isdigit() else row.result_code
    result = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": row.result_desc,
        "OriginatorConversationID": row.originator_conversation_id,
        "ConversationID": row.conversation_id,
        "TransactionID": row.reversal_receipt or new_receipt(),
        "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": row.timeout_url}},
    }
    if code == 0:
        result["ResultParameters"] = {
            "ResultParameter": [
                {"Key": "DebitAccountBalance", "Value": "Utility Account|KES|0.00|0.00|0.00|0.00"},
                {"Key": "Amount", "Value": row.amount},
                {"Key": "TransCompletedTime", "Value": int(eat_timestamp(row.created_at))},
                {"Key": "OriginalTransactionID", "Value": row.receipt},
                {"Key": "Charge", "Value": 0},
                {"Key": "CreditPartyPublicName", "Value": "Customer"},
            ]
        }
    return {"Result": result}


def timeout_body(row) -> dict:
    """What the simulator posts to the QueueTimeOutURL (a timeout on demand): the same
    envelope, no result parameters; the request's outcome is unknown."""
    return {
        "Result": {
            "ResultType": 1,
            "ResultCode": 1,
            "ResultDesc": "The request timed out in the queue (simulator).",
            "OriginatorConversationID": row.originator_conversation_id,
            "ConversationID": row.conversation_id,
            "TransactionID": "",
        }
    }


def post_result(app, conversation_id: str) -> None:
    """POST a reversal's result like Daraja does (once; no retries); a background task."""
    post_outcome(app, sim_reversals, conversation_id, result_body)


def post_outcome(app, table, conversation_id: str, body_of) -> None:
    """POST a request's result (`body_of(row)`) to its ResultURL, or, when the setting
    `initiator_results` says timeout, the timeout body to its QueueTimeOutURL (the request
    was carried out all the same: only its result is lost); a background task."""

    def message(row):
        if get_setting("initiator_results") == "timeout":  # Safaricom's queue timed out
            return row.timeout_url, timeout_body(row)
        return row.result_url, body_of(row)

    _post_once(app, table, conversation_id, message)


def _post_once(app, table, conversation_id: str, message) -> None:
    """POST one initiator API's result (`message(row)` → url, body), once, and note how
    it went on its row; a background task, which never dies loudly."""
    with app.app_context():
        try:
            row = db.session.execute(
                select(table).where(table.c.conversation_id == conversation_id)
            ).first()
            url, body = message(row)
            try:
                response = requests.post(url, json=body, timeout=10)
                status = f"sent: HTTP {response.status_code}"
            except requests.RequestException as exc:
                status = f"failed: {exc.__class__.__name__}"
            db.session.execute(
                update(table)
                .where(table.c.conversation_id == conversation_id)
                .values(result_status=status)
            )
            db.session.commit()
        except Exception:  # noqa: BLE001 - a background task must not die loudly
            log.warning("simulator: result %s not sent", conversation_id, exc_info=True)
        finally:
            db.session.remove()


# -- Transaction Status ----------------------------------------------------------------------


def _status_of(body: dict) -> tuple[int | str, str, dict]:
    """What the simulator knows of the transaction asked about: a reversal or a B2C
    payment (by its OriginatorConversationID or its receipt), or a payment (by its
    receipt)."""
    by_conversation = body.get("OriginalConversationID")
    receipt = body.get("TransactionID")
    reversal = db.session.execute(
        select(sim_reversals).where(
            or_(
                sim_reversals.c.originator_conversation_id == (by_conversation or "-"),
                sim_reversals.c.reversal_receipt == (receipt or "-"),
            )
        )
    ).first()
    if reversal is not None and reversal.result_code == "0":
        return SUCCESS + (
            {
                "ReceiptNo": reversal.reversal_receipt,
                "TransactionStatus": "Completed",
                "Amount": reversal.amount,
                "FinalisedTime": int(eat_timestamp(reversal.created_at)),
                "ReasonType": "Reversal",
                "OriginalTransactionID": reversal.receipt,
            },
        )
    if reversal is not None:
        return NO_SUCH_TRANSACTION + ({},)
    b2c = db.session.execute(
        select(sim_b2c_payments).where(
            or_(
                sim_b2c_payments.c.originator_conversation_id == (by_conversation or "-"),
                sim_b2c_payments.c.receipt == (receipt or "-"),
            )
        )
    ).first()
    if b2c is not None and b2c.result_code == "0":
        return SUCCESS + (
            {
                "ReceiptNo": b2c.receipt,
                "TransactionStatus": "Completed",
                "Amount": b2c.amount,
                "FinalisedTime": int(eat_timestamp(b2c.created_at)),
                "ReasonType": "Business Payment",
                "CreditPartyName": f"{b2c.phone} - {B2C_CUSTOMER}",
                "DebitPartyName": f"{current_app.config['MPESA_B2C_SHORTCODE']} - {SHOP}",
            },
        )
    payment = _payment(receipt) if b2c is None and receipt else None
    if payment is not None:
        return SUCCESS + (
            {
                "ReceiptNo": receipt,
                "TransactionStatus": "Completed",
                "Amount": payment.amount,
                "ReasonType": "Pay Bill Online",
                "FinalisedTime": int(eat_timestamp(payment.finalised_at)),
                # Daraja's masked MSISDN, without its spaces: 2547*****149
                "DebitPartyName": f"{mask_msisdn(payment.phone).replace(' ', '')} - Customer",
                "CreditPartyName": f"{payment.shortcode} - {SHOP}",
            },
        )
    return NO_SUCH_TRANSACTION + ({},)


@bp.post("/mpesa/transactionstatus/v1/query")
def transaction_status():
    """Acknowledge a Transaction Status query; its result follows in the background."""
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := take_fault("status"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, INVALID, "Bad Request - Invalid JSON")
    if body.get("CommandID") != "TransactionStatusQuery":
        return daraja_error(400, INVALID, "Bad Request - Invalid CommandID")
    if not (body.get("TransactionID") or body.get("OriginalConversationID")):
        return daraja_error(400, INVALID, "Bad Request - Invalid TransactionID")
    for name in ("ResultURL", "QueueTimeOutURL"):
        if not callback_url_ok(body.get(name)):
            return daraja_error(400, INVALID, f"Bad Request - Invalid {name}")
    if problem := initiator_problem(body.get("Initiator"), body.get("SecurityCredential")):
        code, desc, parameters = problem + ({},)
    else:
        code, desc, parameters = _status_of(body)
    originator, conversation_id = _new_ids()
    result = {
        "Result": {
            "ResultType": 0,
            "ResultCode": code,
            "ResultDesc": desc,
            "OriginatorConversationID": originator,
            "ConversationID": conversation_id,
            "TransactionID": new_receipt(),
            "ResultParameters": {
                "ResultParameter": [{"Key": k, "Value": v} for k, v in parameters.items()]
            },
        }
    }
    db.session.execute(
        insert(sim_status_checks).values(
            conversation_id=conversation_id,
            result_url=body["ResultURL"],
            timeout_url=body["QueueTimeOutURL"],
            result=json.dumps(result),
            created_at=utcnow(),
        )
    )
    db.session.commit()
    return acknowledge(post_status, originator, conversation_id)


def post_status(app, conversation_id: str) -> None:
    """POST a Transaction Status result (once; no retries); a background task."""
    _post_once(
        app,
        sim_status_checks,
        conversation_id,
        lambda row: (row.result_url, json.loads(row.result)),
    )
