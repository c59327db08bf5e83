"""Demo shop rules: a tiny catalogue, orders created through the orders service, and
fulfilment only on a verified `order.paid` webhook (the reference integration)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import Forbidden, NotFound
from ..extensions import db
from ..models import ApiKey, Order, ShopFulfilment, WebhookEndpoint
from ..orders.services import create_order
from ..security import create_api_key
from ..webhooks.endpoints import create_endpoint
from ..webhooks.signing import verify

log = logging.getLogger(__name__)

DEMO_SHOP_KEY_NAME = "demo-shop"


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    blurb: str
    amount: int  # whole shillings
    art: str  # which illustration the template draws


PRODUCTS = {
    p.id: p
    for p in (
        Product("coffee", "Nyeri AA coffee", "500 g whole beans, medium roast", 1450, "coffee"),
        Product("tea", "Kericho highland tea", "100 tea bags, strong and bright", 350, "tea"),
        Product("kikoy", "Mombasa kikoy", "Hand-woven cotton, 100 × 170 cm", 2800, "kikoy"),
    )
}


def demo_shop_key() -> ApiKey:
    """The shop's own merchant key row, created on first use (its secret is never kept)."""
    key = db.session.scalar(
        select(ApiKey)
        .where(ApiKey.name == DEMO_SHOP_KEY_NAME, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.id)
        .limit(1)
    )
    if key is None:
        key, _plain = create_api_key(DEMO_SHOP_KEY_NAME)
    return key


def buy(product_id: str) -> Order:
    """Create a pending order for one product, exactly as a merchant's server would."""
    product = PRODUCTS.get(product_id)
    if product is None:
        raise NotFound("No such product.", code="product_not_found")
    ensure_demo_endpoint()
    order, _created = create_order(
        demo_shop_key(), {"amount": product.amount, "description": product.name}
    )
    return order


# -- fulfilment: the reference webhook integration ---------------------------------------

WEBHOOK_PATH = "/shop/webhooks"


def demo_endpoint_url() -> str:
    return current_app.config["PUBLIC_BASE_URL"] + WEBHOOK_PATH


def demo_endpoint() -> WebhookEndpoint | None:
    return db.session.scalar(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.url == demo_endpoint_url(), WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.created_at)
        .limit(1)
    )


def ensure_demo_endpoint() -> WebhookEndpoint:
    """The shop registers its own endpoint for `order.paid`, like any merchant would."""
    return demo_endpoint() or create_endpoint(demo_endpoint_url(), ["order.paid"], "demo shop")


def receive_webhook(body: bytes, signature_header: str | None) -> str:
    """The documented recipe (docs/webhooks.md): verify the signature with our endpoint's
    secret (or the previous one during a rotation), de-duplicate, fulfil on `order.paid`
    only. Returns what happened; raises Forbidden for a bad signature."""
    endpoint = demo_endpoint()
    secrets = [endpoint.secret, endpoint.previous_secret] if endpoint else []
    if not any(s and verify(signature_header, body, s) for s in secrets):
        raise Forbidden("The webhook signature is not valid.", code="bad_signature")
    event = json.loads(body)
    if event.get("type") != "order.paid":
        return "ignored"
    order_id = event["data"]["order"]["id"]
    if db.session.get(ShopFulfilment, order_id) is not None:
        return "duplicate"  # at-least-once delivery: the same event may come again
    db.session.add(ShopFulfilment(order_id=order_id, event_id=event["id"]))
    try:
        db.session.commit()
    except IntegrityError:  # two copies at once: the other one fulfilled it
        db.session.rollback()
        return "duplicate"
    log.info(
        f"demo shop fulfilled {event['data']['order']['number']}",
        extra={"event": "shop.fulfilled", "order_id": order_id, "event_id": event["id"]},
    )
    return "fulfilled"


def fulfilment(order_id: str) -> ShopFulfilment | None:
    return db.session.get(ShopFulfilment, order_id)


def from_demo_shop(order: Order) -> bool:
    key = db.session.get(ApiKey, order.api_key_id) if order.api_key_id else None
    return key is not None and key.name == DEMO_SHOP_KEY_NAME
