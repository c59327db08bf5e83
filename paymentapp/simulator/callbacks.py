"""How a prompt ends, and the callback posted to its CallBackURL.

A prompt is answered exactly once (a button on the phone, an auto-answer, or expiry);
the answer is then posted, in the background, in the shape Daraja posts it
(docs/payments.md, "The Daraja simulator"). Once C2B URLs are registered, an accepted
prompt's C2B twin (c2b.py) is posted by the same task, before or after its callback.
"""

from __future__ import annotations

import logging
import time

import requests
from flask import current_app
from sqlalchemy import select, update

from ..extensions import db, socketio
from ..models import utcnow
from ..mpesa.formats import eat_timestamp
from . import c2b
from .models import get_prompt, new_receipt, sim_prompts

log = logging.getLogger(__name__)

# What each button on the simulated phone does: (ResultCode, ResultDesc, send callback).
ACTIONS = {
    "accept": (0, "The service request is processed successfully.", True),
    "cancel": (1032, "Request cancelled by user", True),
    "insufficient": (1, "The balance is insufficient for the transaction.", True),
    "wrong_pin": (2001, "The initiator information is invalid.", True),
    "lose_callback": (0, "The service request is processed successfully.", False),
    "expire": (1037, "DS timeout user cannot be reached", True),
}


def answer_prompt(checkout_id: str, action: str) -> dict | None:
    """Resolve an open prompt (exactly once) and post its callback in the background.

    Returns the prompt, or None if it was not open (already answered or unknown).
    """
    result_code, result_desc, send = ACTIONS[action]
    receipt = new_receipt() if result_code == 0 else None
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
    prompt = get_prompt(checkout_id)
    if send:
        socketio.start_background_task(
            post_callback, current_app._get_current_object(), checkout_id
        )
    else:
        _set_callback_status(checkout_id, "not sent (lost on purpose)")
    return prompt


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


def answer_later(app, checkout_id: str, action: str, delay: float) -> None:
    """Background: answer a prompt after `delay` seconds (MPESA_SIMULATOR_AUTO)."""
    time.sleep(delay)
    with app.app_context():
        try:
            answer_prompt(checkout_id, action)
        except Exception:  # noqa: BLE001
            log.warning("simulator: auto-answer of %s failed", checkout_id, exc_info=True)
        finally:
            db.session.remove()


def callback_body(prompt) -> dict:
    """The exact shape Daraja posts (metadata only on success; Balance without Value)."""
    callback = {
        "MerchantRequestID": prompt.merchant_request_id,
        "CheckoutRequestID": prompt.checkout_request_id,
        "ResultCode": prompt.result_code,
        "ResultDesc": prompt.result_desc,
    }
    if prompt.result_code == 0:
        callback["CallbackMetadata"] = {
            "Item": [
                # Daraja's wire format: the amount as a JSON number with decimals (1.0)
                {"Name": "Amount", "Value": prompt.amount * 1.0},
                {"Name": "MpesaReceiptNumber", "Value": prompt.receipt},
                {"Name": "Balance"},
                {
                    "Name": "TransactionDate",
                    "Value": int(eat_timestamp(prompt.answered_at or utcnow())),  # a number
                },
                {"Name": "PhoneNumber", "Value": int(prompt.phone)},
            ]
        }
    return {"Body": {"stkCallback": callback}}


def post_callback(app, checkout_id: str, twin: bool = True) -> None:
    """POST the callback like Daraja does (once; no retries); a background task. With
    `twin`, an accepted prompt's C2B twin goes out too, before or after it (c2b.py)."""
    with app.app_context():
        try:
            prompt = get_prompt(checkout_id)
            twin_row = c2b.plan_twin(prompt) if twin else None
            if twin_row is not None and twin_row.twin_order == "before":
                c2b.send_twin(twin_row)
            body = callback_body(prompt)
            url = prompt.callback_url
            try:
                response = requests.post(url, json=body, timeout=10)
                status = f"sent: HTTP {response.status_code}"
            except requests.RequestException as exc:
                status = f"failed: {exc.__class__.__name__}"
            _set_callback_status(checkout_id, status)
            if twin_row is not None and twin_row.twin_order == "after":
                c2b.send_twin(twin_row)
        except Exception:  # noqa: BLE001 - a background task must not die loudly
            log.warning("simulator: callback for %s not sent", checkout_id, exc_info=True)
        finally:
            db.session.remove()


def _set_callback_status(checkout_id: str, status: str) -> None:
    db.session.execute(
        update(sim_prompts)
        .where(sim_prompts.c.checkout_request_id == checkout_id)
        .values(callback_status=status[:255])
    )
    db.session.commit()
