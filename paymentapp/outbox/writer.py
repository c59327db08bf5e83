"""The rows a transaction appends just before it commits, written in one statement.

A payment change appends its audit rows (`order_events`), its webhook events with their
deliveries (`webhooks/events.py`) and, for a callback, the stored record's outcome. On
PostgreSQL all of them go in ONE statement (data-modifying CTEs, each table's new rows
passed as one JSON array, so it compiles once whatever the number of rows): one round
trip in the commit of every payment change. Elsewhere (SQLite) one statement per table.

`hook.py` calls `write_appended` from `before_commit`, after the ORM's own flush.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache

from sqlalchemy import Text, bindparam, cast, func, insert, literal, literal_column, select, update
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..models import (
    AuditEvent,
    CallbackRecord,
    DeliveryStatus,
    Order,
    OrderEvent,
    Payment,
    WebhookDelivery,
    WebhookEvent,
    as_utc,
    utcnow,
)
from .events import deliveries_for
from .updates import RowUpdate

TABLES = {model.__tablename__: model.__table__ for model in (Order, Payment)}

EVENT_COLUMNS = ("id", "type", "order_id", "version", "payload", "created_at")
AUDIT_COLUMNS = ("order_id", "payment_id", "kind", "detail", "actor", "created_at")
# What applying a stored callback records on it (pipeline.apply_stored)
RECORD_COLUMNS = ("checkout_request_id", "payment_id", "outcome", "detail")


def _insert_rows(model, columns: tuple[str, ...], prefix: str):
    """`INSERT INTO <table> (columns) SELECT columns FROM
    json_populate_recordset(NULL::<table>, :prefix_rows)`: any number of rows, passed as
    one JSON array of objects (`_rows_json`) and typed by the table's own row type.

    One text parameter instead of an array per column: psycopg dumps a list element by
    element in Python (its type looked up, its dimensions walked), which for the eleven
    arrays of a paid callback was about 4 % of its CPU; `json.dumps` is C."""
    table = model.__table__
    rows = (
        func.json_populate_recordset(
            literal_column(f"NULL::{table.name}"),
            cast(bindparam(f"{prefix}_rows", type_=Text), JSON),
        )
        # no column list after the alias: the record's own columns, read by name
        .table_valued(*columns, name=f"{prefix}_rows")
    )
    return insert(table).from_select(list(columns), select(*rows.c))


def _json_value(value):
    """A row value JSON has no type for: a datetime, in UTC with its offset, as the
    `UTCDateTime` columns take it (a naive one is refused the same way)."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    raise TypeError(f"{type(value).__name__} is not a row value")


def _rows_json(rows: list[dict], columns: tuple[str, ...]) -> str:
    return json.dumps(
        [{name: row[name] for name in columns} for row in rows],
        default=_json_value,
        ensure_ascii=False,
        check_circular=False,
    )


def _record_update():
    table = CallbackRecord.__table__
    return (
        update(table)
        .where(table.c.id == bindparam("record_id"))
        .values({name: bindparam(f"record_{name}") for name in RECORD_COLUMNS})
    )


def _row_update(index: int, table_name: str, columns: tuple[str, ...], bump: bool):
    """`UPDATE <table> SET <columns> [, version = version + 1] WHERE id = :u<i>_id`,
    the version read back (`updates.py`)."""
    table = TABLES[table_name]
    values = {name: bindparam(f"u{index}_{name}") for name in columns}
    statement = update(table).where(table.c.id == bindparam(f"u{index}_id"))
    if bump:
        values["version"] = table.c.version + 1
        return statement.values(values).returning(table.c.version)
    return statement.values(values)


def _update_params(index: int, row: RowUpdate) -> dict:
    """The bound values of `_row_update(index, ...)` for this row."""
    return {f"u{index}_id": row.row_id, **{f"u{index}_{n}": v for n, v in row.values.items()}}


@cache
def _statement(with_events: bool, with_audit: bool, with_record: bool, updates: tuple = ()):
    """PostgreSQL: everything appended as one statement, built once per shape; with row
    `updates` (their shapes, `updates.RowUpdate.shape`) the statement returns one row of
    the bumped orders' versions."""
    parts = []
    if with_audit:
        parts.append(("new_audit", _insert_rows(OrderEvent, AUDIT_COLUMNS, "audit")))
    if with_record:
        parts.append(("record_outcome", _record_update()))
    bumped = []
    for index, shape in enumerate(updates):
        part = _row_update(index, *shape).cte(f"row_update_{index}")
        parts.append((None, part))
        if shape[2]:
            bumped.append(part.c.version.label(f"version_{index}"))
    if with_events:
        table = WebhookEvent.__table__
        new_events = (
            _insert_rows(WebhookEvent, EVENT_COLUMNS, "event")
            .returning(table.c.id, table.c.type)
            .cte("new_events")
        )
        parts.append(("new_deliveries", deliveries_for(new_events)))
    if updates:
        statement = select(*bumped) if bumped else select(literal(1))
    else:
        _, statement = parts.pop()
    for name, part in parts:
        statement = statement.add_cte(part if name is None else part.cte(name))
    return statement


def write_appended(
    session: Session,
    events: list[dict] = (),
    audit: list[dict] = (),
    record: dict | None = None,
    *,
    targeted: list[dict] = (),
    deliveries: list[tuple[str, str]] = (),
    actions: list[dict] = (),
    updates: list[RowUpdate] = (),
) -> None:
    """Write `events` (webhook_events rows) and their due deliveries, `audit`
    (order_events rows) and `record` (a callback record's id and RECORD_COLUMNS); then
    `targeted` events (rows with no delivery of their own), `deliveries` (event id,
    endpoint id) of named endpoints and `actions` (audit_events rows), the same way on
    every database (they are never on the hot path). `updates` (the changed orders and
    payments, `updates.take_updates`) go in the one statement on PostgreSQL."""
    events, audit = list(events), list(audit)
    now = utcnow()
    if events or audit or record or updates:
        if session.get_bind().dialect.name == "postgresql":
            _write_in_one_statement(session, events, audit, record, now, updates)
        else:
            _write_per_table(session, events, audit, record, now, updates)
    if targeted:
        session.execute(insert(WebhookEvent.__table__), list(targeted))
    if deliveries:
        session.execute(
            insert(WebhookDelivery.__table__),
            [
                {
                    "event_id": event_id,
                    "endpoint_id": endpoint_id,
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for event_id, endpoint_id in deliveries
            ],
        )
    if actions:
        session.execute(insert(AuditEvent.__table__), list(actions))


def _write_in_one_statement(session, events, audit, record, now, updates=()) -> None:
    """PostgreSQL: one round trip, whatever the number of rows (`_statement`)."""
    params = {"now": now}
    for index, row in enumerate(updates):
        params.update(_update_params(index, row))
    if events:
        params["event_rows"] = _rows_json(events, EVENT_COLUMNS)
    if audit:
        params["audit_rows"] = _rows_json(audit, AUDIT_COLUMNS)
    if record:
        params["record_id"] = record["id"]
        params.update({f"record_{name}": record[name] for name in RECORD_COLUMNS})
    shapes = tuple(row.shape for row in updates)
    # on the session's connection: a Core statement needs none of `Session.execute`'s ORM steps
    result = session.connection().execute(
        _statement(bool(events), bool(audit), bool(record), shapes), params
    )
    if updates:
        check_versions(updates, result.one_or_none())


def check_versions(updates, returned) -> None:
    """The versions the database counted are the ones announced (`updates.py`): else a
    row changed without its order's lock, and the commit must not happen."""
    expected = tuple(row.version for row in updates if row.version is not None)
    if returned is None or (expected and tuple(returned) != expected):
        raise StaleDataError(
            f"orders' versions after the update: {returned and tuple(returned)}, "
            f"announced: {expected} (a change without the order's lock?)"
        )


def _write_per_table(session, events, audit, record, now, updates=()) -> None:
    """SQLite (no data-modifying CTEs): the same rows, one statement per table, and one
    per updated row (records' changes: `updates.take_updates`)."""
    for row in updates:
        result = session.execute(_row_update(0, *row.shape), _update_params(0, row))
        if row.version is not None:
            check_versions([row], result.one_or_none())
    if audit:
        session.execute(insert(OrderEvent.__table__), audit)
    if record:
        session.execute(
            _record_update(),
            {"record_id": record["id"], **{f"record_{n}": record[n] for n in RECORD_COLUMNS}},
        )
    if events:
        session.execute(insert(WebhookEvent.__table__), events)
        table = WebhookEvent.__table__
        new_events = (
            select(table.c.id, table.c.type)
            .where(table.c.id.in_([row["id"] for row in events]))
            .subquery()
        )
        session.execute(deliveries_for(new_events), {"now": now})
