"""The payment dialog and the demo shop scanned by axe-core (WCAG 2.1 A and AA) in real
Chromium, in every state the customer sees, on a phone and on a desktop: no serious or
critical violation. axe walks into the dialog's open shadow root;
the first test proves it does."""

from __future__ import annotations

import pytest

from tests.a11y import axe_run, axe_violations, describe, in_shadow, summary
from tests.browser_app import (
    DESKTOP,
    PHONE,
    dialog_app,
    expect_view,
    new_context,
    new_phone,
    open_hosted,
    pay,
    shot,
)
from tests.browser_app import buy as buy_order

pytestmark = pytest.mark.browser

VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP}


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(tmp_path_factory.mktemp("instance"), PAYMENT_PHONE_COOLDOWN_S="10") as app:
        yield app


@pytest.fixture
def context(browser, request):
    context = new_context(browser, VIEWPORTS[getattr(request, "param", "desktop")])
    yield context
    context.close()
    assert context.page_errors == [], f"JavaScript errors in the page: {context.page_errors}"


@pytest.fixture
def page(context):
    page = context.new_page()
    page.emulate_media(reduced_motion="reduce")  # no state caught half faded in
    return page


def test_axe_scans_inside_the_dialogs_shadow_root(app_server, page):
    """A low-contrast label planted inside the shadow root is found, with its shadow
    path; and the clean dialog's passing checks include nodes inside it."""
    order = buy_order(app_server, "tea")
    open_hosted(page, app_server, order)
    results = axe_run(page)
    shadow_passes = [n for rule in results["passes"] for n in rule["nodes"] if in_shadow(n)]
    assert len(shadow_passes) > 20, "axe checked nothing inside the dialog's shadow root"
    page.evaluate(  # (through the CSSOM: the page's CSP refuses a <style> element)
        """() => {
            const root = document.querySelector(".paymentapp-host").shadowRoot;
            root.querySelector(".pa-pay-label").style.color = "#9ccfae";
        }"""
    )
    found = axe_violations(page)
    contrast = [v for v in found if v["id"] == "color-contrast"]
    assert contrast, describe(found)
    targets = [n["target"] for n in contrast[0]["nodes"]]
    assert [[".paymentapp-host", ".pa-pay-label"]] in targets, targets  # a shadow path


def scan(page, name: str, found: dict, shadow: bool = True) -> None:
    """Scan the page as it is now; keep every violation (all impacts) under `name`."""
    results = axe_run(page)
    found[name] = results["violations"]
    if shadow:  # the dialog was really looked into
        assert any(in_shadow(n) for rule in results["passes"] for n in rule["nodes"]), name
    shot(page, f"a11y-{page.viewport_size['width']}-{name.replace(' ', '-')}")


@pytest.mark.parametrize("context", list(VIEWPORTS), indirect=True)
def test_every_dialog_state_and_the_shop_have_no_serious_axe_violations(
    app_server, context, page, capsys
):
    from playwright.sync_api import expect

    found: dict[str, list] = {}

    page.goto(app_server.url + "/")
    scan(page, "shop", found, shadow=False)

    # The modal on the shop page.
    with page.expect_response("**/shop/buy"):
        page.locator("button[data-product=coffee]").click()
    expect_view(page, "form")
    scan(page, "shop modal form", found)
    page.keyboard.press("Escape")

    # The hosted page, inline, in each state.
    order = buy_order(app_server, "kikoy")
    open_hosted(page, app_server, order)
    expect(page.locator(".pa-conn")).to_have_attribute("data-connection", "live")
    scan(page, "form", found)
    page.locator("#pa-phone").fill("0712 34")
    page.locator(".pa-pay").click()
    expect(page.locator(".pa-field-error")).not_to_be_empty()
    scan(page, "form invalid phone", found)
    page.locator("#pa-phone").fill("0733 123 456")
    expect(page.locator(".pa-network")).not_to_be_empty()
    scan(page, "form airtel hint", found)

    phone = new_phone()
    pay(page, phone)
    scan(page, "pending", found)
    app_server.simulator.answer(order["order_number"], "cancel")
    expect_view(page, "failed")
    scan(page, "failed cancelled", found)
    page.get_by_role("button", name="Try again").click()
    expect_view(page, "form")
    expect(page.locator(".pa-pay")).to_be_disabled()  # counting down
    scan(page, "form waiting", found)
    expect(page.locator(".pa-pay")).to_be_enabled(timeout=20_000)
    page.locator(".pa-pay").click()
    expect_view(page, "pending")
    app_server.simulator.answer(order["order_number"], "accept")
    expect_view(page, "success")
    scan(page, "success", found)

    # A paid order's page, reloaded, and a broken link's error page.
    open_paid = f"{app_server.url}/pay/{order['order_id']}?token={order['token']}"
    page.goto(open_paid)
    expect_view(page, "success")
    scan(page, "paid hosted page", found)
    page.goto(f"{app_server.url}/pay/{order['order_id']}?token=not-a-token")
    scan(page, "invalid link", found, shadow=False)

    # The simulated phone (simulator mode only), with a prompt on it.
    other = buy_order(app_server, "tea")
    open_hosted(page, app_server, other)
    pay(page, new_phone())
    page.goto(app_server.url + "/_simulator/phone")
    expect(page.locator(".prompt").first).to_be_visible()
    scan(page, "simulated phone", found, shadow=False)

    with capsys.disabled():
        for name, violations in found.items():
            print(f"\naxe {page.viewport_size['width']}px {name}: {summary(violations) or 'clean'}")
    serious = {
        name: [v for v in violations if v["impact"] in ("serious", "critical")]
        for name, violations in found.items()
    }
    assert not any(serious.values()), "\n".join(
        f"{name}:\n{describe(v)}" for name, v in serious.items() if v
    )


def test_the_hosted_page_has_a_level_one_heading(app_server, page):
    order = buy_order(app_server, "coffee")
    open_hosted(page, app_server, order)
    practices = axe_violations(page, impact=None, tags=("best-practice",))
    assert "page-has-heading-one" not in {v["id"] for v in practices}, describe(practices)
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == f"Pay order {order['order_number']} with M-Pesa"
