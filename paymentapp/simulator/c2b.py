"""Paybill (C2B) in the simulator: the URLs a shortcode registered, the customer's Pay Bill
payment (a validation, then a confirmation, posted in Daraja's format) and the C2B twins
of STK payments (docs/payments.md, "The Daraja simulator").

- Register URL (daraja.py) stores a shortcode's URLs. A Pay Bill payment to the app's own
  `MPESA_C2B_SHORTCODE` while nothing is registered registers the app's URLs from its
  config first, as `flask mpesa register-c2b` would, so `make run` needs no manual step.
- A payment is posted in the background, like STK callbacks: first the validation, when
  the app has `MPESA_C2B_VALIDATION` on (it stands for Safaricom's "external validation"
  here), then, unless the app rejected it, the confirmation (`copies` times: Daraja
  sometimes sends one twice). A validation URL that gives no usable answer is treated as
  M-Pesa does: the registered ResponseType decides (Completed or Cancelled).
- STK twins: once URLs are registered for the prompt's PartyB, an accepted STK prompt
  whose callback is sent also sends a confirmation with TransID = its receipt and
  BillRefNumber = its AccountReference, before or after the STK callback (the setting
  `stk_twins`: off | before | after, default after).
"""

from __future__ import annotations

import json
import logging
import secrets

import requests
from flask import current_app
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db, socketio
from ..models import utcnow
from ..mpesa.formats import eat_timestamp
from .models import new_receipt, sim_c2b_payments, sim_c2b_urls, sim_settings

log = logging.getLogger(__name__)

SIM_MSISDN = "254708374149"  # the phone the Pay Bill screen pays from (Daraja's test MSISDN)
RESPONSE_TYPES = ("Completed", "Cancelled")
TWIN_ORDERS = ("off", "before", "after")
SETTINGS = {  # name: (default, allowed values)
    "stk_twins": ("after", TWIN_ORDERS),
    # where the initiator APIs' results go: their ResultURL, or (a queue timeout on
    # demand) their QueueTimeOutURL (initiator.py)
    "initiator_results": ("result", ("result", "timeout")),
    # what M-Pesa says of the initiator (initiator.py): fine, no role (21), locked (8006)
    "initiator_state": ("ok", ("ok", "no_role", "locked")),
    # whether the B2C float can pay (b2c.py): insufficient → ResultCode 1
    "b2c_funds": ("enough", ("enough", "insufficient")),
}
VALIDATION_TIMEOUT_S = 8  # M-Pesa waits about this long for the validation answer
MAX_COPIES = 10
# Daraja's validation result codes (docs/daraja.md, "C2B")
RESULT_CODES = {
    "0": "accepted",
    "C2B00011": "invalid MSISDN",
    "C2B00012": "invalid account number",
    "C2B00013": "invalid amount",
    "C2B00014": "invalid KYC details",
    "C2B00015": "invalid shortcode",
    "C2B00016": "other error",
}

# -- settings ---------------------------------------------------------------------------------


def get_setting(name: str) -> str:
    value = db.session.scalar(select(sim_settings.c.value).where(sim_settings.c.name == name))
    return value if value is not None else SETTINGS[name][0]


def settings() -> dict:
    return {name: get_setting(name) for name in SETTINGS}


def set_setting(name: str, value: str) -> None:
    db.session.execute(delete(sim_settings).where(sim_settings.c.name == name))
    db.session.execute(insert(sim_settings).values(name=name, value=value))
    db.session.commit()


# -- registered URLs --------------------------------------------------------------------------


def registration(shortcode: str):
    """The URLs registered for a shortcode, or None."""
    return db.session.execute(
        select(sim_c2b_urls).where(sim_c2b_urls.c.shortcode == str(shortcode))
    ).first()


def register_urls(
    shortcode: str,
    response_type: str,
    confirmation_url: str,
    validation_url: str,
    *,
    automatic: bool = False,
):
    """Store a shortcode's URLs, replacing earlier ones (the sandbox lets you re-register;
    production needs Safaricom's portal for that). Returns the stored row."""
    values = {
        "shortcode": str(shortcode),
        "response_type": response_type,
        "confirmation_url": confirmation_url,
        "validation_url": validation_url,
        "conversation_id": f"{secrets.randbelow(10**5)}-{secrets.randbelow(10**8)}-1",
        "automatic": automatic,
        "registered_at": utcnow(),
    }
    db.session.execute(delete(sim_c2b_urls).where(sim_c2b_urls.c.shortcode == str(shortcode)))
    try:
        db.session.execute(insert(sim_c2b_urls).values(**values))
        db.session.commit()
    except IntegrityError:  # registered at the same moment by another request: theirs stands
        db.session.rollback()
    return registration(shortcode)


def app_urls(config) -> tuple[str, str]:
    """The app's confirmation and validation URLs, built as `flask mpesa register-c2b`
    builds them."""
    base = f"{config['PUBLIC_BASE_URL']}/callbacks/c2b"
    token = config["MPESA_CALLBACK_TOKEN"]
    return f"{base}/confirmation/{token}", f"{base}/validation/{token}"


def register_app_urls(shortcode: str):
    """Register the app's own URLs (ResponseType Completed) for its shortcode."""
    confirmation_url, validation_url = app_urls(current_app.config)
    log.info("simulator: no C2B URLs for %s yet; registered the app's own", shortcode)
    return register_urls(shortcode, "Completed", confirmation_url, validation_url, automatic=True)


def registration_json(row) -> dict:
    return {
        "shortcode": row.shortcode,
        "response_type": row.response_type,
        "confirmation_url": row.confirmation_url,
        "validation_url": row.validation_url,
        "automatic": row.automatic,
        "registered_at": row.registered_at.isoformat(),
    }


# -- payments ---------------------------------------------------------------------------------


def mask_msisdn(phone: str) -> str:
    """Daraja v2's masked MSISDN: `254712345126` → `2547 ***** 126`."""
    return f"{phone[:4]} ***** {phone[-3:]}"


def get_payment(payment_id: int):
    return db.session.execute(
        select(sim_c2b_payments).where(sim_c2b_payments.c.id == payment_id)
    ).first()


def _balance(shortcode: str, amount: int) -> str:
    """The business's balance after this payment: what the simulator saw paid in."""
    before = db.session.scalar(
        select(func.coalesce(func.sum(sim_c2b_payments.c.amount), 0)).where(
            sim_c2b_payments.c.shortcode == shortcode,
            sim_c2b_payments.c.state != "rejected",
        )
    )
    return f"{int(before) + amount:.2f}"


def new_payment(
    *,
    source: str,
    shortcode: str,
    account: str,
    amount: int,
    msisdn: str,
    trans_id: str | None = None,
    copies: int = 1,
    overrides: dict | None = None,
    transaction_type: str = "Pay Bill",
    twin_order: str | None = None,
    paid_at=None,
) -> int:
    """Record a payment to be posted; returns its id."""
    result = db.session.execute(
        insert(sim_c2b_payments).values(
            trans_id=trans_id or new_receipt(),
            source=source,
            transaction_type=transaction_type,
            shortcode=shortcode,
            account=account,
            amount=amount,
            msisdn=msisdn,
            trans_time=eat_timestamp(paid_at or utcnow()),
            balance=_balance(shortcode, amount),
            overrides=json.dumps(overrides) if overrides else None,
            copies=copies,
            twin_order=twin_order,
            state="pending",
            created_at=utcnow(),
        )
    )
    db.session.commit()
    return result.inserted_primary_key[0]


def payment_body(row) -> dict:
    """The exact body Daraja posts (validation and confirmation have the same fields)."""
    body = {
        "TransactionType": row.transaction_type,
        "TransID": row.trans_id,
        "TransTime": row.trans_time,
        "TransAmount": f"{row.amount:.2f}",  # a string with decimals
        "BusinessShortCode": row.shortcode,
        "BillRefNumber": row.account,  # exactly as typed
        "InvoiceNumber": "",
        "OrgAccountBalance": row.balance,
        "ThirdPartyTransID": "",
        "MSISDN": mask_msisdn(row.msisdn),
        "FirstName": "John",
        "MiddleName": "",
        "LastName": "",
    }
    if row.overrides:
        body.update(json.loads(row.overrides))
    return body


def payment_json(row) -> dict:
    return {
        "id": row.id,
        "trans_id": row.trans_id,
        "source": row.source,
        "transaction_type": row.transaction_type,
        "shortcode": row.shortcode,
        "account": row.account,
        "amount": row.amount,
        "msisdn_masked": mask_msisdn(row.msisdn),
        "copies": row.copies,
        "twin_order": row.twin_order,
        "state": row.state,
        "result_code": row.result_code,
        "result_desc": RESULT_CODES.get(row.result_code or ""),
        "validation_status": row.validation_status,
        "confirmation_status": row.confirmation_status,
        "done": row.state == "rejected"
        or (row.state == "completed" and bool(row.confirmation_status)),
        "created_at": row.created_at.isoformat(),
    }


def start_payment(**fields) -> int:
    """Record a payment and post it in the background; returns its id."""
    payment_id = new_payment(**fields)
    socketio.start_background_task(post_c2b, current_app._get_current_object(), payment_id)
    return payment_id


def post_c2b(app, payment_id: int) -> None:
    """Background: post a payment's validation and confirmation."""
    with app.app_context():
        try:
            send_payment(payment_id)
        except Exception:  # noqa: BLE001 - a background task must not die loudly
            log.warning("simulator: C2B payment %s not sent", payment_id, exc_info=True)
        finally:
            db.session.remove()


def _set(payment_id: int, **values) -> None:
    db.session.execute(
        update(sim_c2b_payments).where(sim_c2b_payments.c.id == payment_id).values(**values)
    )
    db.session.commit()


def send_payment(payment_id: int) -> None:
    """Validate (if the app has validation on; never for STK twins), then confirm."""
    row = get_payment(payment_id)
    urls = registration(row.shortcode)
    if urls is None:
        _set(payment_id, state="rejected", validation_status="no URLs registered")
        return
    body = payment_body(row)
    if row.source != "stk_twin" and current_app.config["MPESA_C2B_VALIDATION"]:
        _set(payment_id, state="validating")
        code, status = _validate(urls, body)
        if code != "0":
            _set(payment_id, state="rejected", result_code=code, validation_status=status[:255])
            log.info("simulator: Paybill payment %s rejected: %s", row.trans_id, status)
            return
        _set(payment_id, result_code="0", validation_status=status[:255])
    else:
        why = "STK payment" if row.source == "stk_twin" else "validation is off"
        _set(payment_id, result_code="0", validation_status=f"not asked ({why})")
    _set(payment_id, state="completed")  # the money moved; now M-Pesa tells the business
    if row.copies == 0:  # lost on purpose: only Pull Transactions can find it now
        _set(payment_id, confirmation_status="not sent (lost on purpose)")
        return
    answers = []
    for _ in range(row.copies):
        try:
            response = requests.post(urls.confirmation_url, json=body, timeout=10)
            answers.append(str(response.status_code))
        except requests.RequestException as exc:
            answers.append(exc.__class__.__name__)
    times = f" {len(answers)}×" if len(answers) > 1 else ""
    _set(payment_id, confirmation_status=f"sent{times}: HTTP {', '.join(answers)}"[:255])


def _validate(urls, body: dict) -> tuple[str | None, str]:
    """Ask the validation URL; ("0", …) to go on, (code, …) when rejected."""
    why = None
    try:
        response = requests.post(urls.validation_url, json=body, timeout=VALIDATION_TIMEOUT_S)
    except requests.RequestException as exc:
        why = exc.__class__.__name__
    else:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200:
            why = f"HTTP {response.status_code}"
        elif not isinstance(answer, dict) or "ResultCode" not in answer:
            why = "no ResultCode in the answer"
        else:
            code = str(answer["ResultCode"]).strip()[:16]
            if code == "0":
                return "0", "accepted (ResultCode 0)"
            return code, f"rejected: {code} ({RESULT_CODES.get(code, 'unknown code')})"
    if urls.response_type == "Completed":
        return "0", f"no usable answer ({why}): completed, as ResponseType Completed says"
    return None, f"no usable answer ({why}): cancelled, as ResponseType Cancelled says"


# -- STK twins --------------------------------------------------------------------------------


def twin_for(prompt):
    """The C2B twin of an accepted prompt (recorded once), or None when twins are off or no
    URLs are registered for the prompt's PartyB."""
    order = get_setting("stk_twins")
    if order == "off" or prompt.result_code != 0 or registration(prompt.party_b) is None:
        return None
    existing = db.session.execute(
        select(sim_c2b_payments).where(
            sim_c2b_payments.c.trans_id == prompt.receipt,
            sim_c2b_payments.c.source == "stk_twin",
        )
    ).first()
    if existing is not None:
        return None
    payment_id = new_payment(
        source="stk_twin",
        shortcode=prompt.party_b,
        account=prompt.account_reference,
        amount=prompt.amount,
        msisdn=prompt.phone,
        trans_id=prompt.receipt,
        transaction_type=(
            "Pay Bill" if prompt.transaction_type == "CustomerPayBillOnline" else "Buy Goods"
        ),
        twin_order=order,
        paid_at=prompt.answered_at,
    )
    return get_payment(payment_id)


def plan_twin(prompt):
    """`twin_for`, never raising: the STK callback must go out whatever happens here."""
    try:
        return twin_for(prompt)
    except Exception:  # noqa: BLE001
        db.session.rollback()
        log.warning("simulator: no C2B twin for %s", prompt.receipt, exc_info=True)
        return None


def send_twin(twin) -> None:
    try:
        send_payment(twin.id)
    except Exception:  # noqa: BLE001 - the STK callback must still go out
        db.session.rollback()
        log.warning("simulator: C2B twin %s not sent", twin.trans_id, exc_info=True)
