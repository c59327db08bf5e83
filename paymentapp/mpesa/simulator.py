"""Built-in Daraja simulator, served at `/_simulator` in simulator mode only.

It speaks Daraja's protocol over real HTTP, so the real client code runs end to end:
OAuth (a new token invalidates the previous one), STK Push with Daraja's field checks and
subscriber lock, STK Query (including "The transaction is being processed"), and
real-format callbacks posted to the CallBackURL. `/_simulator/phone` is a simulated
handset that answers prompts. State lives in the app database (`sim_*` tables, created
on first use and never part of the app's migrations), so it works across workers.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from flask import Blueprint, current_app, jsonify, render_template, request
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    inspect,
    select,
    update,
)

from ..config import FORBIDDEN_CALLBACK_WORDS
from ..extensions import db, socketio
from ..models import UTCDateTime, utcnow
from ..phones import mask_phone
from .client import EAT, stk_password

log = logging.getLogger(__name__)
bp = Blueprint("simulator", __name__, url_prefix="/_simulator")

TOKEN_TTL_S = 3599
PHONE_RE = re.compile(r"^254\d{9}$")
TIMESTAMP_RE = re.compile(r"^\d{14}$")

# What each button on the simulated phone does: (ResultCode, ResultDesc, send callback).
ACTIONS = {
    "accept": (0, "The service request is processed successfully.", True),
    "cancel": (1032, "Request cancelled by user", True),
    "insufficient": (1, "The balance is insufficient for the transaction.", True),
    "wrong_pin": (2001, "The initiator information is invalid.", True),
    "lose_callback": (0, "The service request is processed successfully.", False),
    "expire": (1037, "DS timeout user cannot be reached", True),
}

sim_metadata = MetaData()
sim_tokens = Table(
    "sim_tokens",
    sim_metadata,
    Column("token", String(64), primary_key=True),
    Column("consumer_key", String(128), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)
sim_prompts = Table(
    "sim_prompts",
    sim_metadata,
    Column("checkout_request_id", String(64), primary_key=True),
    Column("merchant_request_id", String(64), nullable=False),
    Column("phone", String(12), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("account_reference", String(12), nullable=False),
    Column("transaction_desc", String(13), nullable=False),
    Column("callback_url", Text, nullable=False),
    Column("transaction_type", String(32), nullable=False),
    Column("party_b", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # open | answered
    Column("result_code", Integer),
    Column("result_desc", String(255)),
    Column("receipt", String(16)),
    Column("send_callback", Boolean, nullable=False, default=True),
    Column("callback_status", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("answered_at", UTCDateTime),
)
sim_faults = Table(
    "sim_faults",
    sim_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("delay_s", Float, nullable=False, default=0),
)
_ready_engines: set[str] = set()


def ensure_tables() -> None:
    """Create the simulator's own tables on first use (once per process and database)."""
    key = str(db.engine.url)
    if key in _ready_engines:
        return
    inspector = inspect(db.engine)
    stale = any(
        inspector.has_table(table.name)
        and {c["name"] for c in inspector.get_columns(table.name)} != set(table.columns.keys())
        for table in sim_metadata.sorted_tables
    )
    if stale:  # simulator state is disposable: an older layout is simply rebuilt
        log.info("simulator: rebuilding its sim_* tables for a newer layout")
        sim_metadata.drop_all(db.engine, checkfirst=True)
    sim_metadata.create_all(db.engine, checkfirst=True)
    _ready_engines.add(key)


def reset_state() -> None:
    """Forget all tokens, prompts and faults (tests)."""
    ensure_tables()
    for table in (sim_tokens, sim_prompts, sim_faults):
        db.session.execute(delete(table))
    db.session.commit()


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


def _take_fault(endpoint: str):
    """A queued fault for this endpoint (tests inject them through the API below)."""
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
    if fault := _take_fault("oauth"):
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


def _token_ok() -> bool:
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


def _whole_shillings(value) -> int | None:
    """Daraja takes the amount as a whole number (or digits in a string), 1 to 250,000."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= 250_000:
        return value
    return None


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
    if _whole_shillings(body.get("Amount")) is None:
        return invalid, "Bad Request - Invalid Amount"
    for field in ("PartyA", "PhoneNumber"):
        if not PHONE_RE.match(str(body.get(field, ""))):
            return invalid, f"Bad Request - Invalid {field}"
    if str(body.get("PartyB")) != config["MPESA_PARTY_B"]:
        return invalid, "Bad Request - Invalid PartyB"
    url = str(body.get("CallBackURL", ""))
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or any(word in url.lower() for word in FORBIDDEN_CALLBACK_WORDS)
    ):
        return invalid, "Bad Request - Invalid CallBackURL"
    reference = body.get("AccountReference")
    if not isinstance(reference, str) or not 1 <= len(reference) <= 12:
        return invalid, "Bad Request - Invalid AccountReference"
    desc = body.get("TransactionDesc")
    if not isinstance(desc, str) or not 1 <= len(desc) <= 13:
        return invalid, "Bad Request - Invalid TransactionDesc"
    return None


@bp.post("/mpesa/stkpush/v1/processrequest")
def stk_push():
    """Accept an STK Push, open a prompt on the simulated phone."""
    if not _token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := _take_fault("stkpush"):
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
            amount=_whole_shillings(body["Amount"]),
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
            _answer_later, current_app._get_current_object(), checkout_id, auto, delay
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


# -- answering prompts ----------------------------------------------------------------------


def _receipt() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return "S" + "".join(secrets.choice(alphabet) for _ in range(9))


def answer_prompt(checkout_id: str, action: str) -> dict | None:
    """Resolve an open prompt (exactly once) and post its callback in the background.

    Returns the prompt, or None if it was not open (already answered or unknown).
    """
    result_code, result_desc, send = ACTIONS[action]
    receipt = _receipt() if result_code == 0 else None
    won = db.session.execute(
        update(sim_prompts)
        .where(sim_prompts.c.checkout_request_id == checkout_id, sim_prompts.c.state == "open")
        .values(
            state="answered",
            result_code=result_code,
            result_desc=result_desc,
            receipt=receipt,
            send_callback=send,
            answered_at=utcnow(),
        )
    ).rowcount
    db.session.commit()
    if not won:
        return None
    prompt = _prompt(checkout_id)
    if send:
        socketio.start_background_task(
            _post_callback, current_app._get_current_object(), checkout_id
        )
    else:
        _set_callback_status(checkout_id, "not sent (lost on purpose)")
    return prompt


def callback_body(prompt) -> dict:
    """The exact shape Daraja posts (metadata only on success; Balance without Value)."""
    callback = {
        "MerchantRequestID": prompt.merchant_request_id,
        "CheckoutRequestID": prompt.checkout_request_id,
        "ResultCode": prompt.result_code,
        "ResultDesc": prompt.result_desc,
    }
    if prompt.result_code == 0:
        paid_at = (prompt.answered_at or utcnow()).astimezone(EAT)
        callback["CallbackMetadata"] = {
            "Item": [
                # Daraja's wire format: the amount as a JSON number with decimals (1.0)
                {"Name": "Amount", "Value": prompt.amount * 1.0},
                {"Name": "MpesaReceiptNumber", "Value": prompt.receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": int(paid_at.strftime("%Y%m%d%H%M%S"))},
                {"Name": "PhoneNumber", "Value": int(prompt.phone)},
            ]
        }
    return {"Body": {"stkCallback": callback}}


def _prompt(checkout_id: str):
    return db.session.execute(
        select(sim_prompts).where(sim_prompts.c.checkout_request_id == checkout_id)
    ).first()


def _set_callback_status(checkout_id: str, status: str) -> None:
    db.session.execute(
        update(sim_prompts)
        .where(sim_prompts.c.checkout_request_id == checkout_id)
        .values(callback_status=status[:255])
    )
    db.session.commit()


def _post_callback(app, checkout_id: str) -> None:
    """Background: POST the callback like Daraja does (once; no retries)."""
    with app.app_context():
        try:
            prompt = _prompt(checkout_id)
            body = callback_body(prompt)
            url = prompt.callback_url
            try:
                response = requests.post(url, json=body, timeout=10)
                status = f"sent: HTTP {response.status_code}"
            except requests.RequestException as exc:
                status = f"failed: {exc.__class__.__name__}"
            _set_callback_status(checkout_id, status)
        except Exception:  # noqa: BLE001 - a background task must not die loudly
            log.warning("simulator: callback for %s not sent", checkout_id, exc_info=True)
        finally:
            db.session.remove()


def _answer_later(app, checkout_id: str, action: str, delay: float) -> None:
    time.sleep(delay)
    with app.app_context():
        try:
            answer_prompt(checkout_id, action)
        except Exception:  # noqa: BLE001
            log.warning("simulator: auto-answer of %s failed", checkout_id, exc_info=True)
        finally:
            db.session.remove()


def expire_due_prompts() -> int:
    """Prompts nobody answered end with 1037 once their lifetime is over, like a real
    phone's. Swept lazily whenever the simulator is used (push, query, phone page), so
    no timer outlives a request."""
    due = db.session.scalars(
        select(sim_prompts.c.checkout_request_id).where(
            sim_prompts.c.state == "open", sim_prompts.c.expires_at <= utcnow()
        )
    ).all()
    return sum(answer_prompt(checkout_id, "expire") is not None for checkout_id in due)


# -- STK Query --------------------------------------------------------------------------------


@bp.post("/mpesa/stkpushquery/v1/query")
def stk_query():
    """How did a prompt end? "being processed" while it is open."""
    if not _token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := _take_fault("query"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, "400.002.02", "Bad Request - Invalid JSON")
    if str(body.get("BusinessShortCode")) != current_app.config["MPESA_SHORTCODE"]:
        return daraja_error(400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
    if not _check_password(body):
        return daraja_error(500, "500.001.1001", "Wrong credentials")
    expire_due_prompts()
    prompt = _prompt(str(body.get("CheckoutRequestID", "")))
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


# -- the simulated phone and its JSON API ------------------------------------------------------


def prompt_json(prompt) -> dict:
    return {
        "checkout_request_id": prompt.checkout_request_id,
        "phone_masked": mask_phone(prompt.phone),
        "amount": prompt.amount,
        "account_reference": prompt.account_reference,
        "transaction_desc": prompt.transaction_desc,
        "transaction_type": prompt.transaction_type,
        "party_b": prompt.party_b,
        "state": prompt.state,
        "result_code": prompt.result_code,
        "result_desc": prompt.result_desc,
        "receipt": prompt.receipt,
        "callback_status": prompt.callback_status,
        "created_at": prompt.created_at.isoformat(),
        "expires_at": prompt.expires_at.isoformat(),
    }


@bp.get("/api/prompts")
def list_prompts():
    """Recent prompts, newest first (optionally `?phone=2547…` or `?account_reference=`)."""
    expire_due_prompts()
    stmt = select(sim_prompts).order_by(sim_prompts.c.created_at.desc()).limit(50)
    if phone := request.args.get("phone"):
        stmt = stmt.where(sim_prompts.c.phone == phone)
    if reference := request.args.get("account_reference"):
        stmt = stmt.where(sim_prompts.c.account_reference == reference)
    return jsonify(prompts=[prompt_json(p) for p in db.session.execute(stmt)])


@bp.post("/api/prompts/<checkout_id>/<action>")
def act_on_prompt(checkout_id: str, action: str):
    """Press a button on the simulated phone."""
    if action == "ignore":
        prompt = _prompt(checkout_id)
        if prompt is None:
            return _sim_error(404, "No such prompt.")
        return jsonify(prompt_json(prompt))
    if action not in ACTIONS:
        return _sim_error(422, f"Unknown action; use one of {', '.join([*ACTIONS, 'ignore'])}.")
    prompt = answer_prompt(checkout_id, action)
    if prompt is None:
        exists = _prompt(checkout_id) is not None
        return _sim_error(
            409 if exists else 404,
            "This prompt was already answered." if exists else "No such prompt.",
        )
    return jsonify(prompt_json(prompt))


@bp.post("/api/prompts/<checkout_id>/resend-callback")
def resend_callback(checkout_id: str):
    """Post an answered prompt's callback again (Daraja sometimes sends duplicates)."""
    prompt = _prompt(checkout_id)
    if prompt is None or prompt.state != "answered":
        return _sim_error(409, "Only answered prompts have a callback.")
    _post_callback(current_app._get_current_object(), checkout_id)
    return jsonify(prompt_json(_prompt(checkout_id)))


@bp.post("/api/faults")
def add_fault():
    """Queue a canned answer for the next call to `oauth`, `stkpush` or `query`."""
    data = request.get_json(silent=True) or {}
    if data.get("endpoint") not in ("oauth", "stkpush", "query"):
        return _sim_error(422, "endpoint must be oauth, stkpush or query")
    body = data.get("body", {})
    db.session.execute(
        insert(sim_faults).values(
            endpoint=data["endpoint"],
            status=int(data.get("status", 500)),
            body=body if isinstance(body, str) else json.dumps(body),
            delay_s=float(data.get("delay_s", 0)),
        )
    )
    db.session.commit()
    return jsonify(ok=True), 201


@bp.post("/api/tokens/revoke")
def revoke_tokens():
    """Invalidate every token, as if it expired mid-flight."""
    db.session.execute(update(sim_tokens).values(revoked=True))
    db.session.commit()
    return jsonify(ok=True)


def _sim_error(status: int, message: str):
    return jsonify({"error": {"code": "simulator_error", "message": message, "fields": {}}}), status


@bp.get("/phone")
def phone():
    """The simulated handset."""
    return render_template("simulator/phone.html", actions=ACTIONS)
