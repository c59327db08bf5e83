"""The dashboard on a 375 px wide phone, in real Chromium: no page scrolls sideways (an
opened raw callback and a Record refund form included), Sign out, "Check status now",
Resolve and Record refund are on screen, and every column of an order (phone and paid time
too) is readable. Screenshots:
`test-artifacts/admin-375-*.png`."""

from __future__ import annotations

import pytest

from tests import services
from tests.admin.stack import dashboard_stack, seed, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = services.ROOT / "test-artifacts"
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with dashboard_stack(tmp_path_factory.mktemp("mobile")) as stack:
        stack.seeded = seed(stack)
        yield stack


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()
    assert not page.errors, page.errors


def no_sideways_scroll(page, name: str) -> None:
    """The page is no wider than the screen; saves a full-page screenshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-375-{name}.png"), full_page=True)
    widths = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
    )
    assert widths["inner"] == PHONE["width"]
    assert widths["scroll"] <= widths["inner"], f"{name}: the page is {widths['scroll']} px wide"


def on_screen(page, locator, what: str) -> None:
    """Visible, and entirely within the screen's width."""
    from playwright.sync_api import expect

    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None, what
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{what} is cut off: {box}"


def signed_in_chrome(page, name: str) -> None:
    no_sideways_scroll(page, name)
    on_screen(page, page.get_by_role("button", name="Sign out"), "Sign out")
    for link in ("Orders", "Review", "API keys"):
        on_screen(page, page.locator(".topbar nav").get_by_role("link", name=link), link)


def test_login_page_fits_a_phone(stack, page):
    page.goto(f"{stack.url}/admin/login")
    no_sideways_scroll(page, "login")
    on_screen(page, page.get_by_role("button", name="Sign in"), "Sign in")


def test_orders_page_fits_a_phone_and_shows_every_column(stack, page):
    sign_in(page, stack.url)
    signed_in_chrome(page, "orders")
    row = page.locator(f'tr[data-order-id="{stack.seeded.paid["id"]}"]')
    on_screen(page, row.locator("td").first.get_by_role("link"), "the order number")
    for label in ("Amount", "Status", "Latest payment", "Phone", "Created", "Paid"):
        on_screen(page, row.locator(f'td[data-label="{label}"]'), f"the {label} cell")
    assert "2547•••" in row.locator('td[data-label="Phone"]').inner_text()
    assert row.locator('td[data-label="Paid"]').inner_text().strip() not in ("", "—")
    page.locator(".filters select[name=status]").select_option("paid")
    page.click(".filters button[type=submit]")
    no_sideways_scroll(page, "orders-filtered")


def test_order_page_with_an_open_raw_callback_fits_a_phone(stack, page):
    sign_in(page, stack.url)
    page.goto(f"{stack.url}/admin/orders/{stack.seeded.checking['id']}")
    on_screen(page, page.get_by_role("button", name="Check status now"), "Check status now")
    for label in ("Phone", "Result", "Paid"):
        on_screen(page, page.locator(f'table.payments td[data-label="{label}"]').first, label)
    details = page.locator(".timeline details").first
    details.locator("summary").click()
    raw = details.locator("pre")
    on_screen(page, raw, "the raw callback body")
    assert '"ResultCode": 1032' in raw.inner_text()
    signed_in_chrome(page, "order-raw-callback")


def test_review_page_fits_a_phone(stack, page):
    sign_in(page, stack.url)
    page.goto(f"{stack.url}/admin/review")
    page.locator("table.review details:not(.refund-details) summary").first.click()
    page.locator(".refund-details summary").first.click()  # the flagged payment's refund
    signed_in_chrome(page, "review")
    first = page.locator("table.review").first
    on_screen(page, first.get_by_role("button", name="Resolve").first, "Resolve")
    on_screen(page, first.get_by_role("button", name="Record refund").first, "Record refund")
    on_screen(page, first.locator('td[data-label="Paid"]').first, "the Paid cell")


def test_api_keys_page_fits_a_phone(stack, page):
    sign_in(page, stack.url)
    page.goto(f"{stack.url}/admin/api-keys")
    page.fill("#key-name", "point of sale, branch 2")
    page.click("text=Create key")
    on_screen(page, page.locator("#new-key"), "the new key")
    signed_in_chrome(page, "api-keys")
    on_screen(page, page.locator("table.keys a.button").first, "Revoke")
    page.locator("table.keys a.button").first.click()
    signed_in_chrome(page, "api-key-revoke")
    on_screen(page, page.get_by_role("button", name="Revoke key"), "Revoke key")
