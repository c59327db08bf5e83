"""Pay by QR (docs/dialog.md, "Pay by QR"): a Daraja Dynamic QR that pays the order's
amount due to the Paybill with the order number as the account, for a shopper on a
computer with their phone in hand.

The M-Pesa app pays it as an ordinary Paybill payment, whose C2B confirmation is believed
to carry the QR's `RefNo` as its `BillRefNumber` (docs/daraja.md), so it matches and pays
the order like any Paybill payment; one that came without it would wait in the review
queue's unmatched Paybill payments, as today. A till (`CustomerBuyGoodsOnline`) takes no
account number, so there is no QR for one.

Each image is asked of Daraja once per order and amount due, and kept (in Redis when
`REDIS_URL` is set, else in this process) until the order would expire; the route is
rate-limited per client address (`QR_RATE_LIMIT`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from threading import Lock

from flask import current_app

from ..errors import Conflict, NotFound
from ..models import Order, OrderStatus
from ..mpesa.client import DarajaError, get_client
from ..mpesa.qr import qr_offered
from ..redis_client import redis_client
from .services import upstream_error

log = logging.getLogger(__name__)

LOCAL_MAX = 256  # images kept by a process without Redis
_local: OrderedDict[str, bytes] = OrderedDict()
_local_lock = Lock()


def qr_png(order: Order) -> bytes:
    """The QR that pays what `order` still owes (a PNG)."""
    config = current_app.config
    if not qr_offered(config):
        raise NotFound("Pay by QR is not offered here.", code="qr_unavailable")
    if order.status != OrderStatus.PENDING or order.amount_due <= 0:
        raise Conflict("This order is not waiting for a payment.", code="order_not_payable")
    key = f"paymentapp:qr:{order.id}:{order.amount_due}"
    image = _cached(key)
    if image is None:
        try:
            image = get_client().paybill_qr(
                merchant_name=config.get("MPESA_QR_MERCHANT_NAME") or "M-Pesa checkout",
                paybill=config["MPESA_C2B_SHORTCODE"],
                account=order.number,
                amount=order.amount_due,
                size=config.get("MPESA_QR_SIZE", 300),
            )
        except DarajaError as exc:
            raise upstream_error(exc) from None
        _keep(key, image, ttl_s=max(60, int(config.get("PAYMENT_EXPIRE_AFTER_S", 180)) * 2))
    return image


def _cached(key: str) -> bytes | None:
    redis = redis_client()
    if redis is not None:
        try:
            return redis.get(key)
        except Exception:  # noqa: BLE001 - a cache: ask Daraja instead
            return None
    with _local_lock:
        image = _local.get(key)
        if image is not None:
            _local.move_to_end(key)
        return image


def _keep(key: str, image: bytes, ttl_s: int) -> None:
    redis = redis_client()
    if redis is not None:
        try:
            redis.set(key, image, ex=ttl_s)
        except Exception:  # noqa: BLE001 - a cache: the next request asks again
            log.warning("a QR code could not be cached", extra={"event": "qr.cache_failed"})
        return
    with _local_lock:
        _local[key] = image
        while len(_local) > LOCAL_MAX:
            _local.popitem(last=False)
