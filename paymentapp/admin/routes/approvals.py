"""Proposals waiting for a second owner (`payments/approvals.py`): approve, reject with a
note, or (their proposer) withdraw. Listed on the orders page and on each order's page."""

from __future__ import annotations

from flask import flash, redirect, request, url_for

from ...models import Role
from ...payments import approvals
from .. import bp
from ..auth import requires
from .actions import actor, attempt, form_text


def _back(approval_id: str) -> str:
    """The page the form was on: the order's (its id in `order`), or the orders page."""
    order_id = request.form.get("order", "")
    if order_id:
        return url_for("admin.order_detail", order_id=order_id, _anchor=approval_id)
    return url_for("admin.index", _anchor="approvals")


@bp.post("/approvals/<approval_id>/approve")
@requires(Role.OWNER)
def approve(approval_id: str):
    back = _back(approval_id)
    approval = attempt(lambda: approvals.approve(approval_id, actor()), back)
    flash(f"Approved: {approval.summary}.", "ok")
    return redirect(back)


@bp.post("/approvals/<approval_id>/reject")
@requires(Role.OWNER)
def reject(approval_id: str):
    back = _back(approval_id)
    note = form_text("note")
    approval = attempt(lambda: approvals.reject(approval_id, actor(), note), back)
    flash(f"Rejected: {approval.summary}.", "ok")
    return redirect(back)


@bp.post("/approvals/<approval_id>/withdraw")
@requires(Role.OPERATOR)
def withdraw(approval_id: str):
    back = _back(approval_id)
    approval = attempt(lambda: approvals.reject(approval_id, actor(), "", withdraw=True), back)
    flash(f"Withdrawn: {approval.summary}.", "ok")
    return redirect(back)
