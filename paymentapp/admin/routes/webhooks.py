"""Merchant webhook endpoints: the list, adding one (its signing secret shown once),
rotating a secret, disabling, enabling and deleting one, sending it a test event, and
resending an event to every endpoint that had it."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from ...extensions import db
from ...models import Role
from ...webhooks import delivery as webhook_delivery
from ...webhooks import endpoints as webhook_endpoints
from ...webhooks.events import send_test_event
from .. import bp, lookups, webhook_presenters, webhook_queries
from ..auth import requires
from .actions import actor, attempt, form_text


def webhooks_page(status: int = 200, *, form: dict | None = None, revealed=None):
    """The endpoints page; `form` refills the add form (with its errors), `revealed` is a
    secret shown this once (a new endpoint's or a rotated one's)."""
    endpoints = [webhook_presenters.endpoint_view(e) for e in webhook_endpoints.live_endpoints()]
    return render_template(
        "admin/webhooks.html",
        endpoints=endpoints,
        flagged=[e for e in endpoints if e.auto_disabled],
        choices=webhook_presenters.event_choices(),
        form=form or {"url": "", "description": "", "events": ["*"], "errors": {}},
        revealed=revealed,
        test_events=webhook_presenters.webhook_events(webhook_queries.recent_test_events()),
    ), status


def _cancelled(pending: int) -> str:
    if not pending:
        return "."
    return f"; {pending} pending deliver{'y' if pending == 1 else 'ies'} cancelled."


@bp.get("/webhooks")
def webhooks():
    """Webhook endpoints: the list, the add form and the last test events."""
    return webhooks_page()


@bp.post("/webhooks")
def add_webhook():
    """Register an endpoint; its signing secret is shown on the answer, this once."""
    url = form_text("url").strip()
    description = form_text("description").strip()
    events = [e.replace("\x00", "") for e in request.form.getlist("events")]
    form = {"url": url, "description": description, "events": events, "errors": {}}
    endpoint = attempt(
        lambda: webhook_endpoints.create_endpoint(
            url, "*" if "*" in events else events, description or None
        ),
        refused=lambda exc: webhooks_page(
            422, form={**form, "errors": exc.fields or {"url": exc.message}, "message": exc.message}
        ),
    )
    return webhooks_page(201, revealed={"kind": "added", "endpoint": endpoint})


@bp.post("/webhooks/<endpoint_id>/rotate")
def rotate_webhook_secret(endpoint_id: str):
    """A new signing secret, shown this once; the old one keeps working for 24 hours."""
    endpoint = webhook_endpoints.rotate_secret(endpoint_id)
    return webhooks_page(revealed={"kind": "rotated", "endpoint": endpoint})


@bp.post("/webhooks/<endpoint_id>/disable")
def disable_webhook(endpoint_id: str):
    """Stop sending to an endpoint; its pending deliveries are cancelled."""
    endpoint = webhook_endpoints.get_endpoint(endpoint_id)
    pending = webhook_queries.pending_deliveries(endpoint.id)
    webhook_endpoints.set_enabled(endpoint.id, False, f"disabled by {actor()}")
    flash(f"{endpoint.url} is disabled: no events are sent to it{_cancelled(pending)}", "ok")
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/<endpoint_id>/enable")
def enable_webhook(endpoint_id: str):
    """Send new events to an endpoint again (deliveries cancelled meanwhile stay cancelled)."""
    endpoint = webhook_endpoints.set_enabled(endpoint_id, True)
    flash(
        f"{endpoint.url} is enabled: new events are sent to it. Events from while it was "
        "disabled are not; resend them from their order's page.",
        "ok",
    )
    return redirect(url_for("admin.webhooks"))


@bp.route("/webhooks/<endpoint_id>/delete", methods=["GET", "POST"])
@requires(Role.OWNER)
def delete_webhook(endpoint_id: str):
    """Delete an endpoint, after a confirm step (GET shows it, POST does it)."""
    endpoint = webhook_endpoints.get_endpoint(endpoint_id)
    pending = webhook_queries.pending_deliveries(endpoint.id)
    if request.method == "GET":
        return render_template(
            "admin/webhook_delete.html",
            endpoint=webhook_presenters.endpoint_view(endpoint),
            pending=pending,
        )
    webhook_endpoints.delete_endpoint(endpoint.id)
    flash(f"{endpoint.url} is deleted: no more events are sent to it{_cancelled(pending)}", "ok")
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/<endpoint_id>/test")
def test_webhook(endpoint_id: str):
    """Queue an `endpoint.test` event for this one endpoint."""
    endpoint = webhook_endpoints.get_endpoint(endpoint_id)
    if not endpoint.enabled:
        flash(f"{endpoint.url} is disabled: enable it before sending a test event.", "error")
        return redirect(url_for("admin.webhooks"))
    event = send_test_event(endpoint, db.session)
    flash(
        f"Test event {event.id} queued for {endpoint.url}: it is sent within seconds; "
        "the answer is under Recent test events.",
        "ok",
    )
    return redirect(url_for("admin.webhooks"))


@bp.post("/webhooks/events/<event_id>/resend")
def resend_webhook_event(event_id: str):
    """Deliver an event again to every endpoint that had it (a new delivery each)."""
    event = lookups.get_webhook_event(event_id)
    count = webhook_delivery.resend(event.id)
    if count:
        flash(
            f"Queued for {count} endpoint{'' if count == 1 else 's'}: {event.type} {event.id}.",
            "ok",
        )
    else:
        flash(
            f"{event.type} {event.id} has no live endpoint to go to (disabled or deleted): "
            "nothing was queued.",
            "info",
        )
    # back to the top of the page, where the message is (not scrolled past it to the event)
    if event.order_id:
        return redirect(url_for("admin.order_detail", order_id=event.order_id))
    return redirect(url_for("admin.webhooks"))
