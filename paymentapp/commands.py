"""CLI: `flask --app wsgi admin create USERNAME`, `apikey create|list|revoke NAME`,
`mpesa reconcile|register-c2b|pull|register-pull`, `realtime resend`, `secrets new-key|rotate`,
`audit tail` (paymentapp/audit.py)."""

import logging
from datetime import timedelta

import click
from cryptography.fernet import Fernet
from flask import Flask, current_app
from sqlalchemy import text

from . import audit, crypto
from .admin import users
from .callbacks.pull import pull_missed
from .config import FORBIDDEN_CALLBACK_WORDS
from .errors import ApiError
from .extensions import db
from .loops import run_forever
from .models import Role
from .mpesa.client import DarajaError, get_client
from .payments.reconcile import reconcile_once
from .realtime.commands import realtime_cli
from .security import (
    SCOPES,
    create_api_key,
    list_api_keys,
    parse_scopes,
    revoke_api_keys,
    scopes_text,
)
from .webhooks.commands import webhooks_cli

log = logging.getLogger(__name__)

admin_cli = click.Group("admin", help="Dashboard users.")
apikey_cli = click.Group("apikey", help="Merchant API keys.")
mpesa_cli = click.Group("mpesa", help="M-Pesa operations.")
secrets_cli = click.Group("secrets", help="Secrets at rest (ENCRYPTION_KEYS).")


@admin_cli.command("create")
@click.argument("username")
@click.password_option(help="Prompted for when not given.")
@click.option(
    "--role",
    type=click.Choice(users.ROLES),
    default=None,
    help="viewer, operator or owner (a new user: owner unless given).",
)
def admin_create(username: str, password: str, role: str | None) -> None:
    """Create a dashboard user (or reset the password of an existing one)."""
    try:
        user, created = users.set_password(username, password, Role(role) if role else None)
    except ApiError as exc:
        raise click.BadParameter(exc.message) from None
    verb = "created" if created else "updated"
    click.echo(f"Admin user {user.username!r} ({user.role}) {verb}.")


@admin_cli.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(users.ROLES))
def admin_role(username: str, role: str) -> None:
    """Give a dashboard user another role (it applies on their next request)."""
    user = users.find_user(username.strip())
    if user is None:
        raise click.BadParameter(f"no dashboard user {username!r}", param_hint="USERNAME")
    try:
        user = users.change_role(user.id, Role(role))
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Admin user {user.username!r} is now {user.role}.")


@admin_cli.command("list")
def admin_list() -> None:
    """Dashboard users, their roles and whether they may sign in."""
    for user in users.list_users():
        state = "disabled" if user.disabled_at else "enabled"
        click.echo(f"{user.username}\t{user.role}\t{state}")


@apikey_cli.command("create")
@click.argument("name")
@click.option(
    "--scopes",
    default="",
    help=f"What it may do, comma-separated: {', '.join(SCOPES)} (default: all of it).",
)
@click.option("--own-orders", is_flag=True, help="It sees and changes only the orders it created.")
def apikey_create(name: str, scopes: str, own_orders: bool) -> None:
    """Create a merchant API key and print it once."""
    name = name.strip()
    if not name or len(name) > 80:
        raise click.BadParameter("1 to 80 characters", param_hint="NAME")
    try:
        parsed = parse_scopes(scopes)
    except ApiError as exc:
        raise click.BadParameter(exc.message, param_hint="--scopes") from None
    record, plain = create_api_key(name, scopes=parsed, own_orders=own_orders, actor="cli")
    click.echo(
        f"API key {record.name!r} created ({scopes_text(record)}). "
        "It is shown only once; store it now:"
    )
    click.echo(plain)


@apikey_cli.command("list")
def apikey_list() -> None:
    """List the keys: name, prefix, when created and revoked (active ones first)."""
    keys = list_api_keys()
    if not keys:
        click.echo("No API keys. Create one with: flask --app wsgi apikey create NAME")
        return
    rows = [
        (
            key.name,
            key.prefix + "…",
            _utc(key.created_at),
            _utc(key.revoked_at) if key.revoked_at else "active",
            scopes_text(key),
        )
        for key in keys
    ]
    header = ("NAME", "PREFIX", "CREATED (UTC)", "REVOKED (UTC)", "SCOPES")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())


@apikey_cli.command("revoke")
@click.argument("name")
def apikey_revoke(name: str) -> None:
    """Revoke every active key named NAME: requests with it get 401 from then on."""
    revoked = revoke_api_keys("cli", name=name.strip())
    if not revoked:
        active_names = sorted({key.name for key in list_api_keys() if key.revoked_at is None})
        hint = ", ".join(repr(n) for n in active_names) or "none"
        raise click.ClickException(
            f"No active API key is named {name.strip()!r} (active keys: {hint}). "
            "See: flask --app wsgi apikey list"
        )
    prefixes = ", ".join(key.prefix + "…" for key in revoked)
    count = len(revoked)
    click.echo(
        f"Revoked {count} API key{'' if count == 1 else 's'} named {name.strip()!r} "
        f"({prefixes}); requests with {'it' if count == 1 else 'them'} now get 401."
    )


def _utc(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


@mpesa_cli.command("reconcile")
@click.option("--loop", is_flag=True, help="Keep running (a process of its own in production).")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between passes.")
def mpesa_reconcile(loop: bool, interval: float) -> None:
    """Settle pending payments with STK Query; expire the ones nobody answered."""

    if loop:
        run_forever(current_app._get_current_object(), reconcile_once, "reconcile", interval)
        return
    click.echo(f"reconcile pass: {reconcile_once()}")


@mpesa_cli.command("register-c2b")
@click.option(
    "--response-type",
    type=click.Choice(["Completed", "Cancelled"]),
    default="Completed",
    show_default=True,
    help="What M-Pesa does when the validation URL does not answer in time.",
)
def mpesa_register_c2b(response_type: str) -> None:
    """Register this app's Paybill confirmation and validation URLs with Daraja."""

    config = current_app.config
    base = f"{config['PUBLIC_BASE_URL']}/callbacks/c2b"
    token = config["MPESA_CALLBACK_TOKEN"]
    urls = {
        "confirmation": f"{base}/confirmation/{token}",
        "validation": f"{base}/validation/{token}",
    }
    for url in urls.values():
        if any(word in url.lower() for word in FORBIDDEN_CALLBACK_WORDS):
            raise click.ClickException("The callback URL contains a word Daraja rejects.")
        if config["MPESA_ENV"] == "production" and not url.startswith("https://"):
            raise click.ClickException("Daraja needs https callback URLs in production.")
    try:
        answer = get_client().register_c2b_urls(
            shortcode=config["MPESA_C2B_SHORTCODE"],
            confirmation_url=urls["confirmation"],
            validation_url=urls["validation"],
            response_type=response_type,
        )
    except DarajaError as exc:
        raise click.ClickException(f"Daraja refused: {exc.code} {exc.message}") from None
    click.echo(f"Registered for shortcode {config['MPESA_C2B_SHORTCODE']} ({response_type}).")
    click.echo(f"Daraja answered: {answer}")


SINCE_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _since(text: str) -> timedelta:
    """`6h`, `90m`, `2d` (at most 48 hours)."""
    text = (text or "").strip().lower()
    if len(text) < 2 or text[-1] not in SINCE_UNITS or not text[:-1].isdigit():
        raise click.BadParameter("a number of minutes, hours or days, e.g. 6h, 90m, 2d")
    seconds = int(text[:-1]) * SINCE_UNITS[text[-1]]
    if not 0 < seconds <= 48 * 3600:
        raise click.BadParameter("Pull Transactions reaches back at most 48 hours")
    return timedelta(seconds=seconds)


@mpesa_cli.command("pull")
@click.option("--since", "since", default="6h", show_default=True, help="How far back.")
def mpesa_pull(since: str) -> None:
    """Pull back Paybill payments whose confirmation never arrived (Pull Transactions)."""
    try:
        report = pull_missed(_since(since))
    except DarajaError as exc:
        raise click.ClickException(f"Daraja refused: {exc.code} {exc.message}") from None
    click.echo(f"pull: {report}")


@mpesa_cli.command("register-pull")
@click.option("--nominated-number", required=True, help="The phone Safaricom notifies (2547…).")
def mpesa_register_pull(nominated_number: str) -> None:
    """Register the Paybill for Pull Transactions (once per shortcode)."""
    config = current_app.config
    # Daraja asks for a CallBackURL here; what it posts there is not documented to us: the
    # confirmation URL stores any body raw (a body of another shape is kept as malformed)
    token = config["MPESA_CALLBACK_TOKEN"]
    callback = f"{config['PUBLIC_BASE_URL']}/callbacks/c2b/confirmation/{token}"
    try:
        answer = get_client().register_pull(
            shortcode=config["MPESA_C2B_SHORTCODE"],
            nominated_number=nominated_number,
            callback_url=callback,
        )
    except DarajaError as exc:
        raise click.ClickException(f"Daraja refused: {exc.code} {exc.message}") from None
    click.echo(f"Registered shortcode {config['MPESA_C2B_SHORTCODE']} for Pull Transactions.")
    click.echo(f"Daraja answered: {answer}")


@secrets_cli.command("new-key")
def secrets_new_key() -> None:
    """Print a new ENCRYPTION_KEY (a Fernet key)."""
    click.echo(Fernet.generate_key().decode())


@secrets_cli.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the first of ENCRYPTION_KEYS (put the new key
    first, run this, then drop the old one)."""
    rows = db.session.execute(
        text("SELECT id, secret, previous_secret FROM webhook_endpoints")
    ).all()
    for endpoint_id, secret, previous in rows:
        db.session.execute(
            text(
                "UPDATE webhook_endpoints SET secret = :secret, previous_secret = :previous "
                "WHERE id = :id"
            ),
            {
                "id": endpoint_id,
                "secret": crypto.rotated(secret),
                "previous": crypto.rotated(previous) if previous else None,
            },
        )
    audit.record("secrets.rotated", f"{len(rows)} webhook secrets re-encrypted with the first key")
    db.session.commit()
    log.info(
        f"{len(rows)} webhook endpoint secrets re-encrypted with the first key",
        extra={"event": "secrets.rotated", "endpoints": len(rows)},
    )
    click.echo(f"Re-encrypted the secrets of {len(rows)} webhook endpoints with the first key.")


def register_commands(app: Flask) -> None:
    app.cli.add_command(audit.audit_cli)
    app.cli.add_command(secrets_cli)
    app.cli.add_command(admin_cli)
    app.cli.add_command(apikey_cli)
    app.cli.add_command(mpesa_cli)
    app.cli.add_command(realtime_cli)
    app.cli.add_command(webhooks_cli)
