"""Dashboard sign-in: sessions, CSRF, lockout, rate limit, idle timeout, revocation."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from paymentapp.admin.auth import LOGIN_AT_KEY, SEEN_KEY, SESSION_KEY
from paymentapp.models import AdminUser, Order, utcnow
from tests.helpers import LIVE, PASSWORD, USERNAME, csrf_from, login, session_cookie

GENERIC = "Invalid username or password."


def test_login_page_has_csrf_token_and_strict_headers(client):
    page = client.get("/admin/login")
    assert page.status_code == 200
    assert 'name="csrf_token"' in page.get_data(as_text=True)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"


def test_login_starts_a_fresh_permanent_session(app, client, admin_user):
    csrf_from(client)
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"  # session fixation: must not survive login
    before = session_cookie(client)
    response = login(client)
    assert response.status_code == 302 and response.location == "/admin"
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess[SESSION_KEY] == admin_user.id
        assert sess.permanent
    assert session_cookie(client) != before
    set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # simulator mode serves plain http locally
    assert client.get("/admin").status_code == 200


def test_session_cookie_is_secure_outside_simulator_mode(app):
    assert app.config["SESSION_COOKIE_SECURE"] is False
    from paymentapp.config import load_config

    live = load_config({**LIVE, "MPESA_ENV": "sandbox"})
    assert live["SESSION_COOKIE_SECURE"] is True and live["SESSION_COOKIE_HTTPONLY"] is True


def test_wrong_password_and_unknown_user_get_the_same_answer(client, admin_user):
    wrong = login(client, password="not the password")
    unknown = login(client, username="mallory")
    assert wrong.status_code == unknown.status_code == 401
    assert GENERIC in wrong.get_data(as_text=True)
    assert GENERIC in unknown.get_data(as_text=True)
    with client.session_transaction() as sess:
        assert SESSION_KEY not in sess


def test_login_without_csrf_token_is_refused(client, admin_user):
    client.get("/admin/login")
    response = client.post("/admin/login", data={"username": USERNAME, "password": PASSWORD})
    assert response.status_code == 400
    with client.session_transaction() as sess:
        assert SESSION_KEY not in sess


def test_state_changing_requests_without_csrf_token_are_refused(admin_client, make_order):
    order = make_order(250)
    cancel = admin_client.post(f"/admin/orders/{order['id']}/cancel")
    assert cancel.status_code == 400
    assert "expired or did not come from the dashboard" in cancel.get_data(as_text=True)
    ping = admin_client.post("/admin/api/ping")
    assert ping.status_code == 400 and ping.get_json()["error"]["code"] == "csrf_failed"
    wrong = admin_client.post("/admin/logout", data={"csrf_token": "forged"})
    assert wrong.status_code == 400
    assert admin_client.get("/admin").status_code == 200  # still logged in
    from paymentapp.extensions import db

    assert db.session.get(Order, order["id"]).status == "pending"
    token = csrf_from(admin_client, "/admin")
    ok = admin_client.post("/admin/api/ping", headers={"X-CSRFToken": token})
    assert ok.status_code == 200 and ok.get_json()["ok"] is True


def test_lockout_after_repeated_failures(app, db, client, admin_user):
    for _ in range(app.config["ADMIN_LOCKOUT_AFTER"]):
        assert login(client, password="guess").status_code == 401
    user = db.session.get(AdminUser, admin_user.id)
    db.session.refresh(user)
    assert user.locked_until is not None and user.locked_until > utcnow()
    # locked: even the right password is refused, with the same generic message
    locked = login(client)
    assert locked.status_code == 401 and GENERIC in locked.get_data(as_text=True)
    # once the lock has run out, the right password works and the counters reset
    user.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert login(client).status_code == 302
    db.session.refresh(user)
    assert user.failed_logins == 0 and user.locked_until is None
    assert user.last_login_at is not None


def test_failures_below_the_threshold_do_not_lock(app, db, client, admin_user):
    for _ in range(app.config["ADMIN_LOCKOUT_AFTER"] - 1):
        login(client, password="guess")
    assert login(client).status_code == 302
    assert db.session.get(AdminUser, admin_user.id).failed_logins == 0


@pytest.mark.parametrize("app_config", [{"ADMIN_LOGIN_RATE_LIMIT": "3 per minute"}])
def test_login_attempts_are_rate_limited_per_address(client, admin_user):
    for name in ("a", "b", "c"):
        assert login(client, username=name).status_code == 401
    limited = login(client)  # even the right password: the address is over its limit
    assert limited.status_code == 429
    assert "Too many sign-in attempts" in limited.get_data(as_text=True)
    with client.session_transaction() as sess:
        assert SESSION_KEY not in sess
    assert client.get("/admin/login").status_code == 200  # only POSTs are limited


def _age_session(client, key: str, seconds: float) -> None:
    with client.session_transaction() as sess:
        sess[key] = time.time() - seconds


def test_idle_session_ends(app, admin_client):
    idle = app.config["ADMIN_IDLE_TIMEOUT_S"]
    _age_session(admin_client, SEEN_KEY, idle - 30)
    assert admin_client.get("/admin").status_code == 200  # activity restarts the clock
    with admin_client.session_transaction() as sess:
        assert time.time() - sess[SEEN_KEY] < 30
    _age_session(admin_client, SEEN_KEY, idle + 1)
    api = admin_client.get("/admin/api/session")
    assert api.status_code == 401 and api.get_json()["error"]["code"] == "unauthorized"
    _age_session(admin_client, SEEN_KEY, idle + 1)
    page = admin_client.get("/admin/review")
    assert page.status_code == 302
    assert page.location.startswith("/admin/login?next=/admin/review")
    assert "Your session has ended" in admin_client.get(page.location).get_data(as_text=True)
    with admin_client.session_transaction() as sess:
        assert SESSION_KEY not in sess


def test_background_requests_do_not_count_as_activity(app, admin_client):
    _age_session(admin_client, SEEN_KEY, 100)
    background = admin_client.get("/admin", headers={"X-Admin-Background": "1"})
    assert background.status_code == 200
    assert admin_client.get("/admin/api/session").status_code == 200
    with admin_client.session_transaction() as sess:
        assert time.time() - sess[SEEN_KEY] >= 100
    token = csrf_from(admin_client, "/admin")  # a page load is activity
    with admin_client.session_transaction() as sess:
        assert time.time() - sess[SEEN_KEY] < 30
    _age_session(admin_client, SEEN_KEY, 100)
    admin_client.post("/admin/api/ping", headers={"X-CSRFToken": token})
    with admin_client.session_transaction() as sess:
        assert time.time() - sess[SEEN_KEY] < 30


def test_session_has_an_absolute_lifetime(app, admin_client):
    _age_session(admin_client, LOGIN_AT_KEY, app.config["ADMIN_SESSION_MAX_AGE_S"] + 1)
    assert admin_client.get("/admin").status_code == 302


def test_logout_revokes_the_old_cookie(app, admin_client):
    stolen = session_cookie(admin_client)
    token = csrf_from(admin_client, "/admin")
    out = admin_client.post("/admin/logout", data={"csrf_token": token})
    assert out.status_code == 302 and out.location == "/admin/login"
    assert admin_client.get("/admin").status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    assert replay.get("/admin").status_code == 302
    assert replay.get("/admin/api/session").status_code == 401


def test_new_password_from_the_cli_revokes_sessions(app, admin_client):
    assert admin_client.get("/admin").status_code == 200
    result = app.test_cli_runner().invoke(
        args=["admin", "create", USERNAME], input="another password\nanother password\n"
    )
    assert result.exit_code == 0, result.output
    assert admin_client.get("/admin").status_code == 302


def test_next_only_redirects_inside_the_dashboard(client, admin_user, make_order):
    order = make_order()
    inside = login(client, next=f"/admin/orders/{order['id']}")
    assert inside.location == f"/admin/orders/{order['id']}"
    for target in ("https://evil.example/admin", "//evil.example/admin", "/\\evil.example"):
        other = client.__class__(client.application)
        assert login(other, next=target).location == "/admin"


def test_logged_in_admin_skips_the_login_page(admin_client):
    response = admin_client.get("/admin/login")
    assert response.status_code == 302 and response.location == "/admin"


def _admin_urls(app, order_id: str, payment_id: str):
    values = {
        "order_id": order_id,
        "payment_id": payment_id,
        "record_id": 1,
        "key_id": 1,
        "endpoint_id": "we_1",
        "event_id": "evt_1",
        "check_id": "rck_1",
        "action": "apply",
        "approval_id": "apr_1",
        "user_id": 1,
    }
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint == "admin.login":
            continue
        path = rule.build({k: values[k] for k in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, path


def test_every_admin_route_refuses_anonymous_users(app, db, client, make_order, add_payment):
    order = make_order()
    payment = add_payment(order["id"])
    routes = list(_admin_urls(app, order["id"], payment.id))
    assert len(routes) >= 10
    for method, path in routes:
        response = client.open(path, method=method)
        if path.startswith("/admin/api/"):
            assert response.status_code == 401, (method, path)
            assert response.get_json()["error"]["code"] == "unauthorized"
        else:
            assert response.status_code == 302, (method, path, response.status_code)
            assert response.location.startswith("/admin/login"), (method, path)
    assert db.session.scalar(select(Order).where(Order.id == order["id"])).status == "pending"


def test_nul_characters_in_forms_are_harmless(client, admin_user):
    assert login(client, username="ali\x00ce").status_code == 302  # NUL dropped, then valid


@pytest.mark.parametrize(
    "name, value",
    [
        ("ADMIN_TIMEZONE", "Mars/Olympus_Mons"),
        ("ADMIN_LOGIN_RATE_LIMIT", "lots"),
        ("ADMIN_IDLE_TIMEOUT_S", "5"),
        ("ADMIN_SESSION_MAX_AGE_S", "soon"),
    ],
)
def test_bad_admin_settings_stop_start_up_naming_the_variable(name, value):
    from paymentapp.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=name):
        load_config(
            {"SECRET_KEY": "s", "MPESA_CALLBACK_TOKEN": "cbtoken-0123456789abc", name: value}
        )
