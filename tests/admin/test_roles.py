"""Admin roles: every dashboard route, tried by every role. A role the route
allows gets its answer (and a change happens); a role below it gets a 403 that names the
role it takes, and nothing in the database changes. The table must name every route the
dashboard has, so a new one cannot slip in untested (and an unnamed one is owner-only
for anything but reading, `admin/auth.required_role`)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from werkzeug.security import generate_password_hash

from paymentapp.extensions import db as _db
from paymentapp.models import (
    AdminUser,
    Approval,
    CallbackRecord,
    Order,
    ReceiptCheck,
    Role,
    WebhookEndpoint,
)
from paymentapp.security import create_api_key
from tests.helpers import (
    TEST_CALLBACK_TOKEN,
    csrf_from,
    login,
    pay_by_paybill,
    stk_callback,
    unmatched_record,
)

PASSWORD = "a long enough password"
VIEWER, OPERATOR, OWNER = Role.VIEWER, Role.OPERATOR, Role.OWNER


@pytest.fixture
def world(app, client, make_order, make_payment, add_payment, db):
    """One of everything a dashboard route can act on, and a user of each role."""
    for role in Role:
        db.session.add(
            AdminUser(
                username=f"{role}-user",
                password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                role=role,
                session_version=0,
            )
        )
    db.session.add(AdminUser(username="bob", password_hash="x", role=VIEWER, session_version=0))
    db.session.commit()
    pending = make_order(100)
    unpaid = make_order(120)
    prompt = make_payment(pending)
    paid = make_order(200)
    completed = add_payment(paid["id"], "completed", receipt="RLS0000001")
    flagged = add_payment(
        make_order(300)["id"],
        "completed",
        receipt="RLS0000002",
        needs_review=True,
        review_reason="paid 30 of 300",
    )
    pay_by_paybill(client, "nobody 1", 150, "RLSPAYBL01")
    paybill = unmatched_record(db)
    client.post(f"/callbacks/stk/{TEST_CALLBACK_TOKEN}", json=stk_callback("ws_CO_nobody"))
    unknown = db.session.scalar(
        select(CallbackRecord).where(
            CallbackRecord.outcome == "unknown", CallbackRecord.kind == "stk"
        )
    )
    untrusted = CallbackRecord(
        kind="stk", body="{}", outcome="untrusted", remote_addr="203.0.113.9", attempts=0
    )
    awaiting = ReceiptCheck(
        order_id=pending["id"], receipt="RLSCHECK01", amount=100, actor="admin:x"
    )
    mismatch = ReceiptCheck(
        order_id=pending["id"],
        receipt="RLSCHECK02",
        amount=100,
        actor="admin:x",
        status="mismatch",
    )
    db.session.add_all([untrusted, awaiting, mismatch])
    db.session.commit()
    key, _ = create_api_key("roles-test")
    from paymentapp.webhooks.endpoints import create_endpoint
    from paymentapp.webhooks.events import send_test_event

    endpoint = create_endpoint("http://127.0.0.1:9/hooks", ["order.paid"])
    disabled = create_endpoint("http://127.0.0.1:9/off", ["order.paid"])
    disabled.enabled = False
    event = send_test_event(db.session.get(WebhookEndpoint, endpoint.id), db.session)
    db.session.commit()
    bob = db.session.scalar(select(AdminUser).where(AdminUser.username == "bob"))
    proposals = {
        name: Approval(
            kind="hand_entry",
            order_id=pending["id"],
            values=json.dumps({"receipt": f"RLSPROP{n:03}", "amount": 100, "note": "statement"}),
            summary=f"record receipt RLSPROP{n:03} (KES 100) by hand",
            proposed_by=f"admin:{name}",
        )
        for n, name in enumerate(["bob", *(f"{role}-user" for role in Role)])
    }
    db.session.add_all(proposals.values())
    db.session.commit()
    return {
        "proposal": proposals["bob"].id,
        **{f"mine_{role}": proposals[f"{role}-user"].id for role in Role},
        "order_id": pending["id"],
        "unpaid_order": unpaid["id"],
        "disabled_endpoint": disabled.id,
        "order_number": pending["number"],
        "pending_payment": prompt.id,
        "completed_payment": completed.id,
        "flagged_payment": flagged.id,
        "paybill": paybill.id,
        "unknown": unknown.id,
        "untrusted": untrusted.id,
        "awaiting_check": awaiting.id,
        "mismatch_check": mismatch.id,
        "key_id": key.id,
        "endpoint_id": endpoint.id,
        "event_id": event.id,
        "bob": bob.id,
    }


# (endpoint, method, the least role that may, path, form): every dashboard route.
ROUTES = [
    ("admin.index", "GET", VIEWER, "/admin/", None),
    ("admin.orders_csv", "GET", VIEWER, "/admin/orders.csv", None),
    ("admin.order_detail", "GET", VIEWER, "/admin/orders/{order_id}", None),
    ("admin.review", "GET", VIEWER, "/admin/review", None),
    ("admin.api_keys", "GET", VIEWER, "/admin/api-keys", None),
    ("admin.webhooks", "GET", VIEWER, "/admin/webhooks", None),
    ("admin.session_info", "GET", VIEWER, "/admin/api/session", None),
    ("admin.ping", "POST", VIEWER, "/admin/api/ping", {}),
    ("admin.logout", "POST", VIEWER, "/admin/logout", {}),
    ("admin.check_payment", "POST", OPERATOR, "/admin/payments/{pending_payment}/check", {}),
    ("admin.cancel", "POST", OPERATOR, "/admin/orders/{unpaid_order}/cancel", {}),
    (
        "admin.reverse_payment",
        "POST",
        OPERATOR,
        "/admin/payments/{completed_payment}/reverse",
        {"reason": "requested_by_customer", "note": "asked on the phone"},
    ),
    (
        "admin.resolve_payment",
        "POST",
        OPERATOR,
        "/admin/review/payments/{flagged_payment}",
        {"note": "called the customer"},
    ),
    (
        "admin.resolve_callback",
        "POST",
        OPERATOR,
        "/admin/review/callbacks/{unknown}",
        {"note": "a test from Daraja"},
    ),
    (
        "admin.assign_paybill",
        "POST",
        OPERATOR,
        "/admin/review/paybill/{paybill}/assign",
        {"order": "{order_number}", "note": "the customer called"},
    ),
    (
        "admin.resolve_receipt_check",
        "POST",
        OPERATOR,
        "/admin/review/receipt-checks/{mismatch_check}",
        {"note": "typed wrongly"},
    ),
    (
        "admin.handle_untrusted",
        "POST",
        OWNER,
        "/admin/review/untrusted/{untrusted}/dismiss",
        {"note": "not from M-Pesa"},
    ),
    (
        "admin.record_payment",
        "POST",
        OWNER,
        "/admin/orders/{order_id}/payments",
        {"receipt": "RLSHAND001", "amount": "100", "note": "statement of 1 Dec"},
    ),
    (
        "admin.withdraw_receipt",
        "POST",
        OWNER,
        "/admin/receipt-checks/{awaiting_check}/withdraw",
        {},
    ),
    (
        "admin.refund_payment",
        "POST",
        OWNER,
        "/admin/payments/{flagged_payment}/refund",
        {"amount": "50", "reason": "requested_by_customer", "note": "cash at the till"},
    ),
    ("admin.api_keys", "POST", OWNER, "/admin/api-keys", {"name": "another shop"}),
    ("admin.revoke_api_key", "GET", OWNER, "/admin/api-keys/{key_id}/revoke", None),
    ("admin.revoke_api_key", "POST", OWNER, "/admin/api-keys/{key_id}/revoke", {}),
    (
        "admin.add_webhook",
        "POST",
        OWNER,
        "/admin/webhooks",
        {"url": "http://127.0.0.1:9/two", "events": "order.paid"},
    ),
    ("admin.rotate_webhook_secret", "POST", OWNER, "/admin/webhooks/{endpoint_id}/rotate", {}),
    ("admin.disable_webhook", "POST", OWNER, "/admin/webhooks/{endpoint_id}/disable", {}),
    ("admin.enable_webhook", "POST", OWNER, "/admin/webhooks/{disabled_endpoint}/enable", {}),
    ("admin.delete_webhook", "GET", OWNER, "/admin/webhooks/{endpoint_id}/delete", None),
    ("admin.delete_webhook", "POST", OWNER, "/admin/webhooks/{endpoint_id}/delete", {}),
    ("admin.test_webhook", "POST", OWNER, "/admin/webhooks/{endpoint_id}/test", {}),
    ("admin.resend_webhook_event", "POST", OWNER, "/admin/webhooks/events/{event_id}/resend", {}),
    ("admin.users_page", "GET", OWNER, "/admin/users", None),
    (
        "admin.users_page",
        "POST",
        OWNER,
        "/admin/users",
        {"username": "carol", "password": PASSWORD, "role": "operator"},
    ),
    ("admin.change_user", "POST", OWNER, "/admin/users/{bob}/role", {"role": "operator"}),
    ("admin.approve", "POST", OWNER, "/admin/approvals/{proposal}/approve", {}),
    ("admin.reject", "POST", OWNER, "/admin/approvals/{proposal}/reject", {"note": "no"}),
    # a proposer withdraws their own (`mine`: the signed-in role's proposal)
    ("admin.withdraw", "POST", OPERATOR, "/admin/approvals/{mine}/withdraw", {}),
    ("admin.audit_log", "GET", VIEWER, "/admin/audit", None),
    ("admin.audit_csv", "GET", VIEWER, "/admin/audit.csv", None),
]
# Routes that change nothing even when allowed (their answer is what they are for).
READ_ONLY_POSTS = {"admin.ping"}
# Routes the table leaves out, and why.
NOT_ROLE_CHECKED = {"admin.login"}  # before anyone is signed in


def test_the_table_names_every_dashboard_route(app):
    named = {(endpoint, method) for endpoint, method, *_ in ROUTES}
    served = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin.") and rule.endpoint not in NOT_ROLE_CHECKED
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served - named == set(), "add these routes to ROUTES"
    assert named - served == set(), "these routes no longer exist"


def snapshot() -> dict:
    """Every row of every table but the audit log (sign-ins and refusals add to it)."""
    _db.session.expire_all()
    rows = {}
    for table in _db.metadata.sorted_tables:
        if table.name != "audit_events":
            rows[table.name] = sorted(
                map(repr, _db.session.execute(text(f"SELECT * FROM {table.name}")).all())
            )
    _db.session.commit()
    return rows


def signed_in(app, role: Role):
    client = app.test_client()
    assert login(client, f"{role}-user", PASSWORD).status_code == 302
    return client


def attempt(client, world, method, path, form, role):
    path = path.format(mine=world[f"mine_{role}"], **world)
    if method == "GET":
        return client.get(path)
    data = {name: value.format(**world) for name, value in form.items()}
    data["csrf_token"] = csrf_from(client, "/admin/")
    return client.post(path, data=data)


CASES = [
    pytest.param(route, role, id=f"{route[0]}-{route[1]}-{role}")
    for route in ROUTES
    for role in Role
]


# Routes that ask Daraja (the simulator, served on a real port for them).
ASK_DARAJA = {"admin.check_payment", "admin.reverse_payment"}


@pytest.mark.parametrize(("route", "role"), CASES)
def test_each_role_on_each_route(request, app, world, route, role):
    endpoint, method, least, path, form = route
    if endpoint in ASK_DARAJA:
        request.getfixturevalue("live_server")
    client = signed_in(app, role)
    before = snapshot()
    answer = attempt(client, world, method, path, form, role)
    if role.at_least(least):
        assert answer.status_code in (200, 201, 302), (answer.status_code, answer.get_data())
        if method == "POST" and endpoint not in READ_ONLY_POSTS:
            assert snapshot() != before, f"{endpoint} as {role} changed nothing"
    else:
        assert answer.status_code == 403
        assert f"This needs the {least} role; you are signed in as {role}." in answer.get_data(
            as_text=True
        )
        assert snapshot() == before


def test_a_json_request_below_the_role_gets_the_error_shape(app, world):
    client = signed_in(app, VIEWER)
    answer = client.post(
        f"/admin/orders/{world['order_id']}/cancel",
        data={"csrf_token": csrf_from(client, "/admin/")},
        headers={"X-Admin-Background": "1"},
    )
    assert answer.status_code == 403
    assert answer.get_json()["error"]["code"] == "forbidden"


def test_a_viewer_is_not_shown_what_they_cannot_do(app, world):
    viewer, owner = signed_in(app, VIEWER), signed_in(app, OWNER)
    order_page = f"/admin/orders/{world['order_id']}"
    for path, marks in [
        (order_page, ["/cancel", "Record a payment by receipt", "/check"]),
        ("/admin/api-keys", ['class="card create-key"', "/revoke"]),
        ("/admin/webhooks", ["Add an endpoint", "/rotate"]),
        ("/admin/review", ['class="resolve-form"', 'class="assign-form"']),
        ("/admin/", ['href="/admin/users"']),
    ]:
        as_viewer = viewer.get(path).get_data(as_text=True)
        as_owner = owner.get(path).get_data(as_text=True)
        for mark in marks:
            assert mark in as_owner, (path, mark)
            assert mark not in as_viewer, (path, mark)


def test_a_role_change_applies_on_the_next_request(app, world, db):
    operator = signed_in(app, OPERATOR)
    owner = signed_in(app, OWNER)
    user = db.session.scalar(select(AdminUser).where(AdminUser.username == "operator-user"))
    answer = owner.post(
        f"/admin/users/{user.id}/role",
        data={"role": "viewer", "csrf_token": csrf_from(owner, "/admin/users")},
    )
    assert answer.status_code == 302
    cancel = operator.post(
        f"/admin/orders/{world['order_id']}/cancel",
        data={"csrf_token": csrf_from(operator, "/admin/")},
    )
    assert cancel.status_code == 403  # the same session, now a viewer's
    db.session.expire_all()
    assert db.session.get(Order, world["order_id"]).status == "pending"


def test_a_disabled_user_is_signed_out_and_cannot_sign_in(app, world, db):
    operator = signed_in(app, OPERATOR)
    owner = signed_in(app, OWNER)
    user = db.session.scalar(select(AdminUser).where(AdminUser.username == "operator-user"))
    token = csrf_from(owner, "/admin/users")
    assert (
        owner.post(f"/admin/users/{user.id}/disable", data={"csrf_token": token}).status_code == 302
    )
    assert operator.get("/admin/").status_code == 302  # back to the login page
    assert login(app.test_client(), "operator-user", PASSWORD).status_code == 401
    token = csrf_from(owner, "/admin/users")
    assert (
        owner.post(f"/admin/users/{user.id}/enable", data={"csrf_token": token}).status_code == 302
    )
    assert login(app.test_client(), "operator-user", PASSWORD).status_code == 302


def test_the_last_owner_can_be_neither_demoted_nor_disabled(app, world, db):
    owner = signed_in(app, OWNER)
    me = db.session.scalar(select(AdminUser).where(AdminUser.username == "owner-user"))
    for action, data in (("role", {"role": "operator"}), ("disable", {})):
        token = csrf_from(owner, "/admin/users")
        page = owner.post(
            f"/admin/users/{me.id}/{action}",
            data={"csrf_token": token, **data},
            follow_redirects=True,
        ).get_data(as_text=True)
        assert "owner-user is the last enabled owner: make another owner first." in page
    db.session.expire_all()
    me = db.session.get(AdminUser, me.id)
    assert (me.role, me.disabled_at) == ("owner", None)


def test_adding_a_user_refuses_a_short_password_and_keeps_what_was_typed(app, world, db):
    owner = signed_in(app, OWNER)
    answer = owner.post(
        "/admin/users",
        data={
            "username": "dave",
            "password": "short",
            "role": "operator",
            "csrf_token": csrf_from(owner, "/admin/users"),
        },
    )
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "At least 8 characters." in html and 'value="dave"' in html
    assert db.session.scalar(select(AdminUser).where(AdminUser.username == "dave")) is None


@pytest.mark.parametrize("role", list(Role))
def test_every_role_may_listen_on_the_dashboard_socket(app, world, role):
    """The `/admin` namespace's only event is connect (the server emits, nobody sends):
    every role may listen; it carries what every role may read."""
    from paymentapp.extensions import socketio

    client = signed_in(app, role)
    sock = socketio.test_client(app, namespace="/admin", flask_test_client=client)
    assert sock.is_connected("/admin")
    sock.disconnect(namespace="/admin")


def test_a_disabled_users_socket_is_refused(app, world, db):
    from paymentapp.extensions import socketio

    operator = signed_in(app, OPERATOR)
    user = db.session.scalar(select(AdminUser).where(AdminUser.username == "operator-user"))
    from paymentapp.admin import users

    users.set_disabled(user.id, True)
    sock = socketio.test_client(app, namespace="/admin", flask_test_client=operator)
    assert not sock.is_connected("/admin")
