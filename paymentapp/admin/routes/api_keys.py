"""Merchant API keys: the list, a form that creates one (its key shown once, on the
answer), and revoking one after a confirm step."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from ...models import Role
from ...security import (
    SCOPE_WORDING,
    SCOPES,
    create_api_key,
    list_api_keys,
    parse_scopes,
    revoke_api_keys,
    scopes_text,
)
from .. import bp, lookups
from ..auth import requires
from .actions import actor, form_text

API_KEY_NAME_MAX = 80  # the column's size


@bp.route("/api-keys", methods=["GET", "POST"])
def api_keys():
    """Merchant API keys: the list, and a form that creates one (shown once, here)."""
    created = error = None
    name = ""
    status = 200
    chosen, own_orders = list(SCOPES), False
    if request.method == "POST":
        name = form_text("name").strip()
        chosen = [scope for scope in request.form.getlist("scopes") if scope in SCOPES]
        if "scopes_shown" not in request.form:  # a form without the choice: every scope
            chosen = list(SCOPES)
        own_orders = request.form.get("own_orders") == "1"
        if not name or len(name) > API_KEY_NAME_MAX:
            error, status = f"Name the key (1 to {API_KEY_NAME_MAX} characters).", 422
        elif not chosen:
            error, status = "Choose at least one thing the key may do.", 422
        else:
            scopes = None if len(chosen) == len(SCOPES) else parse_scopes(" ".join(chosen))
            record, plain = create_api_key(
                name, scopes=scopes, own_orders=own_orders, actor=actor()
            )
            created, name, status = {"name": record.name, "key": plain}, "", 201
            chosen, own_orders = list(SCOPES), False
    return render_template(
        "admin/api_keys.html",
        keys=list_api_keys(),
        created=created,
        error=error,
        name=name,
        scope_choices=SCOPE_WORDING.items(),
        chosen=chosen,
        own_orders=own_orders,
        scopes_text=scopes_text,
    ), status


@bp.route("/api-keys/<int:key_id>/revoke", methods=["GET", "POST"])
@requires(Role.OWNER)
def revoke_api_key(key_id: int):
    """Revoke one key, after a confirm step (GET shows it, POST does it)."""
    key = lookups.get_api_key(key_id)
    if request.method == "GET":
        return render_template("admin/api_key_revoke.html", key=key)
    if key.revoked_at is not None:
        flash(f"API key {key.name!r} ({key.prefix}…) was already revoked.", "info")
    else:
        revoke_api_keys(actor(), key_id=key.id)
        flash(
            f"API key {key.name!r} ({key.prefix}…) is revoked: requests with it now get 401.",
            "ok",
        )
    return redirect(url_for("admin.api_keys"))
