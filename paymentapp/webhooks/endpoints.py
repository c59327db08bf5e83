"""Registering webhook endpoints, and the address rules that keep them off our network.

In sandbox and production an endpoint must be https and resolve only to public
addresses: loopback, link-local, private, shared, multicast, reserved and cloud metadata
addresses are refused, at registration and again at every delivery, and the delivery
connects to the address that was checked (`delivery.py`), so a DNS answer that changes
in between (rebinding) cannot reach inside. `WEBHOOK_ALLOW_PRIVATE=1` lets a shop on a
private network receive them (metadata, loopback and link-local stay refused). Simulator
mode allows anything but cloud metadata addresses, http://127.0.0.1 included, for local
testing.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from .. import audit
from ..errors import NotFound, ValidationError
from ..extensions import db
from ..models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, utcnow
from ..orders.schemas import iso
from ..payments.states import move_deliveries
from .events import CATALOGUE

log = logging.getLogger(__name__)

MAX_URL = 2048
ROTATION_GRACE = timedelta(hours=24)
# Cloud instance metadata services, refused in every mode (WEBHOOK_ALLOW_PRIVATE and the
# simulator included): AWS, GCP, Azure, OpenStack, DigitalOcean, Hetzner (169.254.169.254;
# AWS over IPv6 fd00:ec2::254, its ECS task metadata 169.254.170.2 and its Nitro DNS /
# time helpers 169.254.169.123 and fd00:ec2::123), Alibaba (100.100.100.200), Azure's
# WireServer (168.63.129.16), Tencent (169.254.0.23), Oracle classic (192.0.0.192).
METADATA = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.170.2",
        "169.254.169.123",
        "fd00:ec2::123",
        "100.100.100.200",
        "168.63.129.16",
        "169.254.0.23",
        "192.0.0.192",
    )
)


class UnsafeAddress(ValueError):
    """The URL may not receive webhooks here; the message says why."""


def _live() -> bool:
    return current_app.config["MPESA_ENV"] != "simulator"


def is_metadata(address: ipaddress._BaseAddress) -> bool:
    """A cloud metadata address, also written as an IPv4-mapped IPv6 one."""
    mapped = getattr(address, "ipv4_mapped", None)
    return address in METADATA or (mapped is not None and mapped in METADATA)


def address_problem(address: ipaddress._BaseAddress, allow_private: bool) -> str | None:
    """Why this address may not receive webhooks (None: it may)."""
    if is_metadata(address):
        return "a cloud metadata address"
    if address.is_loopback or address.is_unspecified:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast or address.is_reserved:
        return "a reserved address"
    if (address.is_private or address in ipaddress.ip_network("100.64.0.0/10")) and not (
        allow_private
    ):
        return "a private address (set WEBHOOK_ALLOW_PRIVATE=1 for a private network)"
    return None


def resolve(url: str) -> list[str]:
    """The addresses a delivery to `url` may connect to, checked; raises UnsafeAddress."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeAddress(f"{host} could not be resolved") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    allow_private = current_app.config.get("WEBHOOK_ALLOW_PRIVATE", False)
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if _live():
            problem = address_problem(address, allow_private)
        else:  # the simulator allows loopback and private, never metadata
            problem = "a cloud metadata address" if is_metadata(address) else None
        if problem:
            raise UnsafeAddress(f"{host} resolves to {text}, {problem}")
    return addresses


def check_url(url) -> str:
    """A well-formed endpoint URL allowed in this mode, or a 422 naming the problem."""

    def refuse(message: str):
        raise ValidationError("The endpoint URL is not allowed.", fields={"url": message})

    if not isinstance(url, str) or not url.strip():
        refuse("Required: the https URL that receives the events.")
    url = url.strip()
    if len(url) > MAX_URL:
        refuse(f"At most {MAX_URL} characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        refuse("Not a valid URL.")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        refuse("Use an http(s) URL with a host name.")
    if parts.username or parts.password:
        refuse("Credentials in the URL are not allowed; verify the signature instead.")
    if _live() and parts.scheme != "https":
        refuse("Must be https outside simulator mode.")
    try:
        resolve(url)
    except UnsafeAddress as exc:
        refuse(f"Refused: {exc}.")
    return url


def check_events(events) -> str:
    if events is None or events == "*" or events == ["*"]:
        return "*"
    if isinstance(events, str):
        events = [e.strip() for e in events.split(",") if e.strip()]
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise ValidationError(
            "The event types are not valid.",
            fields={"events": f"A list of event types: {', '.join(CATALOGUE)}, or '*'."},
        )
    unknown = sorted(set(events) - set(CATALOGUE))
    if unknown:
        raise ValidationError(
            "The event types are not valid.",
            fields={"events": f"Unknown: {', '.join(unknown)}. Known: {', '.join(CATALOGUE)}."},
        )
    return ",".join(dict.fromkeys(events))


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def create_endpoint(url, events=None, description=None, api_key_id=None):
    """Register an endpoint; returns it with its secret (shown this once)."""
    if description is not None and (not isinstance(description, str) or len(description) > 200):
        raise ValidationError(
            "The description is not valid.", fields={"description": "Text, at most 200."}
        )
    endpoint = WebhookEndpoint(
        url=check_url(url),
        events=check_events(events),
        description=description,
        secret=new_secret(),
        enabled=True,
        api_key_id=api_key_id,
    )
    db.session.add(endpoint)
    db.session.flush()  # its id, for the audit log
    audit.record(
        "webhook.created",
        f"webhook endpoint {endpoint.url} added ({endpoint.events})",
        target=endpoint.id,
        changes={"url": endpoint.url, "events": endpoint.events},
    )
    db.session.commit()
    log.info(
        f"webhook endpoint {endpoint.id} added",
        extra={
            "event": "webhook.endpoint_added",
            "endpoint": endpoint.id,
            "events": endpoint.events,
        },
    )
    return endpoint


def live_endpoints() -> list[WebhookEndpoint]:
    return list(
        db.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.deleted_at.is_(None))
            .order_by(WebhookEndpoint.created_at)
        )
    )


def get_endpoint(endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if len(endpoint_id) <= 32 else None
    if endpoint is None or endpoint.deleted_at is not None:
        raise NotFound("No webhook endpoint with this id.", code="endpoint_not_found")
    return endpoint


def _cancel_pending(endpoint_id: str) -> None:
    move_deliveries(DeliveryStatus.CANCELLED, WebhookDelivery.endpoint_id == endpoint_id)


def delete_endpoint(endpoint_id: str) -> WebhookEndpoint:
    """Stop sending to it: pending deliveries are cancelled; history is kept."""
    endpoint = get_endpoint(endpoint_id)
    endpoint.deleted_at = utcnow()
    endpoint.enabled = False
    _cancel_pending(endpoint.id)
    audit.record("webhook.deleted", f"webhook endpoint {endpoint.url} deleted", target=endpoint.id)
    db.session.commit()
    log.info(
        f"webhook endpoint {endpoint.id} deleted",
        extra={"event": "webhook.endpoint_deleted", "endpoint": endpoint.id},
    )
    return endpoint


def set_enabled(endpoint_id: str, enabled: bool, reason: str | None = None) -> WebhookEndpoint:
    endpoint = get_endpoint(endpoint_id)
    if endpoint.enabled != enabled:
        audit.record(
            "webhook.enabled" if enabled else "webhook.disabled",
            f"webhook endpoint {endpoint.url} {'enabled' if enabled else 'disabled'}",
            target=endpoint.id,
            changes={"enabled": [endpoint.enabled, enabled]},
        )
    endpoint.enabled = enabled
    endpoint.disabled_reason = None if enabled else (reason or "disabled by the merchant")
    endpoint.failing_since = None if enabled else endpoint.failing_since
    if not enabled:
        _cancel_pending(endpoint.id)
    db.session.commit()
    return endpoint


def rotate_secret(endpoint_id: str, grace: timedelta = ROTATION_GRACE) -> WebhookEndpoint:
    """A new secret; the old one stays valid for `grace` (both signatures are sent)."""
    endpoint = get_endpoint(endpoint_id)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = utcnow() + grace
    endpoint.secret = new_secret()
    audit.record(
        "webhook.secret_rotated",
        f"webhook endpoint {endpoint.url}: new signing secret (the old one valid until "
        f"{endpoint.previous_secret_until:%Y-%m-%d %H:%M}Z)",
        target=endpoint.id,
    )
    db.session.commit()
    log.info(
        f"webhook endpoint {endpoint.id} secret rotated",
        extra={"event": "webhook.secret_rotated", "endpoint": endpoint.id},
    )
    return endpoint


def endpoint_json(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict:
    data = {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events.split(",") if endpoint.events != "*" else ["*"],
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": iso(endpoint.failing_since),
        "created_at": iso(endpoint.created_at),
        "previous_secret_valid_until": iso(endpoint.previous_secret_until),
    }
    if with_secret:
        data["secret"] = endpoint.secret
    return data
