"""How the dashboard's charts are shown (`templates/admin/_charts.html` draws them as SVG):
from what `charts.read` found, each chart's series with every bucket present (zeros
filled), its y axis, the words a screen reader hears, and the table of the same numbers.
Plain functions; nothing here touches the database."""

from __future__ import annotations

from dataclasses import dataclass

from .charts import OUTCOMES, Readings, Window
from .presenters import METHOD_LABELS, duration_text

# Money by method, in this order; STK and Paybill always, another method (a `qr` one,
# should payments ever record it) only when it has money in the window. Today a payment
# by QR reaches us as a Paybill (C2B) confirmation and is counted as Paybill.
METHODS = ("stk", "paybill")
CHART_METHOD_LABELS = {**METHOD_LABELS, "stk": "STK", "qr": "QR"}


@dataclass(frozen=True)
class Series:
    """One stacked part of the bars: its key (the CSS class `series-<key>`) and name."""

    key: str
    label: str


@dataclass(frozen=True)
class Row:
    """One bucket: its names (the table's, and the axis's short one or ""), the bars'
    values by series (None: no bar) and the table's cells."""

    label: str
    axis: str
    values: tuple
    cells: tuple[str, ...]
    title: str  # the bar's tooltip


@dataclass(frozen=True)
class Chart:
    """What the template draws for one chart, and the table under it."""

    id: str
    title: str
    description: str
    series: tuple[Series, ...]
    rows: tuple[Row, ...]
    first_column: str
    columns: tuple[str, ...]
    total: tuple[str, ...]
    scale: float
    ticks: tuple[tuple[float, str], ...]
    note: str = ""


@dataclass(frozen=True)
class Glance:
    """The four charts and the median time from prompt to paid (last 30 days)."""

    charts: tuple[Chart, ...]
    median: str
    timezone: str


def compact(value: float) -> str:
    """An axis label: 950, 1.5k, 2M."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:g}"


def axis(largest: float) -> tuple[float, tuple[tuple[float, str], ...]]:
    """The y axis for bars up to `largest`: a round top and 2 to 5 ticks (whole steps)."""
    step = 1
    while largest > 4 * step:
        for factor in (2, 2.5, 2):  # 1, 2, 5, 10, 20, 50, …
            step *= factor
            if largest <= 4 * step:
                break
    step = int(step)
    top = max(step, -(-int(largest) // step) * step)
    return float(top), tuple((tick, compact(tick)) for tick in range(0, top + 1, step))


def _labels(window: Window, bucket: int) -> tuple[str, str]:
    """A bucket's name in the table and, on every sixth hour or seventh day counted back
    from now, on the axis."""
    start = window.wall(bucket)
    back = window.buckets[-1] - bucket
    if window.size == 3600:
        label = start.strftime("%H:00")
        return f"{start:%a} {label}", label if back % 6 == 0 else ""
    label = f"{start.day} {start:%b}"
    return f"{start:%a} {label}", label if back % 7 == 0 else ""


def _said(values: dict[str, int], series: tuple[Series, ...], unit: str = "") -> str:
    parts = [f"{values[s.key]:,}{unit} {s.label.lower()}" for s in series if values[s.key]]
    return ", ".join(parts) or "none"


def stacked(
    chart_id: str,
    title: str,
    window: Window,
    counts: dict[tuple[int, str], int],
    series: tuple[Series, ...],
    *,
    note: str,
    money: bool = False,
) -> Chart:
    """A stacked bar chart of counts (or shillings) by bucket and series, zeros filled."""
    unit = " KES" if money else ""
    rows, sums = [], {s.key: 0 for s in series}
    for bucket in window.buckets:
        values = {s.key: counts.get((bucket, s.key), 0) for s in series}
        for key, value in values.items():
            sums[key] += value
        label, short = _labels(window, bucket)
        rows.append(
            Row(
                label=label,
                axis=short,
                values=tuple(values[s.key] for s in series),
                cells=tuple(f"{values[s.key]:,}" for s in series) + (f"{sum(values.values()):,}",),
                title=f"{label}: {_said(values, series, unit)}",
            )
        )
    largest = max((sum(row.values) for row in rows), default=0)
    scale, ticks = axis(largest)
    whole = sum(sums.values())
    span = "hour" if window.size == 3600 else "day"
    in_all = f"KES {whole:,}" if money else f"{whole:,} payments"
    description = (
        f"{title}. In all {in_all}: {_said(sums, series, unit)}. "
        f"The table below gives every {span}."
    )
    return Chart(
        id=chart_id,
        title=title,
        description=description,
        series=series,
        rows=tuple(rows),
        first_column=span.capitalize(),
        columns=tuple(s.label + (" (KES)" if money else "") for s in series)
        + ("All (KES)" if money else "All",),
        total=tuple(f"{sums[s.key]:,}" for s in series) + (f"{whole:,}",),
        scale=scale,
        ticks=ticks,
        note=note,
    )


def percent(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f}%" if whole else "—"


def success_chart(window: Window, success: dict[int, tuple[int, int]], median: str) -> Chart:
    """The success rate per day (paid ÷ attempted, of the orders created that day); a day
    nobody tried to pay has no bar."""
    rows, tried_all, paid_all = [], 0, 0
    for bucket in window.buckets:
        tried, paid = success.get(bucket, (0, 0))
        tried_all, paid_all = tried_all + tried, paid_all + paid
        label, short = _labels(window, bucket)
        rate = percent(paid, tried)
        rows.append(
            Row(
                label=label,
                axis=short,
                values=(paid / tried * 100 if tried else None,),
                cells=(f"{tried:,}", f"{paid:,}", rate),
                title=f"{label}: {rate} ({paid:,} paid of {tried:,} attempted)",
            )
        )
    title = "Success rate per day, last 30 days"
    return Chart(
        id="chart-success",
        title=title,
        description=(
            f"{title}: orders paid (by any method) of the orders with at least one payment "
            f"attempt, by the day the order was made. Over the 30 days "
            f"{percent(paid_all, tried_all)}: {paid_all:,} paid of {tried_all:,} attempted. "
            "A day nobody tried to pay has no bar. The table below gives every day."
        ),
        series=(Series("rate", "Success rate"),),
        rows=tuple(rows),
        first_column="Day",
        columns=("Attempted", "Paid", "Success rate"),
        total=(f"{tried_all:,}", f"{paid_all:,}", percent(paid_all, tried_all)),
        scale=100.0,
        ticks=((0, "0%"), (50, "50%"), (100, "100%")),
        note=(
            f"Median time from prompt to paid over the 30 days: {median} (STK Push payments "
            "only: a Paybill payment has no prompt)."
        ),
    )


MADE = "By when each payment was made: the prompt sent, or the Paybill payment recorded."
MONEY = (
    "What the payments that count brought and kept, net of refunds (as the Paid total "
    "counts it), by the day M-Pesa took the money. A payment by QR arrives as a Paybill "
    "payment and is counted as Paybill."
)


def glance(readings: Readings) -> Glance:
    """The charts of the orders page's first page, from `charts.read`."""
    outcomes = tuple(Series(key, label) for key, label in OUTCOMES)
    methods = list(METHODS)
    methods += sorted({method for _, method in readings.money} - set(METHODS))
    by_method = tuple(Series(m, CHART_METHOD_LABELS.get(m, m)) for m in methods)
    hours, days = readings.hours, readings.days
    median = duration_text(readings.median_s)
    charts = (
        stacked(
            "chart-hourly",
            "Payments per hour, last 24 hours",
            hours,
            readings.hourly,
            outcomes,
            note=MADE,
        ),
        stacked(
            "chart-daily",
            "Payments per day, last 30 days",
            days,
            readings.daily,
            outcomes,
            note=MADE,
        ),
        stacked(
            "chart-money",
            "Money received per day, last 30 days",
            days,
            readings.money,
            by_method,
            note=MONEY,
            money=True,
        ),
        success_chart(days, readings.success, median),
    )
    return Glance(charts=charts, median=median, timezone=days.tz.key)
