"""Approvals with two owners in real Chromium against real gunicorn, PostgreSQL and Redis
(docs/admin.md): alice records a payment by receipt, which waits; her page offers no Approve
and says another owner approves it; bob, in his own browser, sees it waiting on the
orders page and approves it; both pages then show the order paid, live. Then bob asks for
a manual refund that alice rejects with a note: nothing is refunded."""

from __future__ import annotations

import pytest

from tests import services
from tests.a11y import page_is_sound
from tests.admin.stack import create_order, dashboard_stack, sign_in
from tests.browser_app import WAIT_MS

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

BOB_PASSWORD = "bob's long password"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with dashboard_stack(
        tmp_path_factory.mktemp("approvals"), MPESA_RECEIPT_CHECKS="off", APPROVALS="on"
    ) as stack:
        services.flask_cli(
            stack.env, "admin", "create", "bob", "--role", "owner", input=f"{BOB_PASSWORD}\n" * 2
        )
        yield stack


@pytest.fixture
def two_browsers(browser):
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(2)]
    pages = []
    for context in contexts:
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        page.errors = []
        page.width = "1280"
        page.on("pageerror", lambda exc, page=page: page.errors.append(str(exc)))
        pages.append(page)
    yield pages
    for context in contexts:
        context.close()
    for page in pages:
        assert not page.errors, page.errors


def test_one_owner_proposes_another_approves_live(stack, two_browsers):
    from playwright.sync_api import expect

    alice, bob = two_browsers
    order = create_order(stack, 700, "approved by a second owner")
    sign_in(alice, stack.url)
    sign_in(bob, stack.url, "bob", BOB_PASSWORD)
    bob.goto(f"{stack.url}/admin/")  # bob watches the orders page

    alice.goto(f"{stack.url}/admin/orders/{order['id']}")
    expect(alice.locator("#live-status")).to_have_attribute("data-state", "live")
    alice.get_by_label("M-Pesa receipt").fill("SBR7RT61SV")
    alice.get_by_label("Amount (KES)").fill("700")
    alice.get_by_label("Note", exact=True).fill("M-Pesa statement of 1 Dec")
    alice.get_by_role("button", name="Record payment").click()
    expect(alice.locator(".flash-ok")).to_contain_text("It waits for another owner's approval.")
    waiting = alice.locator(".approval")
    expect(waiting).to_contain_text("record receipt SBR7RT61SV (KES 700) by hand")
    expect(waiting).to_contain_text("Another owner approves it.")
    expect(waiting.get_by_role("button", name="Approve")).to_have_count(0)
    expect(alice.locator("h1 .badge")).to_have_text("pending")
    page_is_sound(alice, "proposed", "admin-1280-approval-proposed")

    bob.reload()
    card = bob.locator(".approval", has_text="SBR7RT61SV")
    expect(card).to_contain_text("proposed by admin:alice")
    page_is_sound(bob, "waiting", "admin-1280-approval-waiting")
    card.get_by_role("button", name="Approve").click()
    expect(bob.locator(".flash-ok")).to_contain_text("Approved: record receipt SBR7RT61SV")
    expect(bob.locator(".approval")).to_have_count(0)
    # alice's open order page turns paid by itself (the commit's emit)
    expect(alice.locator("h1 .badge")).to_have_text("paid")
    expect(alice.locator(".timeline")).to_contain_text("admin:bob approved")


def test_a_refund_proposal_rejected_with_a_note(stack, two_browsers):
    from playwright.sync_api import expect

    alice, bob = two_browsers
    order = create_order(stack, 900, "refund rejected")
    sign_in(alice, stack.url)
    sign_in(bob, stack.url, "bob", BOB_PASSWORD)
    # paid by a receipt bob proposes and alice approves
    bob.goto(f"{stack.url}/admin/orders/{order['id']}")
    bob.get_by_label("M-Pesa receipt").fill("SBR8RT61SV")
    bob.get_by_label("Amount (KES)").fill("1000")
    bob.get_by_label("Note", exact=True).fill("paid 100 too much")
    bob.get_by_role("button", name="Record payment").click()
    alice.goto(f"{stack.url}/admin/orders/{order['id']}")
    alice.locator(".approval").get_by_role("button", name="Approve").click()
    expect(alice.locator("h1 .badge")).to_have_text("paid")

    bob.reload()
    bob.locator(".refund-form").get_by_label("Note").fill("gave the 100 back in cash")
    bob.locator(".refund-form").get_by_role("button", name="Record refund").click()
    expect(bob.locator(".flash-ok")).to_contain_text("It waits for another owner's approval.")
    alice.reload()
    card = alice.locator(".approval", has_text="refund KES 100")
    card.get_by_label("Why not").fill("no cash left the till")
    card.get_by_role("button", name="Reject").click()
    expect(alice.locator(".flash-ok")).to_contain_text("Rejected: refund KES 100")
    expect(alice.locator(".timeline")).to_contain_text("no cash left the till")
    expect(alice.locator("#amount-refunded")).to_have_count(0)
