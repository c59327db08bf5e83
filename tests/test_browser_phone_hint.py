"""The browser's phone rules against paymentapp/phones.py: the same
numbers accepted, the same network for each (`networkOf` and `network_of` agree on the
Communications Authority's table), and the dialog's gentle hint for Airtel and Telkom
prefixes, which never stops Pay."""

from __future__ import annotations

import pytest

from paymentapp.phones import NETWORK_RANGES, InvalidPhone, network_of, normalize_phone
from tests.browser_app import (
    PHONE,
    dialog,
    dialog_app,
    expect_view,
    new_context,
    new_phone,
    open_hosted,
    shot,
)
from tests.browser_app import buy as buy_order
from tests.phone_cases import NETWORK_TABLE

pytestmark = pytest.mark.browser

NB = "\u2011"  # the dialog's non-breaking hyphen in "M-Pesa"
EXTRA = ["0712a45678", "+2547123456789", "++254712345678", "(0733) 123-456", " 0770123456 "]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(tmp_path_factory.mktemp("instance")) as app:
        yield app


@pytest.fixture
def context(browser):
    context = new_context(browser, PHONE)
    yield context
    context.close()
    assert context.page_errors == [], f"JavaScript errors in the page: {context.page_errors}"


@pytest.fixture
def page(context):
    return context.new_page()


def in_browser(page, app, samples: list) -> list:
    page.goto(app.url + "/")
    return page.evaluate(
        """async (samples) => {
            const m = await import("/static/js/paymentapp-client.js");
            return {
                ranges: m.NETWORK_RANGES,
                rows: samples.map((s) => [m.normalizePhone(s), m.networkOf(s)]),
            };
        }""",
        samples,
    )


def test_network_of_and_network_of_in_the_browser_agree(app_server, page):
    samples = [typed for typed, _ in NETWORK_TABLE] + EXTRA
    got = in_browser(page, app_server, samples)
    assert [tuple(r) for r in got["ranges"]] == [tuple(r) for r in NETWORK_RANGES]
    for sample, (normalized, network) in zip(samples, got["rows"], strict=True):
        try:
            expected = normalize_phone(sample)
        except InvalidPhone:
            expected = None
        assert normalized == expected, sample
        assert network == network_of(sample), sample
    for typed, network in NETWORK_TABLE:  # and both follow the allocation table
        assert network_of(typed) == network, typed


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        (
            "0733 123 456",
            f"This looks like an Airtel number; the M{NB}Pesa prompt needs a Safaricom line.",
        ),
        (
            "0101 234 567",
            f"This looks like an Airtel number; the M{NB}Pesa prompt needs a Safaricom line.",
        ),
        (
            "0771 234 567",
            f"This looks like a Telkom number; the M{NB}Pesa prompt needs a Safaricom line.",
        ),
    ],
    ids=["airtel-07", "airtel-01", "telkom"],
)
def test_a_non_safaricom_prefix_gets_a_gentle_hint_and_pay_still_works(
    app_server, page, typed, hint
):
    from playwright.sync_api import expect

    order = buy_order(app_server, "tea")
    open_hosted(page, app_server, order)
    field = page.locator("#pa-phone")
    network = page.locator(".pa-network")
    field.fill(typed)
    expect(network).to_have_text(hint)
    expect(network).to_be_visible()
    expect(page.locator(".pa-hint")).to_be_hidden()  # the hint takes the formats' place
    expect(field).to_have_attribute("aria-invalid", "false")
    described = field.get_attribute("aria-describedby").split()
    assert "pa-phone-network" in described
    expect(page.locator(".pa-pay")).to_be_enabled()
    shot(page, f"phone-hint-{typed[:4]}")

    # A Safaricom number: no hint; back to the formats.
    field.fill(new_phone())
    expect(network).to_be_empty()
    expect(page.locator(".pa-hint")).to_be_visible()

    # The hint never blocks: the prompt goes out (the number may have been ported).
    field.fill(typed[:4] + new_phone()[4:])
    expect(network).to_have_text(hint)
    with page.expect_response("**/payments") as answered:
        page.locator(".pa-pay").click()
    assert answered.value.status == 202
    expect_view(page, "pending")
    expect(dialog(page)).to_have_attribute("data-view", "pending")
