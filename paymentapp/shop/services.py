"""Demo shop rules: a tiny catalogue and orders created through the orders service."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..errors import NotFound
from ..extensions import db
from ..models import ApiKey, Order
from ..orders.services import create_order
from ..security import create_api_key

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
    order, _created = create_order(
        demo_shop_key(), {"amount": product.amount, "description": product.name}
    )
    return order
