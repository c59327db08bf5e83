"""The commit hook, in one place: what a transaction appends and what follows its commit.

  hook.py     collects what a transaction changed (`order_changed`, `transitioned`,
              `audited`, `callback_outcome`, `announce`, `order_created`, the events
              of no payment change: `event_for`, `redeliver`, and the audit log's rows:
              `action_audited`); just before the commit it writes the appended rows and
              builds the emit payloads, after the commit it dispatches them (socket
              emits, the audit log's lines); a rollback drops everything
  events.py   the webhook events of a transaction: rows with their exact bodies, and
              the SQL that gives each a delivery for every endpoint that wants it
  updates.py  the changed orders and payments, taken just before the flush from the
              ORM (PostgreSQL) and from the records a lock read (`models/records.py`):
              written by writer.py's one statement, the version counted by the
              database and checked against the one announced
  writer.py   the appended rows themselves: audit rows (`order_events`), the stored
              callback's outcome, webhook events and their deliveries, and on
              PostgreSQL the rows updates.py took; one statement on PostgreSQL, one per
              table on SQLite (`write_appended`); then the rarer rows of no payment
              change (test events, resends, the audit log's)

A committed change always has its audit rows, its webhook events and its emit; a
rolled-back one never does (the transactional outbox).
"""

from .hook import (
    action_audited,
    announce,
    audited,
    callback_outcome,
    event_for,
    fault_before_effects,
    order_changed,
    order_created,
    redeliver,
    transitioned,
)
from .writer import RECORD_COLUMNS, write_appended

__all__ = [
    "RECORD_COLUMNS",
    "action_audited",
    "announce",
    "audited",
    "callback_outcome",
    "event_for",
    "fault_before_effects",
    "order_changed",
    "order_created",
    "redeliver",
    "transitioned",
    "write_appended",
]
