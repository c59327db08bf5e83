"""The dashboard's charts in real Chromium against real gunicorn, PostgreSQL and Redis, at
1280 and 375 px: payments seeded at known times and outcomes (two hours ago and three
days ago, written into the database as the money path leaves them: the API cannot make a
payment in the past) show as exactly those counts and sums in the table under each chart;
a payment made on the simulated phone while the page is open updates the tables without
a reload; every chart fits the screen, nothing scrolls sideways, and axe finds nothing in
the charts at any impact (nor anything serious on the page).
Screenshots: `test-artifacts/admin-{1280,375}-charts*.png`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import make_url

from tests.a11y import axe_violations, describe, on_screen, page_is_sound
from tests.admin.stack import (
    WAIT_MS,
    create_order,
    dashboard_stack,
    sign_in,
    start_payment,
    wait_payment,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

NAIROBI = ZoneInfo("Africa/Nairobi")  # the stack's ADMIN_TIMEZONE (the default)
CHARTS = ("chart-hourly", "chart-daily", "chart-money", "chart-success")

# (how long ago, outcome, method, amount): 5 payments two hours ago, 4 three days ago
HISTORY = [
    (timedelta(hours=2), "paid", "stk", 1000),
    (timedelta(hours=2), "paid", "stk", 1500),
    (timedelta(hours=2), "paid", "stk", 2000),
    (timedelta(hours=2), "failed", "stk", 700),
    (timedelta(hours=2), "review", "stk", 900),  # paid 850 of 900: flagged
    (timedelta(days=3), "paid", "paybill", 500),
    (timedelta(days=3), "paid", "paybill", 500),
    (timedelta(days=3), "cancelled", "stk", 300),
    (timedelta(days=3), "timeout", "stk", 400),
]


def write_history(stack) -> datetime:
    """Each HISTORY payment on an order of its own made through the API, moved back in
    time; returns when the two-hours-ago payments were made."""
    import psycopg

    now = datetime.now(UTC)
    url = make_url(stack.env["DATABASE_URL"]).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as conn:
        for number, (ago, outcome, method, amount) in enumerate(HISTORY):
            order = create_order(stack, amount, f"history {number}")
            made = now - ago
            done = outcome in ("paid", "review")
            paid = amount - 50 if outcome == "review" else amount
            conn.execute(
                "UPDATE orders SET created_at = %s, updated_at = %s, status = %s, paid_at = %s"
                " WHERE id = %s",
                (
                    made - timedelta(minutes=1),
                    made,
                    "paid" if outcome == "paid" else "pending",
                    made + timedelta(seconds=20) if outcome == "paid" else None,
                    order["id"],
                ),
            )
            conn.execute(
                "INSERT INTO payments (id, order_id, method, phone, amount, status, receipt,"
                " paid_amount, amount_source, paid_at, needs_review, review_reason,"
                " refunded_amount, refunding_amount, held, query_count, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, false, 0, %s, %s)",
                (
                    f"pay_history{number}",
                    order["id"],
                    method,
                    "254700000000" if method == "stk" else "2547*****126",
                    amount,
                    "completed" if done else outcome,
                    f"HIST{number:06d}" if done else None,
                    paid if done else None,
                    "callback" if done else None,
                    made + timedelta(seconds=20) if done else None,
                    outcome == "review",
                    "amount mismatch" if outcome == "review" else None,
                    made,
                    made,
                ),
            )
    return now - timedelta(hours=2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with dashboard_stack(tmp_path_factory.mktemp("charts")) as stack:
        stack.two_hours_ago = write_history(stack)
        yield stack


def numbers(page, chart_id: str) -> dict[str, dict[str, str]]:
    """The table under a chart as the page shows it: row name → column → cell (opens
    "The numbers" first, as a person would)."""
    figure = page.locator(f"#{chart_id}")
    details = figure.locator("details")
    if details.get_attribute("open") is None:
        figure.get_by_text("The numbers").click()
    table = figure.locator("table")
    columns = [c.strip() for c in table.locator("thead th").all_text_contents()]
    rows = {}
    for row in table.locator("tbody tr, tfoot tr").all():
        cells = [c.strip() for c in row.locator("th, td").all_text_contents()]
        rows[cells[0]] = dict(zip(columns[1:], cells[1:], strict=True))
    return rows


def total(page, chart_id: str, column: str):
    """The locator of one cell of a chart table's "All" row."""
    table = page.locator(f"#{chart_id} table")
    columns = [c.strip() for c in table.locator("thead th").all_text_contents()]
    return table.locator("tfoot tr td").nth(columns.index(column) - 1)


def test_the_tables_under_the_charts_show_the_seeded_payments(stack, sized_page):
    page = sized_page
    sign_in(page, stack.url)
    for chart_id in CHARTS:
        on_screen(page, page.locator(f"#{chart_id} svg"), f"the {chart_id} chart")

    hourly = numbers(page, "chart-hourly")
    local = stack.two_hours_ago.astimezone(NAIROBI)
    assert hourly[f"{local:%a %H}:00"] == {
        "Paid": "3",
        "Needs review": "1",
        "Failed": "1",
        "Cancelled": "0",
        "Timed out": "0",
        "Waiting": "0",
        "All": "5",
    }
    assert len(hourly) == 25  # 24 hours and the total
    daily = numbers(page, "chart-daily")
    assert daily["All"] == {
        "Paid": "5",
        "Needs review": "1",
        "Failed": "1",
        "Cancelled": "1",
        "Timed out": "1",
        "Waiting": "0",
        "All": "9",
    }
    assert daily[f"{local:%a} {local.day} {local:%b}"]["All"] == "5"
    money = numbers(page, "chart-money")
    assert money["All"] == {"STK (KES)": "4,500", "Paybill (KES)": "1,000", "All (KES)": "5,500"}
    success = numbers(page, "chart-success")
    assert success["All"] == {"Attempted": "9", "Paid": "5", "Success rate": "55.6%"}

    # the pictures say it in words too
    svg = page.locator("#chart-daily svg")
    assert (
        "In all 9 payments: 5 paid, 1 needs review, 1 failed" in svg.locator("desc").text_content()
    )
    glance = axe_violations(page, impact=None, context="section.glance")
    assert glance == [], describe(glance)
    page_is_sound(page, "charts", f"admin-{page.width}-charts")


def test_a_payment_made_now_updates_the_tables_without_a_reload(stack, sized_page):
    from playwright.sync_api import expect

    page = sized_page
    sign_in(page, stack.url)
    paid_before = int(numbers(page, "chart-hourly")["All"]["Paid"])
    stk_before = int(numbers(page, "chart-money")["All"]["STK (KES)"].replace(",", ""))
    page.evaluate("() => { window.notReloaded = true; }")

    order = create_order(stack, 1250, f"paid live at {page.width} px")
    start_payment(stack, order)
    stack.simulator.answer(order["number"], "accept")
    wait_payment(stack, order, "completed")

    expect(total(page, "chart-hourly", "Paid")).to_have_text(str(paid_before + 1), timeout=WAIT_MS)
    expect(total(page, "chart-money", "STK (KES)")).to_have_text(f"{stk_before + 1250:,}")
    # the tables stayed open through the swap, and the page was never reloaded
    expect(page.locator("#chart-hourly-numbers")).to_have_attribute("open", "")
    assert page.evaluate("() => window.notReloaded === true")
    page_is_sound(page, "charts after a live payment", f"admin-{page.width}-charts-live")
