"""A second pair of eyes (docs/admin.md): money recorded by hand, a flagged payment's money
accepted, a manual refund and a refund through M-Pesa are proposals until a different
owner approves them; the proposer cannot; a rejected one moves nothing; a refund through
M-Pesa waits `awaiting_approval` with its money held. APPROVALS=off (one owner) runs each
at once, marked self-approved in the audit log; merchant API refunds never wait."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from paymentapp.models import (
    AdminUser,
    Approval,
    AuditEvent,
    Order,
    Payment,
    Refund,
)
from paymentapp.payments import approvals
from tests.helpers import csrf_from, fresh_session, login, paid
from tests.services import wait_for

FLASH = re.compile(r'<p class="flash flash-(\w+)" role="\w+">([^<]*)</p>')


@pytest.fixture
def app_config():
    """Approvals on (the suite's default is one owner, APPROVALS=off), and receipts entered
    by hand not asked of M-Pesa (a receipt M-Pesa confirms needs no approval)."""
    return {"APPROVALS": True, "MPESA_RECEIPT_CHECKS": False}


def add_admin(app, db, name: str, role: str = "owner"):
    """A second dashboard user, signed in; returns the client."""
    db.session.add(
        AdminUser(
            username=name,
            password_hash=generate_password_hash("another long password", "pbkdf2:sha256:1000"),
            role=role,
            session_version=0,
        )
    )
    db.session.commit()
    client = app.test_client()
    assert login(client, name, "another long password").status_code == 302
    return client


@pytest.fixture
def bob(app, db, admin_user):
    return add_admin(app, db, "bob")


def post(client, path: str, data: dict | None = None, page: str = "/admin/"):
    answer = client.post(path, data={"csrf_token": csrf_from(client, page), **(data or {})})
    return answer


def flashed(client, path: str) -> list[tuple[str, str]]:
    return FLASH.findall(client.get(path).get_data(as_text=True))


def only_approval(db) -> Approval:
    db.session.expire_all()
    (approval,) = db.session.scalars(select(Approval)).all()
    return approval


def audit_actions(db) -> list[str]:
    db.session.expire_all()
    return [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_a_hand_entry_waits_for_another_owner(admin_client, bob, make_order, db):
    order = make_order(500)
    page = f"/admin/orders/{order['id']}"
    answer = post(
        admin_client,
        f"/admin/orders/{order['id']}/payments",
        {"receipt": "SAP1234567", "amount": "500", "note": "statement of 1 Dec"},
        page,
    )
    assert answer.status_code == 302
    assert (
        "ok",
        "Proposed: record receipt SAP1234567 (KES 500) by hand: statement of 1 Dec. It waits "
        "for another owner&#39;s approval.",
    ) in flashed(admin_client, page)
    approval = only_approval(db)
    assert (approval.kind, approval.status, approval.proposed_by) == (
        "hand_entry",
        "pending",
        "admin:alice",
    )
    assert db.session.scalar(select(Payment).where(Payment.receipt == "SAP1234567")) is None

    # the proposer sees it waiting, without an Approve button; the server refuses anyway
    mine = admin_client.get(page).get_data(as_text=True)
    assert "Another owner approves it." in mine
    assert f'action="/admin/approvals/{approval.id}/approve"' not in mine
    refused = post(admin_client, f"/admin/approvals/{approval.id}/approve", page=page)
    assert refused.status_code == 302
    assert ("error", "You proposed this: a different owner approves it.") in flashed(
        admin_client, page
    )
    assert only_approval(db).status == "pending"

    # another owner sees it on the orders page and approves it
    orders = bob.get("/admin/").get_data(as_text=True)
    assert (
        "Waiting for approval" in orders
        and f'action="/admin/approvals/{approval.id}/approve"' in orders
    )
    assert post(bob, f"/admin/approvals/{approval.id}/approve").status_code == 302
    approval = only_approval(db)
    assert (approval.status, approval.decided_by) == ("approved", "admin:bob")
    payment = db.session.scalar(select(Payment).where(Payment.receipt == "SAP1234567"))
    assert payment.entered_by == "admin:alice, approved by admin:bob"
    assert db.session.get(Order, order["id"]).status == "paid"
    assert "Waiting for approval" not in bob.get("/admin/").get_data(as_text=True)
    actions = audit_actions(db)
    assert actions.index("approval.proposed") < actions.index("approval.approved")
    assert "payment.recorded_by_hand" in actions

    # decided once: a second approval changes nothing
    post(bob, f"/admin/approvals/{approval.id}/approve")
    assert ("error", "This proposal was already approved.") in flashed(bob, "/admin/")
    assert db.session.scalar(select(Payment).where(Payment.receipt == "SAP1234567")) is not None


def test_a_rejected_manual_refund_moves_nothing(admin_client, bob, make_order, add_payment, db):
    order = make_order(300)
    payment = add_payment(
        order["id"], "completed", receipt="SAP7654321", needs_review=True, review_reason="late"
    )
    post(
        admin_client,
        f"/admin/payments/{payment.id}/refund",
        {"amount": "300", "reason": "late", "note": "cash back at the till"},
    )
    approval = only_approval(db)
    assert approval.kind == "manual_refund"
    assert db.session.scalars(select(Refund)).all() == []
    empty = post(bob, f"/admin/approvals/{approval.id}/reject", {"note": ""})
    assert empty.status_code == 302 and only_approval(db).status == "pending"  # a note is needed
    post(bob, f"/admin/approvals/{approval.id}/reject", {"note": "no cash left the till"})
    approval = only_approval(db)
    assert (approval.status, approval.decision_note) == ("rejected", "no cash left the till")
    assert db.session.scalars(select(Refund)).all() == []
    assert "approval.rejected" in audit_actions(db)


def test_the_proposer_withdraws_and_nobody_else_can(admin_client, bob, make_order, db):
    order = make_order(200)
    post(
        admin_client,
        f"/admin/orders/{order['id']}/payments",
        {"receipt": "SAP1111111", "amount": "200", "note": "statement"},
    )
    approval = only_approval(db)
    post(bob, f"/admin/approvals/{approval.id}/withdraw")
    assert ("error", "Only its proposer withdraws a proposal.") in flashed(bob, "/admin/")
    post(admin_client, f"/admin/approvals/{approval.id}/withdraw")
    assert only_approval(db).status == "withdrawn"


def test_accepting_a_flagged_payment_waits_for_approval(
    admin_client, bob, make_order, add_payment, db
):
    order = make_order(400)
    payment = add_payment(
        order["id"], "completed", receipt="SAP2222222", needs_review=True, review_reason="late"
    )
    post(admin_client, f"/admin/review/payments/{payment.id}", {"note": "customer called"})
    assert db.session.get(Payment, payment.id).needs_review  # not yet
    approval = only_approval(db)
    assert approval.kind == "accept_review"
    post(bob, f"/admin/approvals/{approval.id}/approve")
    db.session.expire_all()
    assert not db.session.get(Payment, payment.id).needs_review
    assert db.session.get(Order, order["id"]).status == "paid"


def test_a_refund_through_mpesa_waits_with_its_money_held(
    app, admin_client, bob, client, auth, live_server, make_order, db
):
    order = paid(client, auth, live_server, make_order, 250)
    payment_id = order["payments"][0]["id"]
    operator = add_admin(app, db, "olive", "operator")
    page = f"/admin/orders/{order['id']}"
    post(operator, f"/admin/payments/{payment_id}/reverse", {"reason": "fraudulent"}, page)
    refund = db.session.scalar(select(Refund))
    assert refund.status == "awaiting_approval"
    assert db.session.get(Payment, payment_id).refunding_amount == 250  # held
    # a second refund of the same money is refused while it waits (the API's too)
    again = client.post(
        f"/api/orders/{order['id']}/refunds", json={"reason": "fraudulent"}, headers=auth
    )
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "refund_in_progress"
    assert "Refund awaiting a second owner&#39;s approval:" in bob.get(page).get_data(as_text=True)

    approval = only_approval(db)
    assert (approval.kind, approval.refund_id) == ("mpesa_refund", refund.id)
    post(bob, f"/admin/approvals/{approval.id}/approve", {"order": order["id"]}, page)
    wait_for(
        lambda: fresh_session() or db.session.get(Refund, refund.id).status == "succeeded",
        "the approved refund sent and settled",
    )
    assert only_approval(db).decided_by == "admin:bob"


def test_a_rejected_refund_through_mpesa_frees_its_money(
    app, admin_client, bob, client, auth, live_server, make_order, db
):
    order = paid(client, auth, live_server, make_order, 180)
    payment_id = order["payments"][0]["id"]
    post(admin_client, f"/admin/payments/{payment_id}/reverse", {"reason": "fraudulent"})
    approval = only_approval(db)
    post(bob, f"/admin/approvals/{approval.id}/reject", {"note": "the customer is known"})
    db.session.expire_all()
    assert db.session.get(Refund, approval.refund_id).status == "rejected"
    assert db.session.get(Payment, payment_id).refunding_amount == 0
    # the money may be refunded again
    answer = client.post(
        f"/api/orders/{order['id']}/refunds", json={"reason": "fraudulent"}, headers=auth
    )
    assert answer.status_code in (201, 202), answer.get_json()


def test_merchant_api_refunds_never_wait(client, auth, live_server, make_order, admin_user, db):
    order = paid(client, auth, live_server, make_order, 120)
    answer = client.post(
        f"/api/orders/{order['id']}/refunds", json={"reason": "fraudulent"}, headers=auth
    )
    assert answer.status_code in (201, 202)
    assert answer.get_json()["status"] != "awaiting_approval"
    assert db.session.scalars(select(Approval)).all() == []


def test_a_single_owner_is_told_how_to_go_on(admin_client, make_order, db):
    order = make_order(100)
    page = f"/admin/orders/{order['id']}"
    answer = post(
        admin_client,
        f"/admin/orders/{order['id']}/payments",
        {"receipt": "SAP3333333", "amount": "100", "note": "statement"},
        page,
    )
    assert answer.status_code == 422
    assert (
        "No other owner can approve this: add an owner on the Users page, or, with a single "
        "owner, set APPROVALS=off." in answer.get_data(as_text=True)
    )
    assert db.session.scalars(select(Approval)).all() == []


def test_approvals_off_runs_at_once_and_says_self_approved(app, admin_client, make_order, db):
    app.config["APPROVALS"] = False
    order = make_order(100)
    post(
        admin_client,
        f"/admin/orders/{order['id']}/payments",
        {"receipt": "SAP4444444", "amount": "100", "note": "statement"},
    )
    assert db.session.get(Order, order["id"]).status == "paid"
    assert db.session.scalars(select(Approval)).all() == []
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "approval.self_approved")
    )
    assert event is not None and "self-approved" in event.summary and event.actor == "alice"


def test_approvals_off_is_ignored_in_production_with_two_owners(app, admin_user, db):
    app.config.update(APPROVALS=False, MPESA_ENV="production")
    assert not approvals.required()  # one owner: off as asked
    db.session.add(AdminUser(username="bob", password_hash="x", role="owner", session_version=0))
    db.session.commit()
    assert approvals.required()  # two owners: a second pair of eyes whatever the setting
    app.config["MPESA_ENV"] = "simulator"
    assert not approvals.required()
