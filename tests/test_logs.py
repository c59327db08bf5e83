"""Secrets never reach the log: the callback token, `?token=`, remembered secrets."""

import logging

from paymentapp.logs import redact
from tests.helpers import TEST_CALLBACK_TOKEN


def test_every_handler_redacts_callback_paths_tokens_and_tracebacks(log_output):
    log = logging.getLogger("paymentapp.test")
    log.error("POST /callbacks/stk/%s failed", "abc-not-remembered-123")
    log.warning("GET /pay/ord_1?token=eyJhbGciOi.secret&x=1")
    log.info("some text with %s in it", TEST_CALLBACK_TOKEN)
    try:
        raise ValueError(f"http://127.0.0.1/callbacks/c2b/confirmation/{TEST_CALLBACK_TOKEN}")
    except ValueError:
        log.exception("posting a callback failed")
    err = log_output.getvalue()
    assert "abc-not-remembered-123" not in err and "/callbacks/stk/<token>" in err
    assert "eyJhbGciOi" not in err and "?token=<token>&x=1" in err
    assert TEST_CALLBACK_TOKEN not in err
    assert "/callbacks/c2b/confirmation/<token>" in err and "ValueError" in err


def test_redact_keeps_ordinary_paths():
    assert redact("GET /callbacks/stk 405") == "GET /callbacks/stk 405"
    assert redact("GET /api/orders/ord_1/status") == "GET /api/orders/ord_1/status"


def test_event_fields_are_rendered_once_masked_and_without_secrets(log_output):
    log = logging.getLogger("paymentapp.test")
    log.warning(
        "order ORD-7 payment failed",
        extra={
            "event": "payment.failed",
            "order": "ORD-7",
            "phone": "254712345678",
            "consumer_key": "never-printed-key",
            "detail": "a reason with spaces",
            "receipt": None,
            "url": f"https://shop.example/callbacks/stk/{TEST_CALLBACK_TOKEN}",
        },
    )
    log.info("no event here", extra={"order": "ORD-8"})
    lines = log_output.getvalue().splitlines()
    assert lines[0].endswith(
        "order ORD-7 payment failed | event=payment.failed order=ORD-7 phone=2547•••••678 "
        'detail="a reason with spaces" url=https://shop.example/callbacks/stk/<token>'
    )
    assert "never-printed-key" not in lines[0] and "receipt" not in lines[0]
    assert lines[1].endswith("no event here")  # fields are rendered for events only
