"""How often a customer may be prompted (docs/payments.md, "Prompt limits"): a payment link
must not become a way to keep strangers' phones busy.

- **Per phone**: no second prompt while one is open on that phone (Daraja locks the
  subscriber: `429 prompt_open`, retried after a few seconds, so a customer who cancels a
  prompt they did not ask for pays their own order at once), and none within
  `PAYMENT_PHONE_COOLDOWN_S` of one reaching it (`429 phone_busy`, for what is left of it).
- **Per order**: at most `PAYMENT_PROMPTS_PER_ORDER` prompts that reached a phone within
  `PAYMENT_PROMPT_WINDOW_S` (default 3 in 10 minutes); then `429 too_many_prompts` with
  `Retry-After`, and the dialog offers Paybill meanwhile.
- **Per client address**: `PAYMENT_ADDRESS_RATE_LIMIT` prompts started (`payments/routes.py`,
  counted by the rate limiter only when a prompt was started).

Both checks run under the order's lock (`services._create_pending`), on rows read after it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..errors import TooManyRequests
from ..extensions import db
from ..models import Payment, PaymentStatus

# How soon a dialog may try again while a prompt is open on its phone: the wait ends when
# that prompt is answered, cancelled or times out, not after a fixed time.
PROMPT_OPEN_RETRY_S = 5


def check_phone_cooldown(phone: str, now: datetime) -> None:
    """Daraja locks a subscriber while a prompt is open: don't send a second one."""
    cooldown = current_app.config.get("PAYMENT_PHONE_COOLDOWN_S", 10)
    recent = db.session.scalar(
        select(Payment)
        .where(Payment.phone == phone)
        .where(
            (Payment.status == PaymentStatus.PENDING)
            | (
                Payment.checkout_request_id.is_not(None)  # a prompt really reached the phone
                & (Payment.created_at > now - timedelta(seconds=cooldown))
            )
        )
        .order_by(Payment.created_at.desc())
        .limit(1)
    )
    if recent is None:
        return
    if recent.status == PaymentStatus.PENDING:
        raise TooManyRequests(
            "A payment prompt is already open on this phone. Answer or cancel it on the "
            "phone, then pay.",
            code="prompt_open",
            headers={"Retry-After": str(PROMPT_OPEN_RETRY_S)},
        )
    elapsed = (now - recent.created_at).total_seconds()
    wait = max(1, math.ceil(cooldown - elapsed))
    raise TooManyRequests(
        f"Please wait {wait} seconds before sending another prompt to this phone.",
        code="phone_busy",
        headers={"Retry-After": str(wait)},
    )


def check_order_prompts(order, now: datetime) -> None:
    """At most PAYMENT_PROMPTS_PER_ORDER prompts that reached a phone in the window, for
    the LOCKED order (its payments read after the lock)."""
    config = current_app.config
    most = config.get("PAYMENT_PROMPTS_PER_ORDER", 3)
    window = timedelta(seconds=config.get("PAYMENT_PROMPT_WINDOW_S", 600))
    sent = sorted(
        p.created_at
        for p in order.payments
        if p.checkout_request_id is not None and p.created_at > now - window
    )
    if len(sent) < most:
        return
    wait = max(1, math.ceil((sent[-most] + window - now).total_seconds()))
    minutes = math.ceil(wait / 60)
    raise TooManyRequests(
        f"This order has already sent {len(sent)} payment prompts in the last "
        f"{round(window.total_seconds() / 60)} minutes. Pay with Paybill, or try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}.",
        code="too_many_prompts",
        headers={"Retry-After": str(wait)},
    )
