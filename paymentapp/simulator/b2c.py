"""Daraja's B2C API as the simulator answers it: `POST /mpesa/b2c/v3/paymentrequest`, the
business paying money to a customer's phone (the app's partial refunds).

The request is checked as Daraja checks it (token, fields in its words), and an
OriginatorConversationID used before is refused: Daraja's guard against paying twice.
The acknowledgement echoes the caller's OriginatorConversationID, and the outcome is
posted in the background like a reversal's (initiator.py): `0` with the payment's
parameters, `2001` for a wrong initiator name or password, `1` while the setting
`b2c_funds` says insufficient. With `initiator_results` = timeout the payment is still
made, only its result goes to the QueueTimeOutURL instead; Transaction Status, asked by
the OriginatorConversationID, then finds it.
"""

from __future__ import annotations

from flask import current_app, request
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from ..config import B2C_COMMANDS
from ..extensions import db
from ..models import utcnow
from ..mpesa.formats import EAT
from ..phones import KENYAN_MOBILE
from . import bp
from .c2b import get_setting
from .daraja import callback_url_ok, daraja_error, take_fault, token_ok, whole_shillings
from .initiator import (
    B2C_CUSTOMER,
    INVALID,
    SUCCESS,
    acknowledge,
    initiator_problem,
    new_conversation_id,
    post_outcome,
)
from .models import new_receipt, sim_b2c_payments

ORIGINATOR_MAX = 64
INSUFFICIENT = (1, "The balance is insufficient for the transaction.")
DUPLICATE = "Bad Request - Duplicate OriginatorConversationID"
# The simulator keeps no B2C float: the balances reported after a payment are fixed.
UTILITY_FUNDS = 1_000_000.00


def _validate(body: dict) -> str | None:
    """Daraja's field checks (its words); None when the request is acceptable."""
    originator = body.get("OriginatorConversationID")
    if (
        not isinstance(originator, str)
        or not originator.strip()
        or len(originator) > ORIGINATOR_MAX
    ):
        return "Bad Request - Invalid OriginatorConversationID"
    for field in ("InitiatorName", "SecurityCredential"):
        if not isinstance(body.get(field), str):
            return f"Bad Request - Invalid {field}"
    if body.get("CommandID") not in B2C_COMMANDS:
        return "Bad Request - Invalid CommandID"
    if whole_shillings(body.get("Amount")) is None:
        return "Bad Request - Invalid Amount"
    shortcode = current_app.config.get("MPESA_B2C_SHORTCODE")
    if not shortcode or str(body.get("PartyA")) != shortcode:
        return "Bad Request - Invalid PartyA"
    if not KENYAN_MOBILE.match(str(body.get("PartyB"))):
        return "Bad Request - Invalid PartyB"
    remarks = body.get("Remarks")
    if not isinstance(remarks, str) or not 2 <= len(remarks) <= 100:
        return "Bad Request - Invalid Remarks"
    for field in ("ResultURL", "QueueTimeOutURL"):
        if not callback_url_ok(body.get(field)):
            return f"Bad Request - Invalid {field}"
    occasion = body.get("Occassion")  # sic: Daraja's spelling, and optional
    if occasion is not None and (not isinstance(occasion, str) or len(occasion) > 100):
        return "Bad Request - Invalid Occassion"
    return None


def _outcome(body: dict) -> tuple[int, str]:
    if problem := initiator_problem(body["InitiatorName"], body["SecurityCredential"]):
        return problem
    if get_setting("b2c_funds") == "insufficient":
        return INSUFFICIENT
    return SUCCESS


@bp.post("/mpesa/b2c/v3/paymentrequest")
def b2c_payment():
    """Acknowledge a B2C payment request; its result follows in the background."""
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := take_fault("b2c"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, INVALID, "Bad Request - Invalid JSON")
    if problem := _validate(body):
        return daraja_error(400, INVALID, problem)
    code, desc = _outcome(body)
    originator, conversation_id = body["OriginatorConversationID"], new_conversation_id()
    try:
        db.session.execute(
            insert(sim_b2c_payments).values(
                conversation_id=conversation_id,
                originator_conversation_id=originator,
                phone=str(body["PartyB"]),
                amount=whole_shillings(body["Amount"]),
                command_id=body["CommandID"],
                result_code=str(code),
                result_desc=desc,
                receipt=new_receipt() if code == 0 else None,
                result_url=body["ResultURL"],
                timeout_url=body["QueueTimeOutURL"],
                created_at=utcnow(),
            )
        )
        db.session.commit()
    except IntegrityError:  # the id was used before (or at this very moment): one payment
        db.session.rollback()
        return daraja_error(400, INVALID, DUPLICATE)
    return acknowledge(post_result, originator, conversation_id)


def result_body(row) -> dict:
    """What Daraja posts to the ResultURL: ResultCode a number; the payment's parameters
    on success only."""
    result = {
        "ResultType": 0,
        "ResultCode": int(row.result_code),
        "ResultDesc": row.result_desc,
        "OriginatorConversationID": row.originator_conversation_id,
        "ConversationID": row.conversation_id,
        "TransactionID": row.receipt or new_receipt(),
    }
    if row.receipt:
        completed = row.created_at.astimezone(EAT)
        result["ResultParameters"] = {
            "ResultParameter": [
                {"Key": "TransactionAmount", "Value": row.amount},
                {"Key": "TransactionReceipt", "Value": row.receipt},
                {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"},
                {"Key": "B2CChargesPaidAccountAvailableFunds", "Value": 0.00},
                {"Key": "ReceiverPartyPublicName", "Value": f"{row.phone} - {B2C_CUSTOMER}"},
                {"Key": "TransactionCompletedDateTime", "Value": f"{completed:%d.%m.%Y %H:%M:%S}"},
                {"Key": "B2CUtilityAccountAvailableFunds", "Value": UTILITY_FUNDS},
                {"Key": "B2CWorkingAccountAvailableFunds", "Value": 0.00},
            ]
        }
    result["ReferenceData"] = {
        "ReferenceItem": {"Key": "QueueTimeoutURL", "Value": row.timeout_url}
    }
    return {"Result": result}


def post_result(app, conversation_id: str) -> None:
    """POST a B2C payment's result like Daraja does (once; no retries); a background task."""
    post_outcome(app, sim_b2c_payments, conversation_id, result_body)
