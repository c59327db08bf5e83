"""The simulated phone's Pay Bill screen in real Chromium: a customer pays an
order by hand with its number typed loosely, and the open payment dialog flips to paid
without a reload; a rejection shows Daraja's code; the screen passes axe (WCAG 2.1 AA,
no serious or critical violation). Validation is on here, so both of the simulator's
messages (validation, then confirmation) reach the app."""

from __future__ import annotations

import pytest

from tests.a11y import axe_violations, describe
from tests.browser_app import (
    PHONE,
    buy,
    dialog_app,
    expect_view,
    new_context,
    open_hosted,
    shot,
    status,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with dialog_app(tmp_path_factory.mktemp("instance"), MPESA_C2B_VALIDATION="1") as app:
        yield app


@pytest.fixture
def context(browser):
    context = new_context(browser, PHONE)
    yield context
    context.close()
    assert context.page_errors == [], f"JavaScript errors in the page: {context.page_errors}"


def open_pay_bill(page, app_server) -> None:
    from playwright.sync_api import expect

    page.goto(app_server.url + "/_simulator/phone")
    page.get_by_role("button", name="Pay Bill").click()
    expect(page.get_by_role("button", name="Pay Bill")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#screen-paybill")).to_be_visible()
    expect(page.locator("#screen-prompts")).to_be_hidden()


def fill(page, account: str, amount: str, pin: str = "1234") -> None:
    page.get_by_label("Account no.").fill(account)
    page.get_by_label("Amount (KES)").fill(amount)
    page.get_by_label("M-PESA PIN").fill(pin)


def test_pay_bill_pays_the_order_and_the_open_dialog_flips_to_paid(app_server, context):
    """Runs first in this module: no C2B URLs are registered yet."""
    from playwright.sync_api import expect

    order = buy(app_server, "coffee")  # KES 1,450
    dialog_page = context.new_page()
    open_hosted(dialog_page, app_server, order)

    phone = context.new_page()
    open_pay_bill(phone, app_server)
    expect(phone.locator("#c2b-registration")).to_contain_text(
        "No URLs are registered for 174379 yet"
    )
    expect(phone.get_by_label("Business no.")).to_have_value("174379")
    typed = "ord " + order["order_number"][4:]
    fill(phone, typed, "1450")
    phone.get_by_role("button", name="Pay", exact=True).click()

    outcome = phone.locator("#paybill-outcome")
    expect(outcome).to_contain_text("Accepted: ResultCode 0")
    expect(outcome).to_contain_text(f"sent to 174379 for account {typed}")
    expect(outcome).to_contain_text("Validation: accepted (ResultCode 0)")
    expect(outcome).to_contain_text("Confirmation sent: HTTP 200")
    expect(outcome).to_contain_text("registered automatically from its config")
    expect(phone.locator("#c2b-registration")).to_contain_text(
        "registered automatically from the app's config"
    )
    expect(phone.locator("#c2b-recent li").first).to_contain_text("Confirmed. KES 1,450")
    expect(phone.get_by_label("M-PESA PIN")).to_have_value("")

    expect_view(dialog_page, "success")  # live, without a reload
    assert status(app_server, order)["order_status"] == "paid"
    shot(phone, "simulator-paybill-accepted")
    problems = axe_violations(phone)
    assert problems == [], describe(problems)


def test_a_rejected_payment_shows_darajas_code(app_server, context):
    from playwright.sync_api import expect

    order = buy(app_server, "tea")
    phone = context.new_page()
    open_pay_bill(phone, app_server)
    digits = order["order_number"][4:]
    typo = digits[:-1] + str((int(digits[-1]) + 1) % 10)  # the check digit catches it
    fill(phone, "ORD-" + typo, "250")
    phone.get_by_role("button", name="Pay", exact=True).click()
    outcome = phone.locator("#paybill-outcome")
    expect(outcome).to_contain_text("Rejected: C2B00012")
    expect(outcome).to_contain_text("invalid account number")
    expect(outcome).to_contain_text("no money moved")
    assert status(app_server, order)["order_status"] == "pending"
    shot(phone, "simulator-paybill-rejected")
    problems = axe_violations(phone)
    assert problems == [], describe(problems)


def test_the_form_says_what_is_missing_before_sending(app_server, context):
    from playwright.sync_api import expect

    phone = context.new_page()
    requests_sent: list[str] = []
    phone.on("request", lambda r: requests_sent.append(r.url) if "/c2b/pay" in r.url else None)
    open_pay_bill(phone, app_server)
    fill(phone, "", "12.50", "12")
    phone.get_by_role("button", name="Pay", exact=True).click()
    account = phone.get_by_label("Account no.")
    expect(account).to_be_focused()
    expect(account).to_have_attribute("aria-invalid", "true")
    expect(phone.locator("#pb-account-error")).to_have_text("Enter the account number.")
    expect(phone.locator("#pb-amount-error")).to_contain_text("whole amount")
    expect(phone.locator("#pb-pin-error")).to_have_text("Enter your 4-digit M-PESA PIN.")
    shot(phone, "simulator-paybill-form-errors")
    problems = axe_violations(phone)
    assert problems == [], describe(problems)
    assert requests_sent == []

    # a business number the simulator does not know: M-Pesa would refuse it
    phone.get_by_label("Business no.").fill("999999")
    fill(phone, "ORD-1", "10")
    phone.get_by_role("button", name="Pay", exact=True).click()
    expect(phone.locator("#pb-business-error")).to_have_text("Unknown business number.")
    expect(phone.locator("#paybill-outcome")).to_contain_text("No business with number 999999")
    expect(phone.locator("#c2b-registration")).to_contain_text("No URLs are registered for 999999")
