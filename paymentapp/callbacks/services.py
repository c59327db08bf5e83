"""What an admin does with a stored callback: close one that matched no payment."""

from __future__ import annotations

import logging

from ..errors import Conflict, NotFound
from ..extensions import db
from ..logs import log_event
from ..models import CallbackOutcome, CallbackRecord, utcnow
from ..payments.services import review_note

log = logging.getLogger(__name__)


def resolve_unknown_callback(record_id: int, note: str | None, actor: str) -> CallbackRecord:
    """Close a callback for an unknown checkout id; the note goes into its `detail`."""
    note = review_note(note)
    record = db.session.get(CallbackRecord, record_id)
    if record is None or record.outcome not in (
        CallbackOutcome.UNKNOWN,
        CallbackOutcome.UNKNOWN_RESOLVED,
    ):
        raise NotFound("No unknown callback with this id.", code="review_not_found")
    if record.outcome == CallbackOutcome.UNKNOWN_RESOLVED:
        raise Conflict("This callback was already resolved.", code="already_resolved")
    record.outcome = CallbackOutcome.UNKNOWN_RESOLVED
    record.detail = f"resolved by {actor} {utcnow():%Y-%m-%d %H:%MZ}: {note}"
    db.session.commit()
    log_event(
        log,
        "admin.review_resolved",
        f"unknown callback {record.id} resolved by {actor}",
        callback_id=record.id,
        admin=actor,
    )
    return record
