"""Every dashboard page scanned by axe-core (WCAG 2.1 A and AA) in real Chromium, on a
desktop and on a phone: no serious or critical violation. axe's `empty-table-header`
(a best practice, so outside the WCAG tags) is checked on its own: no header cell without
text."""

from __future__ import annotations

import pytest

from tests.a11y import axe_violations, describe, summary
from tests.admin.stack import WAIT_MS, dashboard_stack, seed, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 740}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with dashboard_stack(tmp_path_factory.mktemp("a11y")) as stack:
        stack.seeded = seed(stack)
        yield stack


def admin_pages(stack):
    """(name, how to get there) for every page a signed-in admin sees."""
    from playwright.sync_api import expect

    seeded = stack.seeded

    def order_with_raw_callback(page):
        page.goto(f"{stack.url}/admin/orders/{seeded.checking['id']}")
        page.locator("details summary").first.click()

    def review_with_raw_callback(page):
        page.goto(f"{stack.url}/admin/review")
        page.locator("details:not(.refund-details) summary").first.click()
        page.locator(".refund-details summary").first.click()  # a Record refund form

    def api_keys_with_new_key(page):
        page.goto(f"{stack.url}/admin/api-keys")
        page.fill("#key-name", "web shop")
        page.click("text=Create key")
        expect(page.locator("#new-key")).to_be_visible()

    def revoke_confirm(page):
        page.goto(f"{stack.url}/admin/api-keys")
        page.locator("table.keys a.button", has_text="Revoke").first.click()
        expect(page.locator(".confirm-revoke")).to_be_visible()

    return [
        ("orders", lambda page: page.goto(f"{stack.url}/admin")),
        ("orders filtered", lambda page: page.goto(f"{stack.url}/admin?status=zzz&q=ORD-")),
        ("order with a raw callback", order_with_raw_callback),
        ("paid order", lambda page: page.goto(f"{stack.url}/admin/orders/{seeded.paid['id']}")),
        ("review", review_with_raw_callback),
        ("api keys", lambda page: page.goto(f"{stack.url}/admin/api-keys")),
        ("api keys, a new key shown", api_keys_with_new_key),
        ("revoke confirm", revoke_confirm),
    ]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_admin_pages_have_no_serious_axe_violations(stack, browser, viewport, capsys):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORTS[viewport])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    found, practices = {}, {}

    def scan(name):
        found[name] = axe_violations(page, impact=None)
        practices[name] = axe_violations(page, impact=None, tags=("best-practice",))

    try:
        page.goto(f"{stack.url}/admin/login")
        scan("login")
        page.fill('input[name="username"]', "nobody")
        page.fill('input[name="password"]', "wrong password")
        page.click('button[type="submit"]')
        expect(page.locator(".flash-error")).to_be_visible(timeout=WAIT_MS)
        scan("login with an error")
        sign_in(page, stack.url)
        for name, open_page in admin_pages(stack):
            open_page(page)
            page.wait_for_load_state("load")
            scan(name)
    finally:
        context.close()

    with capsys.disabled():  # every finding, whatever its impact, for the record
        for name, violations in found.items():
            print(f"\naxe {viewport} {name}: WCAG {summary(violations) or 'clean'}", end="")
            print(f"; best practice {summary(practices[name]) or 'clean'}", end="")
    serious = {
        name: [v for v in violations if v["impact"] in ("serious", "critical")]
        for name, violations in found.items()
    }
    assert not any(serious.values()), {n: describe(v) for n, v in serious.items() if v}
    empty_headers = {
        name: describe([v for v in violations if v["id"] == "empty-table-header"])
        for name, violations in practices.items()
        if any(v["id"] == "empty-table-header" for v in violations)
    }
    assert not empty_headers, empty_headers
    assert not errors, errors
