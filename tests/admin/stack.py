"""The dashboard on a real stack (gunicorn with 2 workers, PostgreSQL, Redis), seeded with
every kind of row the pages show, for the browser tests (`test_browser_*.py`).

    with dashboard_stack(tmp_path) as stack:
        seeded = seed(stack)
        sign_in(page, stack.url)
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass

from tests import services
from tests.e2e import Stack, next_phone, post_callback, running_stack
from tests.helpers import PASSWORD, USERNAME

WAIT_MS = 15_000


@contextlib.contextmanager
def dashboard_stack(instance_path, **extra_env):
    """A running stack with the dashboard user `alice`; no orders yet."""
    with running_stack(instance_path, PAYMENT_PHONE_COOLDOWN_S="0", **extra_env) as stack:
        services.flask_cli(stack.env, "admin", "create", USERNAME, input=f"{PASSWORD}\n" * 2)
        yield stack
        assert "Traceback" not in stack.server.log(), stack.server.log()


def create_order(stack: Stack, amount: int, description: str = "") -> dict:
    response = stack.http.post(
        f"{stack.url}/api/orders",
        json={"amount": amount, **({"description": description} if description else {})},
        headers=stack.auth,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def order_details(stack: Stack, order: dict) -> dict:
    response = stack.http.get(
        f"{stack.url}/api/orders/{order['id']}", headers=stack.auth, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def start_payment(stack: Stack, order: dict) -> dict:
    """Send the STK Push (the simulated phone gets the prompt); returns the payment."""
    response = stack.http.post(
        f"{stack.url}/api/orders/{order['id']}/payments",
        json={"phone": next_phone()},
        headers={"X-Order-Token": order["client_token"]},
        timeout=15,
    )
    assert response.status_code == 202, response.text
    return order_details(stack, order)["payments"][-1]


def wait_payment(stack: Stack, order: dict, status: str) -> dict:
    """Wait until the order's latest payment has this status (its callback was applied)."""

    def reached():
        payment = order_details(stack, order)["payments"][-1]
        return payment if payment["status"] == status else None

    return services.wait_for(reached, f"{order['number']}'s payment to be {status}", 15)


@dataclass
class Seeded:
    paid: dict  # paid on the phone: its order page shows the callback that paid it
    checking: dict  # a cancelled attempt (a raw callback) and a prompt still open
    flagged: dict  # paid 3,000 of 3,200: in the review queue
    unpaid: dict  # nobody tried to pay


def seed(stack: Stack) -> Seeded:
    """One order of each kind, made the way production makes them (API, phone, callbacks)."""
    paid = create_order(stack, 1500, "2 kg sugar")
    start_payment(stack, paid)
    stack.simulator.answer(paid["number"], "accept")
    wait_payment(stack, paid, "completed")

    checking = create_order(stack, 250, "Airtime top-up for the delivery riders' phones")
    start_payment(stack, checking)
    stack.simulator.answer(checking["number"], "cancel")
    wait_payment(stack, checking, "cancelled")
    start_payment(stack, checking)  # still open on the phone: "Check status now"

    flagged = create_order(stack, 3200, "Cooking gas refill, 13 kg, delivered to Westlands")
    checkout_id = start_payment(stack, flagged)["checkout_request_id"]
    post_callback(stack, checkout_id, 0, amount=3000)
    services.wait_for(
        lambda: order_details(stack, flagged)["payments"][-1]["status"] == "completed",
        "the short payment to be recorded",
    )
    # a callback for a checkout id this system never issued
    post_callback(stack, f"ws_CO_{uuid.uuid4().hex[:20]}", 0, amount=100)

    unpaid = create_order(stack, 990, "School shoes")
    return Seeded(paid=paid, checking=checking, flagged=flagged, unpaid=unpaid)


def sign_in(page, url: str, username: str = USERNAME, password: str = PASSWORD) -> None:
    """Sign in (as `alice` unless told) through the login page; ends on the orders page,
    live."""
    from playwright.sync_api import expect

    page.goto(f"{url}/admin/login")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
