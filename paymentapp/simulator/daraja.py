"""Daraja's endpoints as the real client calls them: OAuth, STK Push, STK Query, C2B
Register URL (v2).

They copy Daraja's checks, messages and quirks (docs/payments.md, "The Daraja
simulator"). A fault queued through phone.py's test API replaces the next answer of its
endpoint. The two hooks at the top guard every simulator URL, the phone page included.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, jsonify, request
from sqlalchemy import delete, insert, select, update

from ..config import FORBIDDEN_CALLBACK_WORDS
from ..extensions import db, socketio
from ..models import utcnow
from ..mpesa.formats import (
    ACCOUNT_REFERENCE_MAX,
    EAT,
    MAX_AMOUNT,
    TRANSACTION_DESC_MAX,
    stk_password,
)
from ..phones import mask_phone
from . import bp, c2b
from .callbacks import ACTIONS, answer_later, expire_due_prompts
from .models import ensure_tables, get_prompt, sim_faults, sim_prompts, sim_tokens

log = logging.getLogger(__name__)

TOKEN_TTL_S = 3599
PHONE_RE = re.compile(r"^254\d{9}$")
TIMESTAMP_RE = re.compile(r"^\d{14}$")


@bp.before_request
def _simulator_only():
    if current_app.config["MPESA_ENV"] != "simulator":  # never reachable in live modes
        return daraja_error(404, "404.001.01", "Resource not found")
    ensure_tables()
    return None


@bp.after_request
def _close_connection(response):
    """The app calls its own simulator; a kept-alive socket to itself would hold the worker
    through gunicorn's whole graceful timeout at shutdown."""
    response.headers["Connection"] = "close"
    return response


def daraja_error(status: int, code: str, message: str):
    return jsonify(
        {"requestId": f"sim-{secrets.token_hex(6)}", "errorCode": code, "errorMessage": message}
    ), status


def take_fault(endpoint: str):
    """A queued fault for this endpoint (tests queue them through phone.py's API)."""
    fault = db.session.execute(
        select(sim_faults)
        .where(sim_faults.c.endpoint == endpoint)
        .order_by(sim_faults.c.id)
        .limit(1)
    ).first()
    if fault is None:
        return None
    db.session.execute(delete(sim_faults).where(sim_faults.c.id == fault.id))
    db.session.commit()
    if fault.delay_s:
        time.sleep(fault.delay_s)
    body = fault.body
    return current_app.response_class(body, status=fault.status, mimetype="application/json")


# -- OAuth ----------------------------------------------------------------------------------


@bp.get("/oauth/v1/generate")
def oauth():
    """Client-credentials token; issuing one invalidates every earlier token."""
    if fault := take_fault("oauth"):
        return fault
    if request.args.get("grant_type") != "client_credentials":
        return daraja_error(400, "400.008.02", "Invalid grant type passed")
    auth = request.authorization
    config = current_app.config
    if (
        auth is None
        or auth.username != config["MPESA_CONSUMER_KEY"]
        or auth.password != config["MPESA_CONSUMER_SECRET"]
    ):
        return daraja_error(400, "400.008.01", "Invalid Authentication passed")
    token = secrets.token_urlsafe(24)
    now = utcnow()
    db.session.execute(
        update(sim_tokens).where(sim_tokens.c.consumer_key == auth.username).values(revoked=True)
    )
    db.session.execute(
        insert(sim_tokens).values(
            token=token,
            consumer_key=auth.username,
            issued_at=now,
            expires_at=now + timedelta(seconds=TOKEN_TTL_S),
            revoked=False,
        )
    )
    db.session.commit()
    # Daraja sends expires_in as a string
    return jsonify({"access_token": token, "expires_in": str(TOKEN_TTL_S)})


def token_ok() -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return False
    row = db.session.execute(
        select(sim_tokens).where(sim_tokens.c.token == header[7:].strip())
    ).first()
    return bool(row and not row.revoked and row.expires_at > utcnow())


# -- STK Push -------------------------------------------------------------------------------


def _check_password(body: dict) -> bool:
    config = current_app.config
    expected = stk_password(
        config["MPESA_SHORTCODE"], config["MPESA_PASSKEY"], str(body.get("Timestamp"))
    )
    return secrets.compare_digest(str(body.get("Password", "")), expected)


def whole_shillings(value) -> int | None:
    """Daraja takes the amount as a whole number (or digits in a string), 1 to MAX_AMOUNT."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= MAX_AMOUNT:
        return value
    return None


def callback_url_ok(url) -> bool:
    """Daraja's rules for callback URLs: http(s), a host, none of its forbidden words."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.netloc)
        and not any(word in url.lower() for word in FORBIDDEN_CALLBACK_WORDS)
    )


def _validate_push(body: dict) -> tuple[str, str] | None:
    """Daraja's checks, in Daraja's words; None when the request is acceptable."""
    config = current_app.config
    invalid = "400.002.02"
    if str(body.get("BusinessShortCode")) != config["MPESA_SHORTCODE"]:
        return invalid, "Bad Request - Invalid BusinessShortCode"
    if not TIMESTAMP_RE.match(str(body.get("Timestamp", ""))):
        return invalid, "Bad Request - Invalid Timestamp"
    if not _check_password(body):
        return "500.001.1001", "Wrong credentials"
    if body.get("TransactionType") not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
        return invalid, "Bad Request - Invalid TransactionType"
    if whole_shillings(body.get("Amount")) is None:
        return invalid, "Bad Request - Invalid Amount"
    for field in ("PartyA", "PhoneNumber"):
        if not PHONE_RE.match(str(body.get(field, ""))):
            return invalid, f"Bad Request - Invalid {field}"
    if str(body.get("PartyB")) != config["MPESA_PARTY_B"]:
        return invalid, "Bad Request - Invalid PartyB"
    if not callback_url_ok(str(body.get("CallBackURL", ""))):
        return invalid, "Bad Request - Invalid CallBackURL"
    reference = body.get("AccountReference")
    if not isinstance(reference, str) or not 1 <= len(reference) <= ACCOUNT_REFERENCE_MAX:
        return invalid, "Bad Request - Invalid AccountReference"
    desc = body.get("TransactionDesc")
    if not isinstance(desc, str) or not 1 <= len(desc) <= TRANSACTION_DESC_MAX:
        return invalid, "Bad Request - Invalid TransactionDesc"
    return None


@bp.post("/mpesa/stkpush/v1/processrequest")
def stk_push():
    """Accept an STK Push, open a prompt on the simulated phone."""
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := take_fault("stkpush"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, "400.002.02", "Bad Request - Invalid JSON")
    if problem := _validate_push(body):
        code, message = problem
        return daraja_error(500 if code.startswith("500") else 400, code, message)
    phone = str(body["PhoneNumber"])
    now = utcnow()
    expire_due_prompts()
    busy = db.session.execute(
        select(sim_prompts.c.checkout_request_id).where(
            sim_prompts.c.phone == phone,
            sim_prompts.c.state == "open",
            sim_prompts.c.expires_at > now,
        )
    ).first()
    if busy:
        return daraja_error(
            500,
            "500.001.1001",
            "Unable to lock subscriber, a transaction is "
            "already in process for the current subscriber",
        )
    eat = now.astimezone(EAT)
    checkout_id = f"ws_CO_{eat:%d%m%Y%H%M%S}{secrets.randbelow(10**12):012d}"
    merchant_id = f"{secrets.randbelow(10**5)}-{secrets.randbelow(10**8)}-1"
    ttl = float(current_app.config.get("MPESA_SIMULATOR_PROMPT_TTL_S", 60))
    db.session.execute(
        insert(sim_prompts).values(
            checkout_request_id=checkout_id,
            merchant_request_id=merchant_id,
            phone=phone,
            amount=whole_shillings(body["Amount"]),
            account_reference=body["AccountReference"],
            transaction_desc=body["TransactionDesc"],
            callback_url=body["CallBackURL"],
            transaction_type=body["TransactionType"],
            party_b=str(body["PartyB"]),
            state="open",
            send_callback=True,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    db.session.commit()
    auto = current_app.config.get("MPESA_SIMULATOR_AUTO")
    if auto in ACTIONS:
        delay = current_app.config.get("MPESA_SIMULATOR_AUTO_DELAY_S", 3)
        socketio.start_background_task(
            answer_later, current_app._get_current_object(), checkout_id, auto, delay
        )
    log.info(
        "simulator: prompt %s opened on %s for %s KES (%s)",
        checkout_id,
        mask_phone(phone),
        body["Amount"],
        body["AccountReference"],
    )
    return jsonify(
        {
            "MerchantRequestID": merchant_id,
            "CheckoutRequestID": checkout_id,
            "ResponseCode": "0",
            "ResponseDescription": "Success. Request accepted for processing",
            "CustomerMessage": "Success. Request accepted for processing",
        }
    )


# -- STK Query --------------------------------------------------------------------------------


@bp.post("/mpesa/stkpushquery/v1/query")
def stk_query():
    """How did a prompt end? "being processed" while it is open."""
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := take_fault("query"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, "400.002.02", "Bad Request - Invalid JSON")
    if str(body.get("BusinessShortCode")) != current_app.config["MPESA_SHORTCODE"]:
        return daraja_error(400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
    if not _check_password(body):
        return daraja_error(500, "500.001.1001", "Wrong credentials")
    expire_due_prompts()
    prompt = get_prompt(str(body.get("CheckoutRequestID", "")))
    if prompt is None:
        return daraja_error(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")
    if prompt.state == "open":
        return daraja_error(500, "500.001.1001", "The transaction is being processed")
    return jsonify(
        {
            "ResponseCode": "0",
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": prompt.merchant_request_id,
            "CheckoutRequestID": prompt.checkout_request_id,
            "ResultCode": str(prompt.result_code),  # a string here, a number in callbacks
            "ResultDesc": prompt.result_desc,
        }
    )


# -- C2B Register URL (v2) ------------------------------------------------------------------


def c2b_shortcodes() -> set[str]:
    """The shortcodes this app's credentials may register C2B URLs for."""
    config = current_app.config
    return {config["MPESA_C2B_SHORTCODE"], config["MPESA_SHORTCODE"], config["MPESA_PARTY_B"]}


@bp.post("/mpesa/c2b/v2/registerurl")
def c2b_register_url():
    """Store a shortcode's confirmation and validation URLs (re-registering replaces them,
    as the sandbox allows); answer in Daraja's words and spelling."""
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := take_fault("registerurl"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, "400.002.02", "Bad Request - Invalid JSON")
    shortcode = body.get("ShortCode")
    if isinstance(shortcode, bool) or str(shortcode) not in c2b_shortcodes():
        return daraja_error(400, "400.002.02", "Bad Request - Invalid ShortCode")
    if body.get("ResponseType") not in c2b.RESPONSE_TYPES:  # exactly, case and all
        return daraja_error(400, "400.002.02", "Bad Request - Invalid ResponseType")
    for field in ("ConfirmationURL", "ValidationURL"):
        if not callback_url_ok(body.get(field)):
            return daraja_error(400, "400.002.02", f"Bad Request - Invalid {field}")
    row = c2b.register_urls(
        str(shortcode), body["ResponseType"], body["ConfirmationURL"], body["ValidationURL"]
    )
    log.info("simulator: C2B URLs registered for %s (%s)", shortcode, body["ResponseType"])
    return jsonify(
        {
            "OriginatorCoversationID": row.conversation_id,  # sic: Daraja's spelling
            "ResponseCode": "0",
            "ResponseDescription": "Success",
        }
    )
