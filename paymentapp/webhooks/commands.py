"""`flask --app wsgi webhooks add URL | list | deliver [--loop] | rotate ID | resend EVENT`."""

import click
from flask import current_app

from ..errors import ApiError
from ..loops import run_forever
from .delivery import deliver_due, delivery_pass, resend
from .endpoints import create_endpoint, endpoint_json, live_endpoints, rotate_secret

webhooks_cli = click.Group("webhooks", help="Merchant webhooks.")


def _fail(exc: ApiError):
    details = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
    raise click.ClickException(f"{exc.message} {details}".strip())


@webhooks_cli.command("add")
@click.argument("url")
@click.option("--events", default="*", show_default=True, help="Comma-separated event types.")
def add(url: str, events: str) -> None:
    """Register an endpoint and print its signing secret (shown once)."""
    try:
        endpoint = create_endpoint(url, events)
    except ApiError as exc:
        _fail(exc)
    click.echo(f"Endpoint {endpoint.id} for {endpoint.url} ({endpoint.events}).")
    click.echo("Signing secret (shown only once; store it now):")
    click.echo(endpoint.secret)


@webhooks_cli.command("list")
def list_() -> None:
    """Every endpoint: id, state, events, URL."""
    for endpoint in live_endpoints():
        data = endpoint_json(endpoint)
        state = "enabled" if endpoint.enabled else f"disabled ({endpoint.disabled_reason})"
        click.echo(f"{data['id']}  {state}  {','.join(data['events'])}  {data['url']}")


@webhooks_cli.command("rotate")
@click.argument("endpoint_id")
def rotate(endpoint_id: str) -> None:
    """A new signing secret; the old one stays valid for 24 hours."""
    try:
        endpoint = rotate_secret(endpoint_id)
    except ApiError as exc:
        _fail(exc)
    click.echo(endpoint.secret)


@webhooks_cli.command("resend")
@click.argument("event_id")
def resend_event(event_id: str) -> None:
    """Deliver an event again to the endpoints that had it."""
    try:
        count = resend(event_id)
    except ApiError as exc:
        _fail(exc)
    click.echo(f"Queued {event_id} for {count} endpoint(s).")


@webhooks_cli.command("deliver")
@click.option("--loop", is_flag=True, help="Keep running (a process of its own in production).")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between passes.")
def deliver(loop: bool, interval: float) -> None:
    """Send due deliveries (and retries); safe to run in several processes at once."""
    if loop:
        run_forever(current_app._get_current_object(), delivery_pass, "webhooks", interval)
        return
    click.echo(f"webhook pass: {deliver_due()}")
