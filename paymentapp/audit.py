"""The audit log: who did what to money, people, keys and webhooks, and from where.

(Skeleton: the table, page, CSV and `flask audit tail` are being built.)
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def record(
    action: str,
    summary: str,
    *,
    target: str | None = None,
    changes: dict | None = None,
    actor: str | None = None,
    role: str | None = None,
) -> None:
    """Append one event to the session; it commits with the change it describes."""
    log.info(summary, extra={"event": f"audit.{action}", "target": target})
