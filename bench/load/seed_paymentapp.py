"""Seed paymentapp's database for the callback benchmark (run by bench/callbacks.py).

Creates N pending orders, each with one pending STK payment that has a CheckoutRequestID,
through the app's own models (so defaults and constraints are the app's), in one
transaction, and writes what the load generator needs as JSON:
`[{order_id, token, checkout_id, amount}, ...]`.

    DATABASE_URL=... SECRET_KEY=... .venv/bin/python bench/load/seed_paymentapp.py N out.json

Seeding is not what the benchmark measures: order numbers come from one bulk `nextval`,
and everything is inserted with SQLAlchemy's batched INSERTs.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def seed(count: int, tag: str) -> list[dict]:
    # isort: off
    from wsgi import app  # first: patches gevent, builds the app from the environment

    # isort: on
    from paymentapp.extensions import db
    from paymentapp.models import Order, OrderStatus, Payment, PaymentMethod, PaymentStatus, utcnow
    from paymentapp.orders.services import luhn_digit
    from paymentapp.security import make_client_token

    with app.app_context():
        values = db.session.execute(
            db.text("SELECT nextval('order_number_seq') FROM generate_series(1, :n)"),
            {"n": count},
        ).scalars()
        numbers = [f"ORD-{v}{luhn_digit(str(v))}" for v in values]
        now = utcnow()
        expires = now + timedelta(days=1)
        orders, payments = [], []
        for i, number in enumerate(numbers):
            amount = 10 + i % 90
            order = Order(
                number=number,
                amount=amount,
                description="bench",
                status=OrderStatus.PENDING,
                number_checked=True,
                expires_at=expires,
                created_at=now,
                updated_at=now,
            )
            orders.append(order)
        db.session.add_all(orders)
        db.session.flush()
        for i, order in enumerate(orders):
            payments.append(
                Payment(
                    order_id=order.id,
                    method=PaymentMethod.STK,
                    phone="254712345678",
                    amount=order.amount,
                    checkout_request_id=f"ws_CO_{tag}_{i:06d}",
                    merchant_request_id=f"29115-{tag}-{i}",
                    status=PaymentStatus.PENDING,
                    created_at=now,
                    updated_at=now,
                )
            )
        db.session.add_all(payments)
        db.session.commit()
        return [
            {
                "order_id": order.id,
                "token": make_client_token(order.id),
                "checkout_id": payment.checkout_request_id,
                "amount": order.amount,
            }
            for order, payment in zip(orders, payments, strict=True)
        ]


def main() -> None:
    count, out = int(sys.argv[1]), Path(sys.argv[2])
    tag = sys.argv[3] if len(sys.argv) > 3 else "bench"
    out.write_text(json.dumps(seed(count, tag)))


if __name__ == "__main__":
    main()
