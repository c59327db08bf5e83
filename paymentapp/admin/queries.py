"""What the orders pages read: the list's filters, search, totals, paid breakdown, pages
and CSV rows, and one order's history (status changes and callbacks). Nothing here
writes; `presenters.py` turns what these return into what people see."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import (
    CallbackRecord,
    Order,
    OrderEvent,
    OrderStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
)
from ..mpesa.formats import normalise_account, parse_receipt
from ..phones import InvalidPhone, normalize_phone

PAGE_SIZE = 50


def admin_tz() -> ZoneInfo:
    """The dashboard's time zone: times are shown in it and a filter's day is a day in it."""
    return ZoneInfo(current_app.config["ADMIN_TIMEZONE"])


@dataclass(frozen=True)
class OrderFilters:
    """The orders page's query string, checked. `errors` explains what was ignored."""

    status: str = ""
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    page: int = 1
    errors: dict = field(default_factory=dict)

    def query_args(self, **override) -> dict:
        """The filters as URL parameters (for links, pagination and the CSV export)."""
        args = {
            "status": self.status,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "q": self.q,
            "page": self.page if self.page > 1 else "",
        }
        args.update(override)
        return {key: value for key, value in args.items() if value not in ("", None)}


def _parse_date(raw: str | None, name: str, errors: dict) -> date | None:
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or not 2000 <= value.year <= 2999:
        errors[name] = "Use a date like 2026-01-31."
        return None
    return value


def parse_filters(args) -> OrderFilters:
    """Read filters from request args; bad values are dropped and reported, never a 500."""
    errors: dict[str, str] = {}
    status = args.get("status", "")
    if status and status not in OrderStatus.ALL:
        errors["status"] = "Unknown status."
        status = ""
    date_from = _parse_date(args.get("from"), "from", errors)
    date_to = _parse_date(args.get("to"), "to", errors)
    if date_from and date_to and date_from > date_to:
        errors["to"] = "The end date is before the start date."
        date_to = None
    # PostgreSQL refuses NUL in text parameters; nobody searches for one on purpose.
    q = (args.get("q") or "").replace("\x00", "").strip()[:100]
    try:
        page = max(1, min(int(args.get("page") or 1), 100_000))
    except ValueError:
        page = 1
    return OrderFilters(status, date_from, date_to, q, page, errors)


def _start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=admin_tz())


def search_clause(q: str):
    """Orders matching an ORD-number (prefix), phone, receipt, id, reference or description."""
    payment = aliased(Payment)
    clauses = [
        Order.id == q,
        Order.reference == q,
        Order.description.icontains(q, autoescape=True),
    ]
    if number := normalise_account(q):
        clauses.append(Order.number.startswith(number, autoescape=True))
    try:
        phone = normalize_phone(q)
    except InvalidPhone:
        phone = None
    if phone:
        clauses.append(Order.customer_phone == phone)
        clauses.append(
            exists().where(
                payment.order_id == Order.id,
                or_(payment.phone == phone, payment.paid_phone == phone),
            )
        )
    if receipt := parse_receipt(q):
        clauses.append(exists().where(payment.order_id == Order.id, payment.receipt == receipt))
    return or_(*clauses)


def filter_clauses(filters: OrderFilters) -> list:
    """WHERE clauses on `Order` for the filters (shared by page, totals and CSV)."""
    clauses = []
    if filters.status:
        clauses.append(Order.status == filters.status)
    if filters.date_from:
        clauses.append(Order.created_at >= _start_of_day(filters.date_from))
    if filters.date_to:
        clauses.append(Order.created_at < _start_of_day(filters.date_to + timedelta(days=1)))
    if filters.q:
        clauses.append(search_clause(filters.q))
    return clauses


def ordered(stmt):
    """Newest first, with the id breaking ties so pages never overlap."""
    return stmt.order_by(Order.created_at.desc(), Order.id.desc())


def orders_page(filters: OrderFilters, total: int) -> tuple[list[Order], int, int]:
    """One page of matching orders, newest first: `(orders, page, page_count)`."""
    page_count = max(1, -(-total // PAGE_SIZE))
    page = min(filters.page, page_count)
    stmt = ordered(select(Order).where(*filter_clauses(filters)))
    orders = list(db.session.scalars(stmt.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)))
    return orders, page, page_count


def iter_orders(filters: OrderFilters):
    """Every matching order, newest first, fetched in batches (CSV export)."""
    stmt = ordered(select(Order).where(*filter_clauses(filters)))
    yield from db.session.scalars(stmt.execution_options(yield_per=500))


def _seconds_between(later, earlier):
    """Seconds from `earlier` to `later` in SQL, for the database in use."""
    if db.session.get_bind().dialect.name == "postgresql":
        # date_part is double precision: sorting the durations as numeric (extract) took
        # two to three times as long on 1 M payments (bench/charts.py)
        return func.date_part("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def of_orders(column, clauses: list) -> list:
    """WHERE clauses for rows whose order (`column`, an order id) matches `clauses`: none
    when nothing is filtered (every payment and refund has its order), so the unfiltered
    orders page reads payments alone instead of joining them to every order."""
    return [column.in_(select(Order.id).where(*clauses))] if clauses else []


def median_seconds_to_pay(clauses: list, made_since: datetime | None = None) -> float | None:
    """Median time from the STK prompt (payment created) to payment (paid_at), over the
    payments of the orders matching `clauses` (every order when empty) made since
    `made_since` (the dashboard's charts: the last 30 days).

    Only STK Push payments: a Paybill payment has no prompt (it is created when its
    confirmation arrives, or when an admin enters it), so its "time to pay" means nothing.
    Computed in the database (ORDER BY + OFFSET) so it works on SQLite and PostgreSQL
    without pulling every duration into Python.
    """
    conditions = [
        Payment.method == PaymentMethod.STK,
        Payment.status == PaymentStatus.COMPLETED,
        Payment.paid_at.is_not(None),
        *of_orders(Payment.order_id, clauses),
    ]
    if made_since is not None:
        conditions.append(Payment.created_at >= made_since)
    count = db.session.scalar(select(func.count()).select_from(Payment).where(*conditions))
    if not count:
        return None
    duration = _seconds_between(Payment.paid_at, Payment.created_at)
    middle = list(
        db.session.scalars(
            select(duration)
            .where(*conditions)
            .order_by(duration)
            .offset((count - 1) // 2)
            .limit(1 if count % 2 else 2)
        )
    )
    # paid_at is M-Pesa's TransactionDate, in whole seconds: a payment made within a second
    # of the prompt can look negative. Clamping the median is the same as clamping each value.
    return max(0.0, sum(float(value) for value in middle) / len(middle))


def success_clauses(payments_since: datetime | None = None) -> tuple:
    """The success rate's two questions about an order, in SQL (the totals and the
    dashboard's chart share them): was it attempted (at least one payment), and is it paid
    (by any method)? Orders nobody tried to pay say nothing about whether paying works.

    `payments_since` (for orders made since a moment, give a moment before it) only says
    where to look: a payment is made after its order, so the database reads that range of
    payments rather than probing the payments of each order."""
    made = [Payment.created_at >= payments_since] if payments_since else []
    attempted = exists().where(Payment.order_id == Order.id, *made)
    return attempted, Order.status == OrderStatus.PAID


def order_totals(filters: OrderFilters) -> dict:
    """Count, paid amount, success rate and median time-to-pay of the filtered orders.

    Paid amount = what the payments that count (`Payment.counts`) brought and kept, net of
    refunds (`Payment.net_amount`), by any method: a partial Paybill payment on a pending
    order is money received too. Success rate =
    paid orders (by any method) / orders with at least one payment attempt: orders
    nobody tried to pay say nothing about whether paying works.
    """
    clauses = filter_clauses(filters)
    attempted, paid = success_clauses()
    count = db.session.scalar(select(func.count()).select_from(Order).where(*clauses))
    # the test in WHERE: one semi-join, not a lookup per order for each count
    attempted_count, paid_attempted = db.session.execute(
        select(func.count(), func.count().filter(paid))
        .select_from(Order)
        .where(*clauses, attempted)
    ).one()
    paid_amount = db.session.scalar(
        select(func.coalesce(func.sum(Payment.net_amount), 0)).where(
            *of_orders(Payment.order_id, clauses), Payment.counts
        )
    )
    return {
        "count": count,
        "paid_amount": int(paid_amount),
        "attempted": attempted_count,
        "paid": paid_attempted,
        "success_rate": paid_attempted / attempted_count if attempted_count else None,
        "median_s": median_seconds_to_pay(clauses),
    }


def paid_breakdown(filters: OrderFilters) -> dict:
    """The paid amount (net of refunds, as in `order_totals`) split by method (`stk`,
    `paybill`), how much of it was entered by hand, and what was refunded on the filtered
    orders (`refunds`: the sum of the amounts, and how many payments had one), whether or
    not the payment counted (money held on an expired order may go back unaccepted)."""
    clauses = filter_clauses(filters)
    rows = db.session.execute(
        select(
            Payment.method,
            func.coalesce(func.sum(Payment.net_amount), 0),
            func.coalesce(func.sum(Payment.net_amount).filter(Payment.entered_by.is_not(None)), 0),
        )
        .where(*of_orders(Payment.order_id, clauses), Payment.counts)
        .group_by(Payment.method)
    ).all()
    breakdown = {"stk": 0, "paybill": 0, "by_hand": 0}
    for method, amount, by_hand in rows:
        breakdown[str(method)] = breakdown.get(str(method), 0) + int(amount)
        breakdown["by_hand"] += int(by_hand)
    refunded, refunded_count = db.session.execute(
        select(
            func.coalesce(func.sum(Refund.amount), 0), func.count(func.distinct(Refund.payment_id))
        ).where(*of_orders(Refund.order_id, clauses))
    ).one()
    breakdown.update(refunded=int(refunded), refunded_count=refunded_count)
    return breakdown


def order_history(order: Order) -> tuple[list[OrderEvent], list[CallbackRecord]]:
    """The order's status changes and the callbacks for its payments, each oldest first."""
    events = list(
        db.session.scalars(
            select(OrderEvent)
            .where(OrderEvent.order_id == order.id)
            .order_by(OrderEvent.created_at, OrderEvent.id)
        )
    )
    payment_ids = [p.id for p in order.payments]
    if not payment_ids:
        return events, []
    # An STK callback is matched by its checkout id; a Paybill confirmation by its TransID
    # (its receipt), which also finds one an admin assigned to this order.
    keys = [p.checkout_request_id for p in order.payments if p.checkout_request_id]
    keys += [p.receipt for p in order.payments if p.receipt]
    callbacks = db.session.scalars(
        select(CallbackRecord)
        .where(
            or_(
                CallbackRecord.payment_id.in_(payment_ids),
                CallbackRecord.checkout_request_id.in_(keys),
            )
        )
        .order_by(CallbackRecord.received_at, CallbackRecord.id)
    )
    return events, list(callbacks)
