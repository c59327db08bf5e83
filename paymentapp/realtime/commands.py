"""`flask --app wsgi realtime resend ORDER_ID...`: push current snapshots to subscribers."""

import click
from flask import current_app

from ..errors import NotFound
from ..orders.services import get_order
from .emit import emit_order_update, use_write_only_emitter

realtime_cli = click.Group("realtime", help="Real-time updates (Socket.IO).")


@realtime_cli.command("resend")
@click.argument("order_ids", nargs=-1, required=True)
def resend(order_ids: tuple[str, ...]) -> None:
    """Re-send orders' snapshots to their rooms and admins (e.g. after a Redis outage)."""
    if not current_app.config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set: this process cannot reach any worker.")
    # Automatic inside a click command; called here to show how other processes do it.
    use_write_only_emitter(current_app)
    for order_id in order_ids:
        try:
            order = get_order(order_id)
        except NotFound:
            raise click.ClickException(f"No order with id {order_id!r}.") from None
        emit_order_update(order)
        click.echo(f"Sent {order.number} version {order.version} ({order.status}).")
