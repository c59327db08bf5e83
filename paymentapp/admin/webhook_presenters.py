"""How the dashboard shows merchant webhooks: endpoints (state, how long one has been
failing, a secret in rotation), the event catalogue, and events with every delivery and
attempt. Plain functions of what `webhook_queries.py` read; nothing here touches the
database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..models import WebhookAttempt, WebhookEndpoint, utcnow
from ..webhooks.delivery import AUTO_DISABLED, GIVE_UP_AFTER, KEEP_BODY
from ..webhooks.events import CATALOGUE
from .webhook_queries import WebhookHistory


def span_text(seconds: float) -> str:
    """`under 1 min`, `40 min`, `5 h 10 min`, `2 d 3 h`: how long something has lasted."""
    minutes = max(0, int(seconds // 60))
    if minutes < 1:
        return "under 1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass
class EndpointView:
    """One row of the webhooks page."""

    id: str
    url: str
    description: str
    events: list[str]  # the types it receives; empty for all of them
    enabled: bool
    auto_disabled: bool
    reason: str
    failing_since: datetime | None
    failing_for: str  # "5 h 10 min", while it is enabled and failing
    created_at: datetime
    old_secret_until: datetime | None  # during a rotation: the old secret still works

    @property
    def state(self) -> str:
        if self.enabled:
            return "enabled"
        return "auto-disabled" if self.auto_disabled else "disabled"


def endpoint_view(endpoint: WebhookEndpoint, now: datetime | None = None) -> EndpointView:
    now = now or utcnow()
    reason = endpoint.disabled_reason or ""
    until = endpoint.previous_secret_until
    failing_for = ""
    if endpoint.enabled and endpoint.failing_since is not None:
        failing_for = span_text((now - endpoint.failing_since).total_seconds())
    return EndpointView(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description or "",
        events=[] if endpoint.events == "*" else endpoint.events.split(","),
        enabled=endpoint.enabled,
        # `webhooks/delivery.py` gives this reason to an endpoint failing for 3 days
        auto_disabled=not endpoint.enabled and reason == AUTO_DISABLED,
        reason=reason,
        failing_since=endpoint.failing_since,
        failing_for=failing_for,
        created_at=endpoint.created_at,
        old_secret_until=until if endpoint.previous_secret and until and until > now else None,
    )


def event_choices() -> list[tuple[str, str]]:
    """(type, what it means) for the add form's checkboxes, in the catalogue's order."""
    return list(CATALOGUE.items())


@dataclass
class AttemptView:
    """One HTTP attempt: what the merchant's server answered (or why there was no answer)."""

    id: int
    at: datetime
    status_code: int | None
    error: str
    latency: str
    body: str | None
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def attempt_view(attempt: WebhookAttempt) -> AttemptView:
    body = attempt.response_body
    return AttemptView(
        id=attempt.id,
        at=attempt.at,
        status_code=attempt.status_code,
        error=attempt.error or "",
        latency="—" if attempt.latency_ms is None else f"{attempt.latency_ms:,} ms",
        body=body,
        truncated=body is not None and len(body) >= KEEP_BODY,
    )


@dataclass
class DeliveryView:
    """One event sent to one endpoint, with every attempt."""

    id: int
    url: str
    endpoint_note: str  # "deleted" / "disabled" when the endpoint no longer receives events
    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str
    attempts: list[AttemptView]


@dataclass
class EventView:
    id: str
    type: str
    version: int | None
    created_at: datetime
    deliveries: list[DeliveryView]
    gives_up_at: datetime  # retries stop 3 days after the event


def webhook_events(history: WebhookHistory) -> list[EventView]:
    """Events, each with its deliveries and their attempts (`webhook_queries.order_webhooks`,
    `webhook_queries.recent_test_events`)."""
    views = []
    for event in history.events:
        deliveries = []
        for delivery in history.deliveries.get(event.id, []):
            endpoint = history.endpoints.get(delivery.endpoint_id)
            note = ""
            if endpoint is None or endpoint.deleted_at is not None:
                note = "deleted"
            elif not endpoint.enabled:
                note = "disabled"
            deliveries.append(
                DeliveryView(
                    id=delivery.id,
                    url=endpoint.url if endpoint else delivery.endpoint_id,
                    endpoint_note=note,
                    status=str(delivery.status),
                    attempt_count=delivery.attempts,
                    next_attempt_at=delivery.next_attempt_at
                    if delivery.status == "pending"
                    else None,
                    delivered_at=delivery.delivered_at,
                    last_error=delivery.last_error or "",
                    attempts=[attempt_view(a) for a in history.attempts.get(delivery.id, [])],
                )
            )
        views.append(
            EventView(
                id=event.id,
                type=event.type,
                version=event.version,
                created_at=event.created_at,
                deliveries=deliveries,
                gives_up_at=event.created_at + GIVE_UP_AFTER,
            )
        )
    return views
