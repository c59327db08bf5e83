"""The audit log screen: who did what and from where, newest first, 50 a page, filtered
by action (a prefix: `webhook.` or `webhook.created`) and actor; and the same as CSV.
Every signed-in role may read it (GET); nobody may change it (the database refuses)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import render_template, request

from ... import audit
from ...extensions import db
from ...models import AuditEvent
from .. import bp, presenters
from .actions import csv_download

PAGE_SIZE = 50
CSV_HEADER = ("at", "actor", "role", "address", "action", "target", "summary", "changes")


@dataclass(frozen=True)
class AuditFilters:
    action: str = ""
    actor: str = ""
    page: int = 1

    def query_args(self, **override) -> dict:
        """The filters as URL parameters (links, pages, the CSV)."""
        args = {"action": self.action, "actor": self.actor, "page": self.page, **override}
        return {key: value for key, value in args.items() if value not in ("", None, 1)}


def parse_filters(args) -> AuditFilters:
    page = args.get("page", "")
    return AuditFilters(
        action=(args.get("action") or "").strip()[:64],
        actor=(args.get("actor") or "").strip()[:120],
        page=int(page) if page.isdigit() and 0 < len(page) < 7 else 1,
    )


def changes_said(event: AuditEvent) -> list[str]:
    """What changed, a line per field: `role: operator → owner` (a pair is always old
    and new: `audit.record`), or `name: value`."""
    said = []
    for name, value in json.loads(event.changes or "{}").items():
        if isinstance(value, list) and len(value) == 2:
            said.append(f"{name}: {_text(value[0])} → {_text(value[1])}")
        else:
            said.append(f"{name}: {_text(value)}")
    return said


def _text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@bp.get("/audit")
def audit_log():
    """The audit log, newest first."""
    filters = parse_filters(request.args)
    events, page, page_count = audit.page(filters.action, filters.actor, filters.page, PAGE_SIZE)
    return render_template(
        "admin/audit.html",
        events=events,
        filters=filters,
        page=page,
        page_count=page_count,
        actions=audit.actions_seen(),
        changes_said=changes_said,
    )


@bp.get("/audit.csv")
def audit_csv():
    """The filtered audit log as CSV (local times, formula-safe cells), streamed."""
    filters = parse_filters(request.args)
    query = audit.events(filters.action, filters.actor).execution_options(yield_per=500)
    rows = (
        [
            presenters.csv_cell(value)
            for value in [presenters.local_time(event.at)]
            + [getattr(event, name) for name in CSV_HEADER[1:]]
        ]
        for event in db.session.scalars(query)
    )
    return csv_download("audit", CSV_HEADER, rows)
