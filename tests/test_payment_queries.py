"""paymentapp/payments/queries.py: plain reads of payments."""

from __future__ import annotations

from paymentapp.payments.queries import payment_by_receipt


def test_payment_by_receipt_finds_the_one_payment_with_it(make_order, make_payment, db):
    payment = make_payment(make_order(100))
    payment.receipt = "NLJ7RT61SV"
    db.session.commit()
    assert payment_by_receipt(" nlj7rt61sv ") is payment
    assert payment_by_receipt("NLJ7RT61SX") is None
    assert payment_by_receipt("") is None and payment_by_receipt(None) is None
    assert payment_by_receipt("N" * 33) is None  # longer than any stored receipt
