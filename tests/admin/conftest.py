"""Admin dashboard fixtures: a user, a logged-in client, payment and callback factories
(rows as the money path leaves them, written directly). Sign-in helpers: `tests/helpers.py`."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from werkzeug.security import generate_password_hash

from paymentapp.models import AdminUser, CallbackRecord, Payment, utcnow
from tests.helpers import PASSWORD, USERNAME, login


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
            # the money path always records the amount paid (`Payment.counts` compares it)
            if payment.paid_amount is None:
                payment.paid_amount = payment.amount
            payment.paid_at = payment.paid_at or created + timedelta(seconds=seconds_to_pay)
            payment.receipt = payment.receipt or f"SIM{order.number[-4:]}XYZ"
            if not payment.needs_review:
                order.status = "paid"
                order.paid_at = payment.paid_at
        order.bump_version()
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


@pytest.fixture(params=["1280", "375"])
def sized_page(request, browser):
    """A page at desktop and at phone width (`page.width`); JavaScript errors fail the test."""
    from tests.a11y import VIEWPORTS
    from tests.browser_app import WAIT_MS

    context = browser.new_context(viewport=VIEWPORTS[request.param])
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.errors = []
    page.width = request.param
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()
    assert not page.errors, page.errors
