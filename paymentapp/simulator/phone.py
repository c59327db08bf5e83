"""The simulated handset at `/_simulator/phone`, and the JSON test API under
`/_simulator/api` that tests and the page use: list prompts, press a button, resend a
callback, queue a fault for daraja.py, revoke every token; and Paybill (c2b.py): pay a
bill, see registered URLs and payments, switch the STK twins."""

from __future__ import annotations

import json
import re

from flask import current_app, jsonify, render_template, request
from sqlalchemy import insert, select, update

from ..extensions import db
from ..mpesa.formats import MAX_AMOUNT
from ..phones import mask_phone
from . import bp, c2b
from .callbacks import ACTIONS, answer_prompt, expire_due_prompts, post_callback
from .models import (
    get_prompt,
    sim_b2c_payments,
    sim_faults,
    sim_prompts,
    sim_reversals,
    sim_tokens,
)

RECENT_REFUNDS = 3  # money received that the phone lists


@bp.get("/phone")
def phone():
    """The simulated handset."""
    return render_template(
        "simulator/phone.html",
        actions=ACTIONS,
        c2b_shortcode=current_app.config["MPESA_C2B_SHORTCODE"],
        c2b_msisdn=c2b.mask_msisdn(c2b.SIM_MSISDN),
    )


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
    return jsonify(
        prompts=[prompt_json(p) for p in db.session.execute(stmt)],
        refunds=_money_received(),
    )


def _money_received() -> list[dict]:
    """Money the phone got: reversals and B2C payments that succeeded, newest first."""
    reversals = db.session.execute(
        select(sim_reversals)
        .where(sim_reversals.c.result_code == "0")
        .order_by(sim_reversals.c.created_at.desc())
        .limit(RECENT_REFUNDS)
    )
    payments = db.session.execute(
        select(sim_b2c_payments)
        .where(sim_b2c_payments.c.result_code == "0")
        .order_by(sim_b2c_payments.c.created_at.desc())
        .limit(RECENT_REFUNDS)
    )
    received = [
        (
            r.created_at,
            {
                "via": "reversal",
                "receipt": r.receipt,  # the payment reversed
                "amount": r.amount,
                "reversal_receipt": r.reversal_receipt,
                "at": r.created_at.isoformat(),
                "created_at": r.created_at.isoformat(),
            },
        )
        for r in reversals
    ] + [
        (
            b.created_at,
            {
                "via": "b2c",
                "receipt": b.receipt,  # the B2C payment's own
                "amount": b.amount,
                "phone": b.phone,
                "created_at": b.created_at.isoformat(),
            },
        )
        for b in payments
    ]
    received.sort(key=lambda pair: pair[0], reverse=True)
    return [entry for _, entry in received[:RECENT_REFUNDS]]


@bp.post("/api/prompts/<checkout_id>/<action>")
def act_on_prompt(checkout_id: str, action: str):
    """Press a button on the simulated phone."""
    if action == "ignore":
        prompt = get_prompt(checkout_id)
        if prompt is None:
            return sim_error(404, "No such prompt.")
        return jsonify(prompt_json(prompt))
    if action not in ACTIONS:
        return sim_error(422, f"Unknown action; use one of {', '.join([*ACTIONS, 'ignore'])}.")
    prompt = answer_prompt(checkout_id, action)
    if prompt is None:
        exists = get_prompt(checkout_id) is not None
        return sim_error(
            409 if exists else 404,
            "This prompt was already answered." if exists else "No such prompt.",
        )
    return jsonify(prompt_json(prompt))


@bp.post("/api/prompts/<checkout_id>/resend-callback")
def resend_callback(checkout_id: str):
    """Post an answered prompt's callback again (Daraja sometimes sends duplicates)."""
    prompt = get_prompt(checkout_id)
    if prompt is None or prompt.state != "answered":
        return sim_error(409, "Only answered prompts have a callback.")
    post_callback(current_app._get_current_object(), checkout_id, twin=False)
    return jsonify(prompt_json(get_prompt(checkout_id)))


FAULT_ENDPOINTS = (
    "oauth",
    "stkpush",
    "query",
    "registerurl",
    "reversal",
    "status",
    "pull",
    "b2c",
    "qrcode",
)


@bp.post("/api/faults")
def add_fault():
    """Queue a canned answer for the next call to one of FAULT_ENDPOINTS (`registerurl`
    is C2B Register URL, `status` Transaction Status)."""
    data = request.get_json(silent=True) or {}
    if data.get("endpoint") not in FAULT_ENDPOINTS:
        return sim_error(422, f"endpoint must be one of {', '.join(FAULT_ENDPOINTS)}")
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


def sim_error(status: int, message: str, fields: dict | None = None):
    error = {"code": "simulator_error", "message": message, "fields": fields or {}}
    return jsonify({"error": error}), status


# -- Paybill (C2B) ----------------------------------------------------------------------------

SHORTCODE_RE = re.compile(r"^\d{5,7}$")
MSISDN_RE = re.compile(r"^254\d{9}$")
PIN_RE = re.compile(r"^\d{4}$")


@bp.get("/api/c2b")
def c2b_state():
    """Registered URLs, settings and recent Paybill payments, newest first (optionally
    `?trans_id=`, `?account=` or `?source=phone|api|stk_twin`)."""
    stmt = select(c2b.sim_c2b_payments).order_by(c2b.sim_c2b_payments.c.id.desc()).limit(50)
    for name in ("trans_id", "account", "source"):
        if (value := request.args.get(name)) is not None:
            stmt = stmt.where(c2b.sim_c2b_payments.c[name] == value)
    registrations = db.session.execute(select(c2b.sim_c2b_urls)).all()
    return jsonify(
        shortcode=current_app.config["MPESA_C2B_SHORTCODE"],
        validation=current_app.config["MPESA_C2B_VALIDATION"],
        registrations=[c2b.registration_json(r) for r in registrations],
        settings=c2b.settings(),
        payments=[c2b.payment_json(p) for p in db.session.execute(stmt)],
    )


@bp.post("/api/c2b/settings")
def c2b_settings():
    """`{"stk_twins": "off" | "before" | "after", "initiator_results": "result" |
    "timeout", "b2c_funds": "enough" | "insufficient"}`."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not data:
        return sim_error(422, "Send a JSON object of settings.")
    for name, value in data.items():
        if name not in c2b.SETTINGS:
            return sim_error(422, f"Unknown setting {name!r}; use {', '.join(c2b.SETTINGS)}.")
        allowed = c2b.SETTINGS[name][1]
        if value not in allowed:
            return sim_error(422, f"{name} must be one of {', '.join(allowed)}.")
    for name, value in data.items():
        c2b.set_setting(name, value)
    return jsonify(c2b.settings())


@bp.post("/api/c2b/pay")
def c2b_pay():
    """A customer pays the bill: `{account, amount, shortcode?, msisdn?, trans_id?, copies?,
    overrides?, pin?}`. The phone's Pay Bill screen sends the PIN. Posted in the
    background (c2b.py); 202 with the payment, which `GET /api/c2b?trans_id=` follows."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return sim_error(422, "Send a JSON object.")
    config = current_app.config
    shortcode = str(data.get("shortcode") or config["MPESA_C2B_SHORTCODE"]).strip()
    account = data.get("account", "")
    amount = data.get("amount")
    if isinstance(amount, str) and amount.strip().isdigit():
        amount = int(amount.strip())
    msisdn = str(data.get("msisdn") or c2b.SIM_MSISDN)
    trans_id = data.get("trans_id")
    copies = data.get("copies", 1)
    overrides = data.get("overrides")
    problems = {
        "shortcode": not SHORTCODE_RE.match(shortcode) and "Enter a business number.",
        "account": (not isinstance(account, str) or len(account) > 64)
        and "The account number is text of at most 64 characters.",
        "amount": (
            isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT
        )
        and f"Enter a whole amount from 1 to {MAX_AMOUNT:,}.",
        "msisdn": not MSISDN_RE.match(msisdn) and "msisdn looks like 2547XXXXXXXX.",
        "trans_id": trans_id is not None
        and (not isinstance(trans_id, str) or not 1 <= len(trans_id) <= 32)
        and "trans_id is text of 1 to 32 characters.",
        "copies": (
            isinstance(copies, bool)
            or not isinstance(copies, int)
            or not 0 <= copies <= c2b.MAX_COPIES
        )
        and f"copies is from 0 (the confirmation is lost) to {c2b.MAX_COPIES}.",
        "overrides": overrides is not None
        and not isinstance(overrides, dict)
        and "overrides is an object of body fields.",
        "pin": "pin" in data
        and not PIN_RE.match(str(data["pin"]))
        and "Enter your 4-digit M-PESA PIN.",
    }
    if "pin" in data and isinstance(account, str) and not account.strip():
        problems["account"] = "Enter the account number."
    fields = {name: message for name, message in problems.items() if message}
    if fields:
        return sim_error(422, next(iter(fields.values())), fields)
    registered_now = False
    if c2b.registration(shortcode) is None:
        if shortcode != config["MPESA_C2B_SHORTCODE"]:
            return sim_error(
                422,
                f"No business with number {shortcode} here: the simulator knows the app's "
                f"{config['MPESA_C2B_SHORTCODE']} and shortcodes with registered URLs.",
                {"shortcode": "Unknown business number."},
            )
        c2b.register_app_urls(shortcode)
        registered_now = True
    payment_id = c2b.start_payment(
        source="phone" if "pin" in data else "api",
        shortcode=shortcode,
        account=account,
        amount=amount,
        msisdn=msisdn,
        trans_id=trans_id,
        copies=copies,
        overrides=overrides,
        transaction_type="Pay Bill",
    )
    return jsonify(
        payment=c2b.payment_json(c2b.get_payment(payment_id)),
        registered_automatically=registered_now,
        registration=c2b.registration_json(c2b.registration(shortcode)),
    ), 202
