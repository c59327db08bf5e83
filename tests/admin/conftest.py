"""Admin dashboard fixtures: a user, a logged-in client, payment and callback factories
(rows as the money path leaves them, written directly)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from flask import g
from werkzeug.security import generate_password_hash

from paymentapp.models import AdminUser, CallbackRecord, Payment, utcnow

USERNAME = "alice"
PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(client, path: str = "/admin/login") -> str:
    """The CSRF token a page hands out (the session cookie it belongs to stays in `client`)."""
    # The `app` fixture keeps one app context for the whole test, so `g` (where Flask-WTF
    # caches the token) outlives requests; a real server starts every request afresh.
    g.pop("csrf_token", None)
    page = client.get(path)
    match = TOKEN.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path} ({page.status_code})"
    return match.group(1)


def login(client, username: str = USERNAME, password: str = PASSWORD, **extra):
    return client.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(client), **extra},
    )


def session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    return cookie.value if cookie else ""


@pytest.fixture
def admin_user(db):
    user = AdminUser(
        username=USERNAME, password_hash=generate_password_hash(PASSWORD), session_version=0
    )
    db.session.add(user)
    db.session.commit()
    return user


@pytest.fixture
def admin_client(app, admin_user):
    """A test client logged in as `alice`."""
    client = app.test_client()
    response = login(client)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def add_payment(db):
    """Add a payment row to an order (by id) directly, as the money path would leave it."""

    def make(order_id: str, status: str = "pending", *, seconds_to_pay: float = 20, **fields):
        from paymentapp.models import Order

        order = db.session.get(Order, order_id)
        created = fields.pop("created_at", utcnow())
        payment = Payment(
            order_id=order_id,
            phone=fields.pop("phone", "254712345678"),
            amount=fields.pop("amount", order.amount),
            status=status,
            created_at=created,
            **fields,
        )
        if status == "completed":
            payment.paid_at = payment.paid_at or created + timedelta(seconds=seconds_to_pay)
            payment.receipt = payment.receipt or f"SIM{order.number[-4:]}XYZ"
            if not payment.needs_review:
                order.status = "paid"
                order.paid_at = payment.paid_at
        order.touch()
        db.session.add(payment)
        db.session.commit()
        return payment

    return make


@pytest.fixture
def make_callback(db):
    def make(body: dict | str, *, payment=None, outcome: str = "applied", **fields):
        record = CallbackRecord(
            body=body if isinstance(body, str) else json.dumps(body),
            payment_id=payment.id if payment else None,
            checkout_request_id=fields.pop(
                "checkout_request_id", payment.checkout_request_id if payment else None
            ),
            outcome=outcome,
            remote_addr=fields.pop("remote_addr", "196.201.214.200"),
            **fields,
        )
        db.session.add(record)
        db.session.commit()
        return record

    return make
