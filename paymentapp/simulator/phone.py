"""The simulated handset at `/_simulator/phone`, and the JSON test API under
`/_simulator/api` that tests and the page use: list prompts, press a button, resend a
callback, queue a fault for daraja.py, revoke every token."""

from __future__ import annotations

import json

from flask import current_app, jsonify, render_template, request
from sqlalchemy import insert, select, update

from ..extensions import db
from ..phones import mask_phone
from . import bp
from .callbacks import ACTIONS, answer_prompt, expire_due_prompts, post_callback
from .models import get_prompt, sim_faults, sim_prompts, sim_tokens


@bp.get("/phone")
def phone():
    """The simulated handset."""
    return render_template("simulator/phone.html", actions=ACTIONS)


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
        prompt = get_prompt(checkout_id)
        if prompt is None:
            return _sim_error(404, "No such prompt.")
        return jsonify(prompt_json(prompt))
    if action not in ACTIONS:
        return _sim_error(422, f"Unknown action; use one of {', '.join([*ACTIONS, 'ignore'])}.")
    prompt = answer_prompt(checkout_id, action)
    if prompt is None:
        exists = get_prompt(checkout_id) is not None
        return _sim_error(
            409 if exists else 404,
            "This prompt was already answered." if exists else "No such prompt.",
        )
    return jsonify(prompt_json(prompt))


@bp.post("/api/prompts/<checkout_id>/resend-callback")
def resend_callback(checkout_id: str):
    """Post an answered prompt's callback again (Daraja sometimes sends duplicates)."""
    prompt = get_prompt(checkout_id)
    if prompt is None or prompt.state != "answered":
        return _sim_error(409, "Only answered prompts have a callback.")
    post_callback(current_app._get_current_object(), checkout_id)
    return jsonify(prompt_json(get_prompt(checkout_id)))


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
