"""The API keys page (`/admin/api-keys`): list, create (the key shown once), and revoke
after a confirm step, with CSRF; a revoked key is refused at once."""

from __future__ import annotations

import re

from sqlalchemy import select

from paymentapp.models import ApiKey
from paymentapp.security import create_api_key
from tests.helpers import assert_error, csrf_from

NEW_KEY = re.compile(r'<code id="new-key" class="key">(pk_[^<]+)</code>')


def test_the_page_needs_a_session_and_is_in_the_nav(app, client, admin_client):
    anonymous = app.test_client()
    response = anonymous.get("/admin/api-keys")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    assert anonymous.post("/admin/api-keys/1/revoke").status_code == 302
    html = admin_client.get("/admin").get_data(as_text=True)
    assert '<a href="/admin/api-keys" >API keys</a>' in html


def test_lists_keys_with_name_prefix_created_and_status(admin_client, db):
    active, _ = create_api_key("web shop")
    gone, _ = create_api_key("old till")
    token = csrf_from(admin_client, f"/admin/api-keys/{gone.id}/revoke")
    admin_client.post(f"/admin/api-keys/{gone.id}/revoke", data={"csrf_token": token})
    html = admin_client.get("/admin/api-keys").get_data(as_text=True)
    assert 'aria-current="page">API keys' in html
    names = re.findall(r'<td data-label="Name">([^<]+)</td>', html)
    assert names == ["web shop", "old till"]  # active keys first
    assert f"{active.prefix}…" in html and f"{gone.prefix}…" in html
    assert html.count('<span class="badge badge-paid">active</span>') == 1
    assert html.count('<span class="badge badge-cancelled">revoked</span>') == 1
    assert html.count(">Revoke<") == 1  # only the active key can be revoked


def test_create_shows_the_key_once_and_it_works(admin_client, client, db):
    token = csrf_from(admin_client, "/admin/api-keys")
    response = admin_client.post("/admin/api-keys", data={"csrf_token": token, "name": " shop "})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    plain = NEW_KEY.search(html).group(1)
    assert "shown only once" in html
    record = db.session.scalar(select(ApiKey))
    assert record.name == "shop" and plain.startswith(record.prefix)
    assert plain not in admin_client.get("/admin/api-keys").get_data(as_text=True)
    auth = {"Authorization": f"Bearer {plain}"}
    assert client.get("/api/orders", headers=auth).status_code == 200


def test_create_refuses_a_bad_name_or_a_missing_csrf_token(admin_client, db):
    token = csrf_from(admin_client, "/admin/api-keys")
    for name in ("   ", "x" * 81):
        response = admin_client.post("/admin/api-keys", data={"csrf_token": token, "name": name})
        assert response.status_code == 422
        assert "Name the key (1 to 80 characters)." in response.get_data(as_text=True)
    assert admin_client.post("/admin/api-keys", data={"name": "shop"}).status_code == 400
    assert db.session.scalar(select(ApiKey)) is None


def test_revoke_asks_first_then_refuses_the_key_at_once(admin_client, client, db):
    record, plain = create_api_key("web shop")
    auth = {"Authorization": f"Bearer {plain}"}
    assert client.get("/api/orders", headers=auth).status_code == 200

    confirm = admin_client.get(f"/admin/api-keys/{record.id}/revoke")
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200
    assert "Revoke the API key <strong>web shop</strong>" in html and "Revoke key" in html
    db.session.refresh(record)
    assert record.revoked_at is None  # asking is not doing
    assert client.get("/api/orders", headers=auth).status_code == 200

    refused = admin_client.post(f"/admin/api-keys/{record.id}/revoke")  # no CSRF token
    assert refused.status_code == 400
    db.session.refresh(record)
    assert record.revoked_at is None

    token = csrf_from(admin_client, f"/admin/api-keys/{record.id}/revoke")
    done = admin_client.post(
        f"/admin/api-keys/{record.id}/revoke", data={"csrf_token": token}, follow_redirects=True
    )
    assert done.request.path == "/admin/api-keys"
    assert "is revoked: requests with it now get 401." in done.get_data(as_text=True)
    assert_error(client.get("/api/orders", headers=auth), 401, "invalid_api_key")
    db.session.refresh(record)
    assert record.revoked_at is not None

    again = admin_client.post(
        f"/admin/api-keys/{record.id}/revoke", data={"csrf_token": token}, follow_redirects=True
    )
    assert "was already revoked" in again.get_data(as_text=True)
    assert admin_client.get("/admin/api-keys/999999/revoke").status_code == 404


def test_create_a_key_with_some_scopes_and_only_its_own_orders(admin_client, client, db):
    page = admin_client.get("/admin/api-keys").get_data(as_text=True)
    assert page.count('type="checkbox" name="scopes"') == 4 and page.count(" checked>") == 4
    token = csrf_from(admin_client, "/admin/api-keys")
    form = {"csrf_token": token, "name": "reports", "scopes_shown": "1"}
    none = admin_client.post("/admin/api-keys", data=form)
    assert none.status_code == 422 and "Choose at least one" in none.get_data(as_text=True)
    assert db.session.scalar(select(ApiKey)) is None
    made = admin_client.post(
        "/admin/api-keys", data={**form, "scopes": ["orders:read"], "own_orders": "1"}
    )
    assert made.status_code == 201
    record = db.session.scalar(select(ApiKey))
    assert record.scopes == "orders:read" and record.own_orders
    assert "orders:read · own orders only" in made.get_data(as_text=True)
    plain = NEW_KEY.search(made.get_data(as_text=True)).group(1)
    reader = {"Authorization": f"Bearer {plain}"}
    assert client.get("/api/orders", headers=reader).status_code == 200
    refused = client.post("/api/orders", json={"amount": 5}, headers=reader)
    assert_error(refused, 403, "insufficient_scope")
