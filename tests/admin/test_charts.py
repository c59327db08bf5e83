"""The dashboard's charts (`admin/charts.py`, `admin/chart_presenters.py`): payments seeded
at known times and outcomes give exactly those counts and sums, in buckets of the
dashboard's time zone (Africa/Nairobi, UTC+3, unless a test says otherwise), every bucket
present; money counts what the orders page's Paid counts; one query per chart. On SQLite,
and on PostgreSQL when TEST_DATABASE_URL is set. In Chromium:
`test_browser_charts.py`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event

from paymentapp.admin import chart_presenters, charts, queries
from paymentapp.models import Order

# Wednesday 2 December 2026, 14:30 in Nairobi: the hours run from Tuesday 15:00 to
# Wednesday 14:00, the days from Tuesday 3 November to Wednesday 2 December.
NOW = datetime(2026, 12, 2, 11, 30, tzinfo=UTC)


def at(text: str) -> datetime:
    """A UTC time: `at("2026-12-02 11:00:00")`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def table(chart) -> dict[str, dict[str, str]]:
    """The table under a chart, as the page shows it: row name → column → cell."""
    rows = {row.label: dict(zip(chart.columns, row.cells, strict=True)) for row in chart.rows}
    rows["All"] = dict(zip(chart.columns, chart.total, strict=True))
    return rows


def shown(app, now=NOW) -> dict[str, object]:
    """The four charts as the orders page would show them at `now`, by id."""
    glance = chart_presenters.glance(charts.read(now))
    return {chart.id: chart for chart in glance.charts} | {"median": glance.median}


def zeros(columns) -> dict[str, str]:
    return dict.fromkeys(columns, "0")


@pytest.fixture
def seed(make_order, add_payment, db):
    """`seed(created_at, status, **payment fields)`: one order made just before its payment."""

    def make(created: datetime, status: str = "completed", amount: int = 100, **fields):
        order = make_order(amount)
        stored = db.session.get(Order, order["id"])
        stored.created_at = created - timedelta(minutes=1)
        db.session.commit()
        return add_payment(order["id"], status, created_at=created, **fields)

    return make


def test_payments_per_hour_by_outcome_in_the_admin_time_zone(app, seed):
    seed(at("2026-12-02 11:25:00"))  # 14:25 in Nairobi: paid
    seed(at("2026-12-02 11:24:00"), "failed")
    seed(at("2026-12-02 11:29:00"), "pending")  # the prompt is still open: waiting
    seed(at("2026-12-02 11:00:00"), "timeout")  # 14:00:00 exactly: the 14:00 hour
    seed(at("2026-12-02 10:59:59"), "cancelled")  # 13:59:59: the 13:00 hour
    # paid 60 of 100: completed, flagged for review
    seed(at("2026-12-02 09:10:00"), paid_amount=60, needs_review=True)
    seed(at("2026-12-01 12:00:00"), "failed")  # Tuesday 15:00: the first hour shown
    seed(at("2026-12-01 11:59:59"), "cancelled")  # 25 hours ago: not in the last 24
    chart = shown(app)["chart-hourly"]

    rows = table(chart)
    assert chart.columns == (
        "Paid",
        "Needs review",
        "Failed",
        "Cancelled",
        "Timed out",
        "Waiting",
        "All",
    )
    assert len(chart.rows) == 24
    assert (chart.rows[0].label, chart.rows[-1].label) == ("Tue 15:00", "Wed 14:00")
    assert rows["Wed 14:00"] == zeros(chart.columns) | {
        "Paid": "1",
        "Failed": "1",
        "Timed out": "1",
        "Waiting": "1",
        "All": "4",
    }
    assert rows["Wed 13:00"] == zeros(chart.columns) | {"Cancelled": "1", "All": "1"}
    assert rows["Wed 12:00"] == zeros(chart.columns) | {"Needs review": "1", "All": "1"}
    assert rows["Tue 15:00"] == zeros(chart.columns) | {"Failed": "1", "All": "1"}
    seeded = {"Wed 14:00", "Wed 13:00", "Wed 12:00", "Tue 15:00", "All"}
    assert all(cells == zeros(chart.columns) for name, cells in rows.items() if name not in seeded)
    assert rows["All"] == {
        "Paid": "1",
        "Needs review": "1",
        "Failed": "2",
        "Cancelled": "1",
        "Timed out": "1",
        "Waiting": "1",
        "All": "7",
    }
    # the bars: 14:00 stacks paid, failed, timed out, waiting (bottom first); 4 is the top
    assert chart.rows[-1].values == (1, 0, 1, 0, 1, 1)
    assert chart.scale == 4 and [text for _, text in chart.ticks] == ["0", "1", "2", "3", "4"]
    assert "In all 7 payments: 1 paid, 1 needs review, 2 failed" in chart.description


def test_payments_per_day_end_at_midnight_in_the_admin_time_zone(app, seed):
    seed(at("2026-12-01 20:59:59"), "failed")  # Tuesday 23:59:59 in Nairobi
    seed(at("2026-12-01 21:00:00"))  # Wednesday 00:00:00
    seed(at("2026-11-02 21:00:00"), "timeout")  # Tuesday 3 November 00:00: the first day
    seed(at("2026-11-02 20:59:59"), "cancelled")  # Monday 2 November: 31 days back
    seed(at("2026-11-20 08:00:00"), paid_amount=150, needs_review=True)
    chart = shown(app)["chart-daily"]

    rows = table(chart)
    assert len(chart.rows) == 30
    assert (chart.rows[0].label, chart.rows[-1].label) == ("Tue 3 Nov", "Wed 2 Dec")
    assert rows["Wed 2 Dec"] == zeros(chart.columns) | {"Paid": "1", "All": "1"}
    assert rows["Tue 1 Dec"] == zeros(chart.columns) | {"Failed": "1", "All": "1"}
    assert rows["Tue 3 Nov"] == zeros(chart.columns) | {"Timed out": "1", "All": "1"}
    assert rows["Fri 20 Nov"] == zeros(chart.columns) | {"Needs review": "1", "All": "1"}
    assert rows["All"]["All"] == "4"
    assert rows["Sat 21 Nov"] == zeros(chart.columns)
    # the axis names every seventh day, counted back from today
    assert [row.axis for row in chart.rows if row.axis] == [
        "4 Nov",
        "11 Nov",
        "18 Nov",
        "25 Nov",
        "2 Dec",
    ]


def test_money_per_day_counts_what_the_paid_total_counts(app, seed):
    seed(at("2026-12-02 09:59:00"), amount=1500, paid_at=at("2026-12-02 10:00:00"))
    # 1,000 paid, 400 of it refunded: 600 kept
    seed(at("2026-12-02 07:00:00"), amount=1000, refunded_amount=400)
    # Tuesday 21:30 UTC is Wednesday 00:30 in Nairobi: a Wednesday payment
    seed(at("2026-12-01 21:29:00"), amount=800, method="paybill", phone="2547*****126")
    seed(at("2026-11-20 12:00:00"), amount=500, method="paybill", phone="2547*****126")
    # money that does not count: short (flagged), held (after a cancel), and not final
    seed(at("2026-12-02 08:00:00"), amount=300, paid_amount=200, needs_review=True)
    seed(at("2026-12-02 08:10:00"), amount=250, held=True, needs_review=True)
    seed(at("2026-12-02 08:20:00"), "pending", amount=999)
    # held money an admin accepted (the review resolved) counts
    seed(at("2026-11-30 08:00:00"), amount=70, held=True, reviewed_at=at("2026-11-30 09:00:00"))
    seed(at("2026-10-20 08:00:00"), amount=4000)  # more than 30 days back
    chart = shown(app)["chart-money"]

    rows = table(chart)
    assert chart.columns == ("STK (KES)", "Paybill (KES)", "All (KES)")
    assert [s.label for s in chart.series] == ["STK", "Paybill"]  # no QR: none recorded
    assert rows["Wed 2 Dec"] == {"STK (KES)": "2,100", "Paybill (KES)": "800", "All (KES)": "2,900"}
    assert rows["Mon 30 Nov"] == {"STK (KES)": "70", "Paybill (KES)": "0", "All (KES)": "70"}
    assert rows["Fri 20 Nov"] == {"STK (KES)": "0", "Paybill (KES)": "500", "All (KES)": "500"}
    assert rows["All"] == {"STK (KES)": "2,170", "Paybill (KES)": "1,300", "All (KES)": "3,470"}
    # the same money as the orders page's Paid, less what arrived before the 30 days
    breakdown = queries.paid_breakdown(queries.parse_filters({}))
    assert (breakdown["stk"] - 4000, breakdown["paybill"]) == (2170, 1300)
    assert chart.scale == 3000 and chart.ticks[-1] == (3000, "3k")


def test_a_method_of_its_own_gets_a_series_only_when_it_has_money(app):
    hours, days = charts.windows(NOW)
    today = days.buckets[-1]
    readings = charts.Readings(hours, days, {}, {}, {(today, "qr"): 450}, {}, None)
    chart = {c.id: c for c in chart_presenters.glance(readings).charts}["chart-money"]
    assert [s.label for s in chart.series] == ["STK", "Paybill", "QR"]
    assert table(chart)["Wed 2 Dec"] == {
        "STK (KES)": "0",
        "Paybill (KES)": "0",
        "QR (KES)": "450",
        "All (KES)": "450",
    }


def test_success_rate_per_day_and_the_median_time_to_pay(app, seed, make_order, add_payment, db):
    seed(at("2026-12-02 09:00:00"), seconds_to_pay=10)  # paid
    seed(at("2026-12-02 10:00:00"), "failed")
    untouched = db.session.get(Order, make_order(100)["id"])  # nobody tried to pay it
    untouched.created_at = at("2026-12-02 10:30:00")
    db.session.commit()
    # failed, then paid 30 s after its second prompt: one order, attempted and paid
    tried = seed(at("2026-11-25 08:00:00"), "failed")
    add_payment(
        tried.order_id, "completed", created_at=at("2026-11-25 08:05:00"), seconds_to_pay=30
    )
    # not STK: no prompt, so no time to pay
    seed(at("2026-12-02 07:00:00"), method="paybill", phone="2547*****126", seconds_to_pay=500)
    # paid long ago: outside the 30 days
    seed(at("2026-10-01 08:00:00"), seconds_to_pay=1000)
    found = shown(app)
    chart = found["chart-success"]

    rows = table(chart)
    assert chart.columns == ("Attempted", "Paid", "Success rate")
    assert rows["Wed 2 Dec"] == {"Attempted": "3", "Paid": "2", "Success rate": "66.7%"}
    assert rows["Wed 25 Nov"] == {"Attempted": "1", "Paid": "1", "Success rate": "100.0%"}
    assert rows["Thu 26 Nov"] == {"Attempted": "0", "Paid": "0", "Success rate": "—"}
    assert rows["All"] == {"Attempted": "4", "Paid": "3", "Success rate": "75.0%"}
    assert chart.rows[-1].values == pytest.approx((200 / 3,))
    assert chart.rows[-2].values == (None,)  # nobody tried: no bar
    # the median of the STK payments made in the 30 days: 10 s and 30 s
    assert found["median"] == "20 s"
    assert "Median time from prompt to paid over the 30 days: 20 s" in chart.note
    # the totals define the rate the same way (over every order, the old one included)
    totals = queries.order_totals(queries.parse_filters({}))
    assert (totals["attempted"], totals["paid"]) == (5, 4)


def test_days_follow_daylight_saving_in_the_admin_time_zone(app, seed):
    london = ZoneInfo("Europe/London")  # BST (UTC+1) until 25 October 2026 01:00 UTC
    seed(at("2026-10-20 23:30:00"))  # 00:30 on the 21st, summer time
    seed(at("2026-10-30 23:30:00"))  # 23:30 on the 30th, winter time
    seed(at("2026-10-25 00:30:00"))  # 01:30 BST, the hour before the clocks go back
    seed(at("2026-10-25 01:30:00"))  # 01:30 GMT, the hour after
    days = charts.Window(charts.DAY, 30, london, at("2026-11-10 12:00:00"))
    hours = charts.Window(charts.HOUR, 24 * 30, london, at("2026-11-10 12:00:00"))

    by_day = {days.wall(b).date(): n for (b, _), n in charts.outcome_counts(days).items()}
    assert by_day == {date(2026, 10, 21): 1, date(2026, 10, 30): 1, date(2026, 10, 25): 2}
    # 01:00-02:00 happened twice that night: both are the one local hour
    by_hour = {hours.wall(b): n for (b, _), n in charts.outcome_counts(hours).items()}
    assert by_hour[datetime(2026, 10, 25, 1)] == 2


def test_each_chart_is_one_query(app, seed, db):
    seed(at("2026-12-02 09:00:00"))
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    hours, days = charts.windows(NOW)
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        for read in (
            lambda: charts.outcome_counts(hours),
            lambda: charts.outcome_counts(days),
            lambda: charts.money_by_method(days),
            lambda: charts.success_by_bucket(days),
        ):
            statements.clear()
            assert read()
            assert len(statements) == 1, statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_the_orders_page_opens_on_the_charts_of_every_order(admin_client, seed, monkeypatch):
    seed(datetime.now(UTC) - timedelta(minutes=5))
    seed(datetime.now(UTC) - timedelta(minutes=6), "failed")
    page = admin_client.get("/admin/").get_data(as_text=True)
    live = page[page.index('<section id="live"') :]
    assert live.index('id="glance-title"') < live.index('class="totals"')
    for chart_id in ("chart-hourly", "chart-daily", "chart-money", "chart-success"):
        assert f'<figure class="chart" id="{chart_id}"' in page
        assert f'<details id="{chart_id}-numbers">' in page
    assert 'role="img" aria-labelledby="chart-hourly-svg-title chart-hourly-desc"' in page
    assert "In all 2 payments: 1 paid, 1 failed." in page
    assert "times are Africa/Nairobi" in page

    # the filters narrow the orders, never the charts
    filtered = admin_client.get("/admin/?status=cancelled").get_data(as_text=True)
    assert "In all 2 payments: 1 paid, 1 failed." in filtered

    # later pages have no charts
    monkeypatch.setattr(queries, "PAGE_SIZE", 1)
    assert 'id="glance-title"' not in admin_client.get("/admin/?page=2").get_data(as_text=True)
