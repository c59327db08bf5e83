"""What every dashboard action shares: a form field as text, the state of a form shown
again after a refusal, who acts, and `attempt`: the one place where a service's refusal
becomes the dashboard's answer (a message flashed on the page the action came from, or
that page with its form refilled and the refused fields marked)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from flask import Response, abort, flash, make_response, redirect, request, stream_with_context
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import IntegrityError

from ...errors import ApiError, Conflict
from ...extensions import db
from ...payments.services import review_note
from ..auth import current_admin
from ..presenters import local_time

T = TypeVar("T")


def form_text(name: str) -> str:
    """A form field as text PostgreSQL will store (it refuses NUL characters)."""
    return request.form.get(name, "").replace("\x00", "")


def form_state(values: dict, errors: dict | None = None, message: str = "") -> dict:
    """A form's state for a page re-rendered after a refusal: what was typed (kept), the
    refusal's field errors (shown next to each field) and its message."""
    return {"typed": values, "errors": errors or {}, "message": message}


def note_errors(note: str) -> dict:
    """What is wrong with an admin's note closing a review, as field errors ({} when it
    will do): checked with the form's other fields, before any service runs."""
    try:
        review_note(note)
    except ApiError as exc:
        return exc.fields
    return {}


def actor() -> str:
    """The admin acting, as audit rows and log lines name them."""
    return f"admin:{current_admin().username}"


def attempt(
    action: Callable[[], T],
    back: str | None = None,
    *,
    refused: Callable[[ApiError], ResponseReturnValue | None] | None = None,
    duplicate: str | None = None,
) -> T:
    """Run an action's service call and return its result; a refusal (`ApiError`) ends the
    request here instead. A 404 goes on to the 404 page. Anything else is rolled back and
    answered by `refused(exc)`: the action's page with its form refilled and the refused
    fields marked; where there is none (None), the refusal's message is flashed on `back`.
    With `duplicate`, a unique row written meanwhile by someone else (the same receipt) is
    a refusal too, a 409 with that message."""
    try:
        return action()
    except ApiError as exc:
        if exc.status == 404:
            raise
        refusal = exc
    except IntegrityError:
        if duplicate is None:
            raise
        refusal = Conflict(duplicate, code="duplicate")
    db.session.rollback()
    answer = refused(refusal) if refused else None
    if answer is None:
        flash_refusal(refusal)
        answer = redirect(back)
    abort(make_response(answer))  # a response given to abort is sent as it is


def csv_download(name: str, header, rows) -> Response:
    """`rows` (lists of cells, already formula-safe) under `header`, streamed as the
    download `<name>-<local date>.csv`, about 16 KiB at a time."""

    def chunks():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            if buffer.tell() > 16_384:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    filename = f"{name}-{local_time(datetime.now(UTC))[:10]}.csv"
    return Response(
        stream_with_context(chunks()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def flash_refusal(exc: ApiError) -> None:
    """A refusal's message, shown above the next page."""
    flash(exc.message, "error")
