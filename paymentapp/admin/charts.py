"""The dashboard at a glance (the top of the orders page's first page): payments per hour
over the last 24 hours and per day over 30 days by outcome, money received per day by
method, the success rate per day, and the median time from prompt to paid.

Each chart is ONE aggregate query: a time bucket in the dashboard's time zone
(ADMIN_TIMEZONE), grouped with the outcome or the method, over a range of an index on a
timestamp (`ix_payments_created_at_outcome`, `ix_payments_paid_at`,
`ix_orders_created_at_id`). They run on every render of that page, each live refresh
included, so this is hot SQL; it is timed on 1 M payments by `bench/charts.py`
(docs/performance.md). `chart_presenters.py` turns the rows into what the template draws:
every bucket present (zeros filled), the series, and the table of the same numbers.

Nothing here defines what counts: money is `Payment.counts` and `Payment.net_amount` (the
orders page's Paid), the success rate `queries.success_clauses` (its Success rate), the
median `queries.median_seconds_to_pay` (its Median prompt → paid)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Integer, case, cast, func, literal_column, select

from ..extensions import db
from ..models import Order, Payment, utcnow
from .queries import admin_tz, median_seconds_to_pay, success_clauses

HOUR, DAY = 3600, 86400
EPOCH = datetime(1970, 1, 1)

# A payment's outcome, in the order the bars stack (bottom first). Flagged for review
# wins over the status; a prompt still open is "waiting" (shown, so the bars add up to
# every payment made).
OUTCOMES = (
    ("paid", "Paid"),
    ("review", "Needs review"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
    ("timeout", "Timed out"),
    ("waiting", "Waiting"),
)
STATUS_OUTCOME = {"completed": "paid", "pending": "waiting"}


def outcome(status: str, flagged: bool) -> str:
    """The outcome a payment is counted under (a key of OUTCOMES)."""
    return "review" if flagged else STATUS_OUTCOME.get(status, status)


# -- time buckets ---------------------------------------------------------------------------


def local_seconds(moment: datetime, tz: ZoneInfo) -> int:
    """Whole seconds since 1970 on the wall clock of `tz` (what the buckets divide)."""
    return math.floor(moment.timestamp()) + int(moment.astimezone(tz).utcoffset().total_seconds())


@dataclass(frozen=True)
class Window:
    """`count` buckets of `size` seconds of local time, the last one holding `now`."""

    size: int
    count: int
    tz: ZoneInfo
    now: datetime

    @cached_property
    def last(self) -> int:
        return local_seconds(self.now, self.tz) // self.size

    @property
    def buckets(self) -> range:
        return range(self.last - self.count + 1, self.last + 1)

    def wall(self, bucket: int) -> datetime:
        """A bucket's start on the local wall clock (naive)."""
        return EPOCH + timedelta(seconds=bucket * self.size)

    @cached_property
    def since(self) -> datetime:
        """The first bucket's start, in UTC: the queries' lower bound."""
        return self.wall(self.buckets[0]).replace(tzinfo=self.tz).astimezone(UTC)

    @cached_property
    def offset_changes(self) -> tuple[tuple[int, int], ...]:
        """(UTC second, offset from then on) for each time the zone's offset changes
        inside the window (daylight saving; Africa/Nairobi has none): found hour by hour,
        then to the second."""
        changes = []
        start = math.floor(self.since.timestamp())
        end = math.floor(self.now.timestamp()) + HOUR
        for low in range(start, end, HOUR):
            high, before = low + HOUR, offset_at(low, self.tz)
            if offset_at(high, self.tz) == before:
                continue
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (
                    (middle, high) if offset_at(middle, self.tz) == before else (low, middle)
                )
            changes.append((high, offset_at(high, self.tz)))
        return tuple(changes)


def offset_at(second: int, tz: ZoneInfo) -> int:
    """The zone's UTC offset, in seconds, at a moment (seconds since 1970)."""
    return int(datetime.fromtimestamp(second, UTC).astimezone(tz).utcoffset().total_seconds())


def is_postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _number(value: int):
    """An integer written into the SQL itself (ours, never input): the bucket expression
    carries no parameters, so EXPLAIN shows it as it runs."""
    return literal_column(str(int(value)))


def bucket_of(column, window: Window):
    """The local bucket number of a UTC timestamp column, in SQL:
    floor((seconds since 1970 + the zone's UTC offset at that time) / size)."""
    if is_postgresql():  # date_part: double precision, far quicker per row than numeric
        seconds = func.floor(func.date_part("epoch", column))
    else:  # SQLite: strftime('%s') gives whole seconds, exactly
        seconds = cast(func.strftime("%s", column), Integer)
    offset = _number(offset_at(math.floor(window.since.timestamp()), window.tz))
    if changes := window.offset_changes:
        offset = case(
            *((seconds >= _number(at), _number(then)) for at, then in reversed(changes)),
            else_=offset,
        )
    local = seconds + offset
    if is_postgresql():
        return cast(func.floor(local / _number(window.size)), BigInteger)
    # SQLite: integer / integer truncates, which is floor for times after 1970
    return cast(local, Integer).op("/")(_number(window.size))


def windows(now: datetime | None = None) -> tuple[Window, Window]:
    """The last 24 hours (by the hour) and the last 30 days (by the day), ending now."""
    now, tz = now or utcnow(), admin_tz()
    return Window(HOUR, 24, tz, now), Window(DAY, 30, tz, now)


# -- the queries: one per chart -------------------------------------------------------------


def outcome_statement(window: Window):
    """Payments made in the window (when the prompt was sent, or the Paybill payment
    recorded), counted by bucket, status and flag: `ix_payments_created_at_outcome`
    holds all three, so PostgreSQL counts them from the index alone."""
    rows = select(
        bucket_of(Payment.created_at, window).label("bucket"),
        Payment.status.label("status"),
        Payment.needs_review.label("flagged"),
    ).where(Payment.created_at >= window.since)
    rows = rows.subquery()
    return select(rows.c.bucket, rows.c.status, rows.c.flagged, func.count()).group_by(
        rows.c.bucket, rows.c.status, rows.c.flagged
    )


def outcome_counts(window: Window) -> dict[tuple[int, str], int]:
    """{(bucket, outcome): payments} for the window (`outcome_statement`)."""
    counts: dict[tuple[int, str], int] = {}
    for bucket, status, flagged, count in db.session.execute(outcome_statement(window)):
        key = (int(bucket), outcome(status, bool(flagged)))
        counts[key] = counts.get(key, 0) + count
    return counts


def money_statement(window: Window):
    """The money that counts (`Payment.counts`, net of refunds: the orders page's Paid),
    summed by the bucket it arrived in (`paid_at`, M-Pesa's time) and method."""
    rows = select(
        bucket_of(Payment.paid_at, window).label("bucket"),
        Payment.method.label("method"),
        Payment.net_amount.label("amount"),
    ).where(Payment.paid_at >= window.since, Payment.counts)
    rows = rows.subquery()
    return select(rows.c.bucket, rows.c.method, func.sum(rows.c.amount)).group_by(
        rows.c.bucket, rows.c.method
    )


def money_by_method(window: Window) -> dict[tuple[int, str], int]:
    """{(bucket, method): shillings} for the window (`money_statement`)."""
    rows = db.session.execute(money_statement(window))
    return {(int(bucket), str(method)): int(amount) for bucket, method, amount in rows}


def success_statement(window: Window):
    """Orders created in each bucket: how many were attempted, and how many of those are
    paid, as the totals count them (`queries.success_clauses`). Only attempted orders are
    read (the test in WHERE: a semi-join, not a lookup per order), among the payments made
    since a day before the window (hosts' clocks may differ a little; never a day)."""
    attempted, paid = success_clauses(payments_since=window.since - timedelta(days=1))
    rows = select(
        bucket_of(Order.created_at, window).label("bucket"),
        paid.label("paid"),
    ).where(Order.created_at >= window.since, attempted)
    rows = rows.subquery()
    return select(rows.c.bucket, func.count(), func.count().filter(rows.c.paid)).group_by(
        rows.c.bucket
    )


def success_by_bucket(window: Window) -> dict[int, tuple[int, int]]:
    """{bucket: (attempted, paid)} for the window (`success_statement`)."""
    rows = db.session.execute(success_statement(window))
    return {int(bucket): (tried, paid) for bucket, tried, paid in rows}


@dataclass(frozen=True)
class Readings:
    """What the charts show, as read: the two windows and each query's rows."""

    hours: Window
    days: Window
    hourly: dict[tuple[int, str], int]
    daily: dict[tuple[int, str], int]
    money: dict[tuple[int, str], int]
    success: dict[int, tuple[int, int]]
    median_s: float | None


def read(now: datetime | None = None) -> Readings:
    """Every chart's query, once, for the windows ending `now`."""
    hours, days = windows(now)
    return Readings(
        hours=hours,
        days=days,
        hourly=outcome_counts(hours),
        daily=outcome_counts(days),
        money=money_by_method(days),
        success=success_by_bucket(days),
        median_s=median_seconds_to_pay([], made_since=days.since),
    )
