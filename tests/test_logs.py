"""Secrets never reach the log: the callback token, `?token=`, remembered secrets."""

import logging

from hypothesis import given
from hypothesis import strategies as st

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


FRAGMENTS = st.sampled_from(
    ["/callbacks/", "stk/", "c2b/confirmation/", "?token=", "&access_token=", "token=", "/", "?",
     "&", "#", " ", '"', "abc", "x-1", "ORD-7"]
)  # fmt: skip


@given(st.lists(FRAGMENTS | st.text(max_size=6), max_size=12).map("".join))
def test_redact_runs_each_pattern_wherever_it_could_match(text):
    """`redact` skips a pattern on text without its fixed part: the same result as running
    both patterns on every line, then hiding the remembered secrets."""
    from paymentapp.logs import _CALLBACK_PATH, _QUERY_TOKEN, _known_secrets

    expected = _QUERY_TOKEN.sub(r"\1<token>", _CALLBACK_PATH.sub(r"\1<token>", text))
    for secret in _known_secrets:
        expected = expected.replace(secret, "<secret>")
    assert redact(text) == expected


def test_a_secret_looking_field_stays_hidden_every_time(log_output):
    """Which fields are printed is decided once per name: the second line decides the same."""
    log = logging.getLogger("paymentapp.test")
    for _ in range(2):
        log.warning("x", extra={"event": "e.x", "api_token": "never-this-1", "Passkey": "nor-2"})
    text = log_output.getvalue()
    assert "never-this-1" not in text and "nor-2" not in text
    assert text.count("| event=e.x") == 2
