"""The audit log (docs/admin.md): every sign-in (and refused one) and sign-out, API key, webhook
endpoint, money by hand, refund, cancel, review, Paybill assignment, untrusted callback,
receipt check, secrets rotation and settings change is one row saying who (and their
role), from where, what and to what; driven here the way people do it (the dashboard,
the API with a key, the CLI). The database refuses to change or delete a row, no row
holds a secret, and the page, its CSV and the log line show them."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from werkzeug.security import generate_password_hash

from paymentapp import audit
from paymentapp.models import (
    AdminUser,
    AuditEvent,
    CallbackRecord,
    ReceiptCheck,
    WebhookEndpoint,
    WebhookEvent,
)
from paymentapp.payments.reconcile import PASS_STEPS
from paymentapp.settings_audit import record_settings, record_settings_once
from tests.helpers import (
    PASSWORD,
    TEST_CALLBACK_TOKEN,
    TEST_SECRET,
    USERNAME,
    c2b_confirmation,
    csrf_from,
    login,
    stk_callback,
)
from tests.services import wait_for

NEW_KEY = re.compile(r'<code id="new-key" class="key">(pk_[^<]+)</code>')
NEW_SECRET = re.compile(r'<code id="new-secret" class="key">(whsec_[^<]+)</code>')
HOOK = "http://127.0.0.1:9/hook"  # simulator mode: loopback receivers are allowed


def events(db) -> list[AuditEvent]:
    """Every row, oldest first, as committed."""
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def of(db, prefix: str) -> list[AuditEvent]:
    return [event for event in events(db) if event.action.startswith(prefix)]


def who(event: AuditEvent) -> tuple:
    return event.action, event.actor, event.role, event.address, event.target


def changes(event: AuditEvent) -> dict:
    return json.loads(event.changes or "{}")


def post(client, path: str, data: dict | None = None, page: str = "/admin", **kwargs):
    return client.post(path, data={"csrf_token": csrf_from(client, page), **(data or {})}, **kwargs)


def sign_in(client, username: str = USERNAME, password: str = PASSWORD, **kwargs):
    return post(
        client,
        "/admin/login",
        {"username": username, "password": password},
        "/admin/login",
        **kwargs,
    )


# -- sign-in and sign-out ---------------------------------------------------------------------


def test_sign_ins_refused_sign_ins_and_sign_outs(app, admin_user, db):
    client = app.test_client()
    away = {"REMOTE_ADDR": "198.51.100.7"}
    assert sign_in(client, password="wrong password", environ_base=away).status_code == 401
    assert sign_in(client, username="mallory", environ_base=away).status_code == 401
    assert sign_in(client).status_code == 302
    assert post(client, "/admin/logout").status_code == 302
    assert [who(event) for event in events(db)] == [
        ("admin.login_failed", USERNAME, "owner", "198.51.100.7", None),
        ("admin.login_failed", "unknown:ma•••••", None, "198.51.100.7", None),
        ("admin.login", USERNAME, "owner", "127.0.0.1", None),
        ("admin.logout", USERNAME, "owner", "127.0.0.1", None),
    ]
    wrong, unknown = events(db)[:2]
    assert changes(wrong) == {"reason": "wrong password"}
    assert changes(unknown) == {"reason": "no such user"}
    assert PASSWORD not in json.dumps([e.summary + (e.changes or "") for e in events(db)])


def test_a_locked_or_disabled_account_is_a_refused_sign_in(app, admin_user, db):
    admin_user.failed_logins = app.config["ADMIN_LOCKOUT_AFTER"] - 1
    db.session.commit()
    client = app.test_client()
    sign_in(client, password="wrong again")  # the one that locks it
    sign_in(client)  # the right password, while locked
    admin_user.disabled_at = admin_user.locked_until
    db.session.commit()
    sign_in(client)
    assert [changes(event)["reason"] for event in events(db)] == [
        "wrong password; locked",
        "the account is locked",
        "the user is disabled",
    ]
    assert {who(event)[:3] for event in events(db)} == {("admin.login_failed", USERNAME, "owner")}


def test_the_address_is_the_client_behind_the_trusted_proxy(make_app, admin_user, db):
    behind = make_app({"TRUSTED_PROXY_HOPS": "1"})
    with behind.app_context():
        client = behind.test_client()
        answer = sign_in(client, headers={"X-Forwarded-For": "203.0.113.50"})
        assert answer.status_code == 302
    (event,) = events(db)
    assert who(event) == ("admin.login", USERNAME, "owner", "203.0.113.50", None)


# -- API keys, from the page, the CLI and for a merchant ---------------------------------------


def test_api_keys_from_the_page_and_the_cli(app, admin_client, db):
    created = post(admin_client, "/admin/api-keys", {"name": "web shop"}, "/admin/api-keys")
    plain = NEW_KEY.search(created.get_data(as_text=True)).group(1)
    key_id = db.session.scalar(text("SELECT id FROM api_keys WHERE name = 'web shop'"))
    page = f"/admin/api-keys/{key_id}/revoke"
    assert post(admin_client, page, page=page).status_code == 302
    runner = app.test_cli_runner()
    assert (
        runner.invoke(args=["apikey", "create", "till", "--scopes", "orders:read"]).exit_code == 0
    )
    assert runner.invoke(args=["apikey", "revoke", "till"]).exit_code == 0
    prefix = plain[:10]
    keys = of(db, "apikey.")
    assert [who(event)[:4] for event in keys] == [
        ("apikey.created", USERNAME, "owner", "127.0.0.1"),
        ("apikey.revoked", USERNAME, "owner", "127.0.0.1"),
        ("apikey.created", "cli", None, None),
        ("apikey.revoked", "cli", None, None),
    ]
    assert keys[0].target == keys[1].target == prefix
    assert changes(keys[0]) == {"name": "web shop", "own_orders": False, "scopes": "all"}
    assert changes(keys[2])["scopes"] == "orders:read"
    assert keys[1].summary == f"API key 'web shop' ({prefix}…) revoked"


# -- webhook endpoints ------------------------------------------------------------------------


def test_webhook_endpoints_from_the_page(admin_client, db):
    added = post(admin_client, "/admin/webhooks", {"url": HOOK, "events": "*"}, "/admin/webhooks")
    assert added.status_code == 201, added.get_data(as_text=True)
    endpoint = db.session.scalar(select(WebhookEndpoint))
    base = f"/admin/webhooks/{endpoint.id}"
    for action in ("rotate", "test", "disable", "enable", "delete"):
        page = f"{base}/delete" if action == "delete" else "/admin/webhooks"
        answer = post(admin_client, f"{base}/{action}", page=page)
        assert answer.status_code in (200, 302), (action, answer.status_code)
    hooks = of(db, "webhook.")
    assert [event.action for event in hooks] == [
        "webhook.created",
        "webhook.secret_rotated",
        "webhook.test_sent",
        "webhook.disabled",
        "webhook.enabled",
        "webhook.deleted",
    ]
    assert {who(event)[1:] for event in hooks} == {(USERNAME, "owner", "127.0.0.1", endpoint.id)}
    assert changes(hooks[0]) == {"events": "*", "url": HOOK}
    test_event = db.session.scalar(select(WebhookEvent).where(WebhookEvent.type == "endpoint.test"))
    assert changes(hooks[2]) == {"event": test_event.id}
    assert changes(hooks[3]) == {"enabled": [True, False]}


def test_webhook_endpoints_through_the_api_name_the_key(client, auth, db):
    answer = client.post("/api/webhook-endpoints", json={"url": HOOK}, headers=auth)
    assert answer.status_code == 201
    endpoint_id = answer.get_json()["id"]
    base = f"/api/webhook-endpoints/{endpoint_id}"
    for path in ("rotate-secret", "disable", "disable", "enable", "test"):
        assert client.post(f"{base}/{path}", headers=auth).status_code in (200, 202)
    assert client.delete(base, headers=auth).status_code == 200
    hooks = of(db, "webhook.")
    assert [event.action for event in hooks] == [
        "webhook.created",
        "webhook.secret_rotated",
        "webhook.disabled",  # once: disabling a disabled endpoint changes nothing
        "webhook.enabled",
        "webhook.test_sent",
        "webhook.deleted",
    ]
    assert {who(event)[1:] for event in hooks} == {
        ("key:test-shop", "api_key", "127.0.0.1", endpoint_id)
    }


def test_a_resend_and_an_automatic_disable(admin_client, make_order, db):
    post(admin_client, "/admin/webhooks", {"url": HOOK, "events": "*"}, "/admin/webhooks")
    endpoint = db.session.scalar(select(WebhookEndpoint))
    order = make_order(100)
    event = db.session.scalar(select(WebhookEvent).where(WebhookEvent.order_id == order["id"]))
    page = f"/admin/orders/{order['id']}"
    assert post(admin_client, f"/admin/webhooks/events/{event.id}/resend", page=page).status_code
    (resent,) = of(db, "webhook.resent")
    assert who(resent) == ("webhook.resent", USERNAME, "owner", "127.0.0.1", event.id)
    assert changes(resent) == {"endpoints": endpoint.id}


# -- money by hand, refunds, cancels ------------------------------------------------------------


def test_a_payment_recorded_by_hand_a_refund_and_a_cancel(
    app, admin_client, client, auth, make_order, add_payment, db
):
    app.config["MPESA_INITIATOR_NAME"] = ""  # no receipt checks: the hand entry counts at once
    order = make_order(250)
    page = f"/admin/orders/{order['id']}"
    data = {"receipt": "SHAND00001", "amount": "250", "note": "seen in the statement"}
    assert post(admin_client, f"{page}/payments", data, page).status_code == 302
    late = make_order(400)
    payment = add_payment(late["id"], "completed", needs_review=True, receipt="SLATE00001")
    refund = {"amount": "150", "reason": "other", "note": "cash back at the till"}
    late_page = f"/admin/orders/{late['id']}"
    assert post(admin_client, f"/admin/payments/{payment.id}/refund", refund, late_page).status_code
    unpaid, other = make_order(90), make_order(80)
    assert post(admin_client, f"/admin/orders/{unpaid['id']}/cancel", page=page).status_code
    assert client.post(f"/api/orders/{other['id']}/cancel", headers=auth).status_code == 200

    entered, refunded = of(db, "payment.")[0], of(db, "refund.")[0]
    assert who(entered) == (
        "payment.recorded_by_hand",
        USERNAME,
        "owner",
        "127.0.0.1",
        order["number"],
    )
    assert changes(entered)["receipt"] == "SHAND00001" and changes(entered)["amount"] == 250
    assert who(refunded)[:2] == ("refund.recorded", USERNAME) and refunded.target == late["number"]
    assert changes(refunded) == {"amount": 150, "payment": payment.id, "reason": "other"}
    assert [who(event) for event in of(db, "order.")] == [
        ("order.cancelled", USERNAME, "owner", "127.0.0.1", unpaid["number"]),
        ("order.cancelled", "key:test-shop", "api_key", "127.0.0.1", other["number"]),
    ]


def test_a_refund_asked_of_m_pesa_through_the_api(
    client, auth, live_server, make_order, add_payment, db
):
    order = make_order(300)
    payment = add_payment(order["id"], "completed", receipt="SREV000001")
    answer = client.post(
        f"/api/orders/{order['id']}/refunds",
        json={"payment_id": payment.id, "reason": "requested_by_customer"},
        headers=auth,
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)
    (asked,) = of(db, "refund.")
    assert who(asked) == (
        "refund.requested",
        "key:test-shop",
        "api_key",
        "127.0.0.1",
        order["number"],
    )
    assert changes(asked) == {
        "amount": 300,
        "method": "reversal",
        "payment": payment.id,
        "reason": "requested_by_customer",
    }


# -- the review queue ---------------------------------------------------------------------------


def test_reviews_a_paybill_assignment_and_untrusted_callbacks(
    app, admin_client, client, make_order, make_payment, add_payment, db
):
    flagged = make_order(100)
    payment = add_payment(flagged["id"], "completed", needs_review=True, receipt="SFLAG00001")
    note = {"note": "checked with the customer"}
    assert post(admin_client, f"/admin/review/payments/{payment.id}", note, "/admin/review")
    client.post(f"/callbacks/stk/{TEST_CALLBACK_TOKEN}", json=stk_callback("ws_CO_nobody"))
    unknown = db.session.scalar(select(CallbackRecord).where(CallbackRecord.outcome == "unknown"))
    assert post(admin_client, f"/admin/review/callbacks/{unknown.id}", note, "/admin/review")
    target = make_order(700)
    paybill = f"/callbacks/c2b/confirmation/{TEST_CALLBACK_TOKEN}"
    client.post(paybill, json=c2b_confirmation("invoice 7", "700.00", "SPAYB00001"))
    record = db.session.scalar(select(CallbackRecord).where(CallbackRecord.kind == "c2b"))
    assign = {"order": target["number"], "note": "customer called"}
    assert post(admin_client, f"/admin/review/paybill/{record.id}/assign", assign, "/admin/review")

    from paymentapp.config import parse_allowed_ips

    app.config["MPESA_CALLBACK_ALLOWED_IPS"] = parse_allowed_ips("safaricom")
    ids = []
    for amount in (100, 200):
        pending = make_payment(make_order(amount))
        client.post(
            f"/callbacks/stk/{TEST_CALLBACK_TOKEN}",
            json=stk_callback(pending.checkout_request_id, amount=amount),
        )
        ids.append(db.session.scalar(select(CallbackRecord.id).order_by(CallbackRecord.id.desc())))
    for record_id, action in zip(ids, ("apply", "dismiss"), strict=True):
        path = f"/admin/review/untrusted/{record_id}/{action}"
        assert post(admin_client, path, note, "/admin/review").status_code == 302

    audited = ("admin.", "review.", "paybill.", "callback.")
    assert [who(event) for event in events(db) if event.action.startswith(audited)] == [
        ("admin.login", USERNAME, "owner", "127.0.0.1", None),
        ("review.resolved", USERNAME, "owner", "127.0.0.1", flagged["number"]),
        ("review.resolved", USERNAME, "owner", "127.0.0.1", f"callback:{unknown.id}"),
        ("paybill.assigned", USERNAME, "owner", "127.0.0.1", target["number"]),
        ("callback.applied_by_admin", USERNAME, "owner", "127.0.0.1", f"callback:{ids[0]}"),
        ("callback.dismissed", USERNAME, "owner", "127.0.0.1", f"callback:{ids[1]}"),
    ]
    assigned = of(db, "paybill.")[0]
    assert changes(assigned) == {
        "callback": record.id,
        "outcome": "applied",
        "receipt": "SPAYB00001",
    }


def test_receipt_checks_withdrawn_and_resolved(admin_client, live_server, make_order, db):
    # the first receipt is not asked about (M-Pesa down): it waits, and is withdrawn
    live_server.fault("status", 500, {"errorCode": "500.003.1001", "errorMessage": "down"})
    waiting, unknown = make_order(300), make_order(400)
    for order, receipt in ((waiting, "SWDRAWN001"), (unknown, "SXX0000001")):
        page = f"/admin/orders/{order['id']}"
        data = {"receipt": receipt, "amount": str(order["amount"]), "note": "in the statement"}
        assert post(admin_client, f"{page}/payments", data, page).status_code == 302
    check = db.session.scalar(select(ReceiptCheck).where(ReceiptCheck.receipt == "SWDRAWN001"))
    page = f"/admin/orders/{waiting['id']}"
    assert post(admin_client, f"/admin/receipt-checks/{check.id}/withdraw", page=page)
    not_found = wait_for(
        lambda: (
            db.session.expire_all()
            or db.session.scalar(
                select(ReceiptCheck).where(
                    ReceiptCheck.receipt == "SXX0000001", ReceiptCheck.status == "not_found"
                )
            )
        ),
        "M-Pesa's answer",
    )
    note = {"note": "typed wrongly"}
    assert post(admin_client, f"/admin/review/receipt-checks/{not_found.id}", note, "/admin/review")
    assert [who(event) for event in events(db) if event.actor == USERNAME][1:] == [
        ("payment.recorded_by_hand", USERNAME, "owner", "127.0.0.1", waiting["number"]),
        ("payment.recorded_by_hand", USERNAME, "owner", "127.0.0.1", unknown["number"]),
        ("receipt_check.withdrawn", USERNAME, "owner", "127.0.0.1", waiting["number"]),
        ("receipt_check.resolved", USERNAME, "owner", "127.0.0.1", unknown["number"]),
    ]
    assert changes(of(db, "payment.")[0])["check"] == "awaiting"


# -- users, secrets, settings -------------------------------------------------------------------


def test_user_changes_and_secrets_rotation(app, admin_client, db):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["admin", "create", "bob", "--password", "correct horse"])
    assert made.exit_code == 0, made.output
    bob = db.session.scalar(select(AdminUser).where(AdminUser.username == "bob"))
    role = {"role": "viewer"}
    assert post(admin_client, f"/admin/users/{bob.id}/role", role, "/admin/users").status_code
    assert runner.invoke(args=["secrets", "rotate"]).exit_code == 0
    assert [who(event) for event in events(db)][1:] == [
        ("user.created", "cli", None, None, "bob"),
        ("user.role_changed", USERNAME, "owner", "127.0.0.1", "bob"),
        ("secrets.rotated", "cli", None, None, None),
    ]
    assert changes(events(db)[2]) == {"role": ["owner", "viewer"]}


def test_a_settings_change_is_recorded_once_with_old_and_new_values(app, make_app, db):
    first = record_settings()
    assert first.action == "settings.changed" and (first.actor, first.role) == ("system", None)
    assert first.summary.startswith("settings first recorded")
    assert changes(first)["MPESA_ENV"] == [None, "simulator"]
    assert record_settings() is None  # the same settings: nothing new
    same_url = {"PUBLIC_BASE_URL": app.config["PUBLIC_BASE_URL"]}
    changed = make_app({**same_url, "MPESA_RECEIPT_CHECKS": "off", "TRUSTED_PROXY_HOPS": "1"})
    with changed.app_context():
        second = record_settings()
        said, what = second.summary, changes(second)
        assert record_settings() is None
    assert said == "settings changed: MPESA_RECEIPT_CHECKS, TRUSTED_PROXY_HOPS"
    assert what == {"MPESA_RECEIPT_CHECKS": [True, False], "TRUSTED_PROXY_HOPS": [0, 1]}
    assert record_settings().summary == said  # and back
    stored = json.dumps([e.changes for e in events(db)])
    for secret in (TEST_SECRET, TEST_CALLBACK_TOKEN):
        assert secret not in stored
    # the reconciler runs it once per process; a test's app never does
    assert record_settings_once in PASS_STEPS
    record_settings_once(None)
    assert len(events(db)) == 3


# -- what the log is ------------------------------------------------------------------------------


def test_the_database_refuses_to_change_or_delete_an_entry(app, db):
    audit.record("secrets.rotated", "nothing to see", actor="cli")
    db.session.commit()
    (event,) = events(db)
    for statement in (
        update(AuditEvent).values(summary="rewritten"),
        text("UPDATE audit_events SET actor = 'someone else'"),
        delete(AuditEvent),
        text("DELETE FROM audit_events"),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(statement)
        db.session.rollback()
    assert [(e.actor, e.summary) for e in events(db)] == [("cli", "nothing to see")]


def test_changes_never_hold_a_secret(app, db, log_output):
    audit.record(
        "webhook.created",
        "an endpoint https://shop.example/hook?token=abc123 for 254712345678",
        actor="cli",
        changes={
            "password": "hunter2",
            "Signing_Secret": "whsec_x",
            "key_hash": "deadbeef",
            "security_credential": "c",
            "nested": {"api_token": "t", "kept": 1},
            "url": "https://shop.example/hook?token=abc123",
            "phone": "0712345678",
            "numbers": ["254712345678"],
        },
    )
    assert "audit.webhook.created" not in log_output.getvalue()  # not before the commit
    db.session.commit()
    (event,) = events(db)
    assert changes(event) == {
        "nested": {"kept": 1},
        "numbers": ["2547•••••678"],
        "phone": "0712•••678",
        "url": "https://shop.example/hook?token=<token>",
    }
    assert "abc123" not in event.summary and "254712345678" not in event.summary
    line = log_output.getvalue()
    assert "event=audit.webhook.created actor=cli" in line
    for secret in ("hunter2", "whsec_x", "deadbeef", "abc123"):
        assert secret not in line


def test_a_rolled_back_change_leaves_no_entry_and_no_log_line(app, db, log_output):
    db.session.add(AdminUser(username="bob", password_hash="x", session_version=0))
    db.session.flush()
    audit.record("user.created", "never happened", actor="cli")
    db.session.rollback()
    db.session.commit()
    assert events(db) == [] and "never happened" not in log_output.getvalue()


def test_no_secret_reaches_the_log_the_page_or_the_csv(app, admin_client, client, db, log_output):
    created = post(admin_client, "/admin/api-keys", {"name": "shop"}, "/admin/api-keys")
    plain = NEW_KEY.search(created.get_data(as_text=True)).group(1)
    answer = post(admin_client, "/admin/webhooks", {"url": HOOK, "events": "*"}, "/admin/webhooks")
    secrets = [NEW_SECRET.search(answer.get_data(as_text=True)).group(1)]
    endpoint = db.session.scalar(select(WebhookEndpoint))
    rotated = post(admin_client, f"/admin/webhooks/{endpoint.id}/rotate", page="/admin/webhooks")
    secrets.append(NEW_SECRET.search(rotated.get_data(as_text=True)).group(1))
    api = client.post(
        "/api/webhook-endpoints", json={"url": HOOK}, headers={"Authorization": f"Bearer {plain}"}
    )
    secrets.append(api.get_json()["secret"])
    cli = app.test_cli_runner().invoke(args=["apikey", "create", "till"])
    keys = [plain, cli.output.strip().splitlines()[-1]]
    assert app.test_cli_runner().invoke(args=["secrets", "rotate"]).exit_code == 0

    rows = [
        " ".join(str(getattr(event, c.name)) for c in AuditEvent.__table__.columns)
        for event in events(db)
    ]
    page = admin_client.get("/admin/audit").get_data(as_text=True)
    csv_text = admin_client.get("/admin/audit.csv").get_data(as_text=True)
    assert len(rows) >= 7 and "webhook.secret_rotated" in page and "apikey.created" in csv_text
    for secret in keys + secrets + [PASSWORD]:
        for where, said in (("rows", "\n".join(rows)), ("page", page), ("csv", csv_text)):
            assert secret not in said, where
        assert secret not in log_output.getvalue()


# -- the page and the CSV --------------------------------------------------------------------------


def test_the_page_shows_the_newest_first_filters_and_pages(admin_client, db):
    for number in range(55):
        audit.record("webhook.created", f"endpoint {number}", target=f"we_{number}", actor="cli")
    audit.record("order.cancelled", "ORD-10017 cancelled", target="ORD-10017", actor="system")
    db.session.commit()
    html = admin_client.get("/admin/audit").get_data(as_text=True)
    assert 'aria-current="page">Audit log</a>' in html
    assert html.index("ORD-10017 cancelled") < html.index("endpoint 54") < html.index("endpoint 6")
    assert "endpoint 5<" not in html and "Page 1 of 2" in html
    assert '<a href="/admin?q=ORD-10017">ORD-10017</a>' in html
    older = admin_client.get("/admin/audit?page=2").get_data(as_text=True)
    assert "endpoint 5<" in older and "endpoint 0<" in older and "endpoint 54" not in older
    hooks = admin_client.get("/admin/audit?action=webhook.").get_data(as_text=True)
    assert "endpoint 54" in hooks and "ORD-10017 cancelled" not in hooks
    by_system = admin_client.get("/admin/audit?actor=system").get_data(as_text=True)
    assert "ORD-10017 cancelled" in by_system and "endpoint 54" not in by_system
    assert "No entries match." in admin_client.get("/admin/audit?action=user.").get_data(
        as_text=True
    )
    assert admin_client.get("/admin/audit?page=99999999").status_code == 200


def test_the_csv_holds_the_filtered_events_formula_safe(admin_client, db):
    audit.record(
        "user.role_changed",
        "=HYPERLINK(evil)",
        target="-bob",
        changes={"role": ["operator", "owner"]},
        actor="cli",
    )
    audit.record("order.cancelled", "not this one", actor="cli")
    db.session.commit()
    answer = admin_client.get("/admin/audit.csv?action=user.")
    assert answer.mimetype == "text/csv" and "attachment" in answer.headers["Content-Disposition"]
    header, *rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert header == ["at", "actor", "role", "address", "action", "target", "summary", "changes"]
    (row,) = rows
    assert row[1:] == [
        "cli",
        "",
        "",
        "user.role_changed",
        "'-bob",
        "'=HYPERLINK(evil)",
        '{"role": ["operator", "owner"]}',
    ]


def test_every_role_may_read_it_and_nobody_may_post_to_it(app, db):
    viewer = AdminUser(
        username="vera",
        password_hash=generate_password_hash(PASSWORD),
        session_version=0,
        role="viewer",
    )
    db.session.add(viewer)
    db.session.commit()
    client = app.test_client()
    assert client.get("/admin/audit").status_code == 302  # signed out: to the login
    assert login(client, username="vera").status_code == 302
    html = client.get("/admin/audit").get_data(as_text=True)
    assert 'vera <span class="muted">(viewer)</span>' in html  # her own sign-in
    assert client.get("/admin/audit.csv").status_code == 200
    assert post(client, "/admin/audit", page="/admin/audit").status_code in (403, 405)
