"""What happens when a Daraja callback arrives, whatever its kind:

    store raw → parse → match → apply transition → commit → effects

The raw body is committed in a transaction of its own before anything else, so no
callback is ever lost: not a malformed one, not one whose worker dies, not one that
fails to apply (the reconciler retries stored-but-unapplied records, `retry_stored`).
Applying runs in one transaction holding the matched payment's row lock, so ten
concurrent copies of one callback make exactly one transition; the effects (socket
emits) follow the commit (`outbox/hook.py`).

A kind is a `CallbackKind`: a name, a URL path, a parser and an applier (which matches
and transitions). STK results are the first (`stk.py`); a new kind registers itself with
`register` and this module does not change.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import insert, select

from .. import metrics
from ..database import autocommitted
from ..errors import ApiError
from ..extensions import db
from ..faults import fault_point
from ..locking import retry_conflicts
from ..models import CallbackOutcome, CallbackRecord, Order, utcnow
from ..models.records import StoredCallback
from ..outbox import RECORD_COLUMNS, announce, callback_outcome, fault_before_effects
from ..payments.reconcile import PassReport, after_each_pass

log = logging.getLogger(__name__)

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
MAX_APPLY_ATTEMPTS = 5
MAX_JSON_DEPTH = 32
RETRY_BATCH = 50  # stored callbacks retried per reconcile pass


class MalformedCallback(ValueError):
    """The body is not a callback of this kind; the message says what is wrong."""


class CallbackKind:
    """One kind of Daraja callback: how to read it and what it does."""

    name = ""  # stored in `callback_records.kind`
    path = ""  # the URL is /callbacks/<path>/<token>

    def parse(self, body: bytes):
        """The parsed message; raises MalformedCallback."""
        raise NotImplementedError

    def match_key(self, parsed) -> str | None:
        """The id the message is matched by (stored on the record)."""
        raise NotImplementedError

    def apply(self, record: StoredCallback, parsed) -> tuple[CallbackOutcome, Order | None]:
        """Match under a row lock and transition; the pipeline commits. Returns the
        outcome and the order to announce after the commit (None: nothing matched)."""
        raise NotImplementedError

    def answer(self, outcome: CallbackOutcome, detail: str | None) -> dict:
        """The body Daraja gets once the callback is stored (and applied); `detail` is
        what the record says it did."""
        return ACCEPTED


KINDS: dict[str, CallbackKind] = {}


def register(kind: CallbackKind) -> CallbackKind:
    KINDS[kind.name] = kind
    return kind


def kind_at(path: str) -> CallbackKind | None:
    return next((kind for kind in KINDS.values() if kind.path == path), None)


# -- reading bodies (shared by every kind) -------------------------------------------------


def clean_text(value, limit: int) -> str | None:
    """Text for a column: scalars only; NUL dropped and lone surrogates replaced
    (PostgreSQL and UTF-8 hold neither)."""
    if value is None or value == "" or isinstance(value, (bool, dict, list)):
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return text[:limit] or None


def _json_depth_ok(data, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `data` nests no deeper than `limit` (checked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return False
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return True


def load_json(body: bytes):
    """JSON from a callback body; anything unparseable is a MalformedCallback."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedCallback("body is not JSON") from None
    if not _json_depth_ok(data):
        raise MalformedCallback("body is nested too deeply")
    return data


# -- the pipeline ------------------------------------------------------------------------------


def receive(
    kind: CallbackKind,
    body: bytes,
    remote_addr: str | None,
    started: float | None = None,
    via: str = "callback",
) -> dict:
    """Store, parse, apply; the answer for Daraja. Never a 5xx for what the body holds.

    `started` (a `time.perf_counter()`): when the request arrived, for the metrics of the
    handling time and of the time until the order's update was emitted.
    """
    started = time.perf_counter() if started is None else started
    outcome = "store_failed"
    try:
        record = store_or_503(kind, body, remote_addr, via=via)
        outcome = CallbackOutcome.RECEIVED
        fault_point("callback.after_store")
        try:
            parsed = kind.parse(body)
        except MalformedCallback as exc:
            outcome = CallbackOutcome.MALFORMED
            mark_malformed(record.id, str(exc))
            raise ApiError(
                f"Not an {kind.name.upper()} callback: {exc}.", code="malformed_callback"
            ) from None
        try:
            outcome, detail, announced = apply_stored(kind, record, parsed)
        except Exception:  # noqa: BLE001 - the body is on disk; the reconciler retries it
            db.session.rollback()
            note_apply_failure(record.id)
            outcome, detail, announced = CallbackOutcome.RECEIVED, None, False
        if announced:
            metrics.observe_callback_to_emit(time.perf_counter() - started)
        return kind.answer(outcome, detail)
    finally:
        metrics.observe_callback(kind.name, str(outcome), time.perf_counter() - started)


def hold_untrusted(
    kind: CallbackKind, body: bytes, remote_addr: str | None, started: float
) -> dict:
    """A callback from outside MPESA_CALLBACK_ALLOWED_IPS: stored (a refused body could be
    money lost: the published ranges may be incomplete), never applied on its own, and
    answered as accepted; an admin applies or dismisses it from the review queue."""
    record = store_or_503(
        kind,
        body,
        remote_addr,
        outcome=CallbackOutcome.UNTRUSTED,
        detail=f"from {remote_addr}, outside MPESA_CALLBACK_ALLOWED_IPS: not applied; "
        "an admin applies or dismisses it",
    )
    log.warning(
        f"{kind.name} callback from {remote_addr} (not in MPESA_CALLBACK_ALLOWED_IPS) stored "
        "as untrusted, not applied",
        extra={"event": "callback.untrusted", "record": record.id, "ip": remote_addr},
    )
    metrics.observe_callback(kind.name, CallbackOutcome.UNTRUSTED, time.perf_counter() - started)
    return kind.answer(CallbackOutcome.RECEIVED, None)


def store_or_503(kind: CallbackKind, body: bytes, remote_addr: str | None, **stored):
    """`store`, or a 503 when the body could not be put on disk: Daraja must retry."""
    try:
        return store(kind, body, remote_addr, **stored)
    except Exception:  # noqa: BLE001 - not on disk: Daraja must retry, so a 503
        db.session.rollback()
        log.error(
            "callback could not be stored", exc_info=True, extra={"event": "callback.store_failed"}
        )
        raise ApiError(
            "The callback could not be stored; try again.", code="unavailable", status=503
        ) from None


_STORE = insert(CallbackRecord.__table__).returning(CallbackRecord.__table__.c.id)


def store(
    kind: CallbackKind,
    body: bytes,
    remote_addr: str | None,
    via: str = "callback",
    outcome: CallbackOutcome = CallbackOutcome.RECEIVED,
    detail: str | None = None,
) -> StoredCallback:
    """Commit the raw body first: whatever happens next, the callback is on record.

    One autocommitted INSERT (a single round trip: no BEGIN, no COMMIT to wait for, and
    as durable), on a connection of its own outside the session (the session would
    begin and end a transaction of its own around it: bookkeeping for nothing); the
    record comes back as a plain object with every column known (`StoredCallback`), so
    applying it needs no SELECT to read it again.
    """
    values = {
        "kind": kind.name,
        "received_at": utcnow(),
        "via": via,
        "remote_addr": remote_addr,
        # PostgreSQL text cannot hold NUL; keep the rest byte-for-byte readable
        "body": body.decode("utf-8", errors="replace").replace("\x00", "\\u0000"),
        "checkout_request_id": None,
        "payment_id": None,
        "outcome": outcome,
        "attempts": 0,
        "detail": detail,
    }
    if db.session().in_transaction():  # something else is under way: commit with it
        record_id = db.session.connection().execute(_STORE, values).scalar_one()
        db.session.commit()
    else:
        with autocommitted(db.engine) as connection:
            record_id = connection.execute(_STORE, values).scalar_one()
    return StoredCallback.of({"id": record_id, **values})


def apply_stored(
    kind: CallbackKind, record: StoredCallback | int, parsed
) -> tuple[CallbackOutcome, str | None, bool]:
    """Apply a parsed callback under its order's lock, record what it did, commit; a
    deadlock or serialization failure is retried in place (`locking.retry_conflicts`).

    `record` is the one `store` returned, or a stored record's id (its row is read); either
    way it is a `StoredCallback`, outside the session, and its outcome is written with the
    commit's appended rows.
    Returns the outcome, the record's detail, and whether an order's update was emitted
    after the commit. A
    duplicate re-sends the order's current snapshot too: the worker that applied the
    first copy may have died between its commit and its emit.
    """
    return retry_conflicts(
        f"callback_{kind.name}",
        lambda: _apply_once(kind, record, parsed),
        unique_is_race=True,  # two messages with one receipt for two orders: one wins
    )


def _apply_once(
    kind: CallbackKind, record: StoredCallback | int, parsed
) -> tuple[CallbackOutcome, str | None, bool]:
    if isinstance(record, int):  # a stored record retried: its row, read
        table = CallbackRecord.__table__
        record = StoredCallback(
            db.session.connection().execute(select(*table.c).where(table.c.id == record)).one()
        )
    key = kind.match_key(parsed)
    fault_point("callback.apply", key=key)
    outcome, order = kind.apply(record, parsed)
    record.checkout_request_id = key
    record.outcome = outcome
    # written by the commit's appended rows (outbox/writer.py), never by a flush, whether
    # the record was just stored or is retried
    callback_outcome(
        db.session, {"id": record.id, **{n: getattr(record, n) for n in RECORD_COLUMNS}}
    )
    if order is not None:
        announce(db.session, order)
    detail = record.detail
    fault_before_effects(db.session, "callback.after_commit")
    db.session.commit()
    return outcome, detail, order is not None


def mark_malformed(record_id: int, reason: str) -> None:
    record = db.session.get(CallbackRecord, record_id)
    record.outcome = CallbackOutcome.MALFORMED
    record.detail = reason[:255]
    db.session.commit()
    log.warning(
        f"malformed {record.kind} callback {record_id}: {reason}",
        extra={"event": "callback.malformed", "record": record_id},
    )


def note_apply_failure(record_id: int) -> CallbackRecord:
    """Applying a stored callback failed unexpectedly: count it, give up after a few.

    The record stays `received` (the reconciler retries it) until MAX_APPLY_ATTEMPTS,
    then becomes `failed` for an admin to look at. Logged without the request path.
    """
    record = db.session.get(CallbackRecord, record_id)
    record.attempts += 1
    if record.attempts >= MAX_APPLY_ATTEMPTS:
        record.outcome = CallbackOutcome.FAILED
        record.detail = f"gave up after {record.attempts} failed attempts to apply it"
    db.session.commit()
    log.error(
        f"applying callback {record_id} failed (attempt {record.attempts})",
        exc_info=True,
        extra={
            "event": "callback.apply_failed",
            "record": record_id,
            "attempts": record.attempts,
            "outcome": record.outcome,
        },
    )
    return record


def retry_stored(limit: int) -> tuple[int, int]:
    """Callbacks stored but never applied (a crash between store and apply), each on its
    own: one that keeps failing is counted, marked `failed` after a few attempts, and
    never stops the others. Returns `(retried, failed)`."""
    stale = utcnow() - timedelta(seconds=current_app.config["CALLBACK_RETRY_AFTER_S"])
    records = list(
        db.session.execute(
            select(CallbackRecord.id, CallbackRecord.kind, CallbackRecord.body)
            .where(
                CallbackRecord.outcome == CallbackOutcome.RECEIVED,
                CallbackRecord.received_at < stale,
            )
            .order_by(CallbackRecord.id)
            .limit(limit)
        )
    )
    db.session.commit()
    failed = 0
    for record_id, kind_name, body in records:
        kind = KINDS.get(kind_name)
        try:
            if kind is None:
                raise MalformedCallback(f"no callback kind named {kind_name!r}")
            apply_stored(kind, record_id, kind.parse(body.encode()))
        except MalformedCallback as exc:
            db.session.rollback()
            mark_malformed(record_id, str(exc))
        except Exception:  # noqa: BLE001 - one bad record must not block the rest
            db.session.rollback()
            failed += 1
            note_apply_failure(record_id)
    return len(records), failed


@after_each_pass
def retry_stored_callbacks(report: PassReport) -> None:
    """Part of every reconcile pass (`payments/reconcile.py`): stored callbacks never
    applied are retried, counted in the pass report."""
    retried, failed = retry_stored(RETRY_BATCH)
    report.callbacks_retried += retried
    report.callback_errors += failed
