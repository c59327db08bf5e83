"""STK callbacks: stored first, applied once, every malformed or hostile variant handled."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from paymentapp.extensions import limiter
from paymentapp.models import CallbackRecord, Order, OrderEvent, Payment, utcnow
from paymentapp.payments.reconcile import reconcile_once
from tests.helpers import TEST_CALLBACK_TOKEN, assert_error, pay, stk_callback
from tests.services import wait_for

URL = f"/callbacks/stk/{TEST_CALLBACK_TOKEN}"
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}


def post(client, body, **kwargs):
    if not isinstance(body, str | bytes):
        body = json.dumps(body)
    return client.post(URL, data=body, content_type="application/json", **kwargs)


def records(db):
    return list(db.session.scalars(select(CallbackRecord).order_by(CallbackRecord.id)))


def test_success_marks_order_paid_with_receipt(client, make_order, make_payment, db):
    order = make_order(100)
    payment = make_payment(order)
    body = stk_callback(payment.checkout_request_id, amount=100.0, receipt="NLJ7RT61SV")
    response = post(client, body)
    assert response.status_code == 200 and response.get_json() == ACCEPTED
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    stored = db.session.get(Order, order["id"])
    assert payment.status == "completed" and payment.receipt == "NLJ7RT61SV"
    assert payment.paid_amount == 100 and payment.paid_phone == "254712345678"
    # TransactionDate 20191219102115 is East Africa Time
    assert payment.paid_at == datetime(2019, 12, 19, 7, 21, 15, tzinfo=UTC)
    assert stored.status == "paid" and stored.paid_at == payment.paid_at
    assert stored.version == 3
    [record] = records(db)
    assert record.outcome == "applied" and record.payment_id == payment.id
    assert (
        json.loads(record.body)["Body"]["stkCallback"]["CheckoutRequestID"]
        == payment.checkout_request_id
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (1032, "cancelled"),
        (1037, "timeout"),
        (1019, "timeout"),
        (1, "failed"),
        (2001, "failed"),
        (17, "failed"),
        (9999, "failed"),
    ],
)
def test_result_codes_map_to_statuses(client, make_order, make_payment, db, code, status):
    order = make_order()
    payment = make_payment(order)
    post(client, stk_callback(payment.checkout_request_id, code, desc=f"desc {code}"))
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    assert payment.status == status and payment.result_code == code
    assert payment.result_desc == f"desc {code}"
    assert db.session.get(Order, order["id"]).status == "pending"


def test_result_code_as_string_is_accepted(client, make_order, make_payment, db):
    payment = make_payment(make_order())
    post(client, stk_callback(payment.checkout_request_id, "0"))
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "completed"


# A success that does not say how much was paid completes nothing (each of these once
# marked the order paid with an amount the callback never said).
UNUSABLE_AMOUNTS = [
    -1,
    0,
    -1e308,
    1e308,
    float("inf"),
    "Infinity",
    "abc",
    "1,500",
    "",
    None,
    True,
    [100],
    {"v": 100},
    100.5,
    "100.40",
    3_000_000_000,
    "１００",
]


@pytest.mark.parametrize("amount", [*UNUSABLE_AMOUNTS, "missing"], ids=repr)
def test_success_without_a_usable_amount_completes_nothing(
    client, make_order, make_payment, db, amount
):
    order = make_order(100)
    payment = make_payment(order)
    body = stk_callback(payment.checkout_request_id, amount=amount)
    items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    if amount == "missing":
        items[:] = [item for item in items if item["Name"] != "Amount"]
    response = post(client, body)
    assert response.status_code == 200 and response.get_json() == ACCEPTED
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    assert payment.status == "pending" and payment.paid_amount is None
    assert payment.needs_review and "usable amount" in payment.review_reason
    assert payment.next_query_at <= utcnow()  # the reconciler asks STK Query next
    assert db.session.get(Order, order["id"]).status == "pending"
    [record] = records(db)
    assert record.payment_id == payment.id and record.body  # the raw body is on record


def test_flagged_success_is_completed_by_query_with_the_requested_amount(
    client, live_server, make_order, db
):
    order = make_order(150)
    payment_id = pay(client, order, "0712345678").get_json()["id"]
    prompt = live_server.prompt_for(order["number"])
    live_server.press(prompt["checkout_request_id"], "lose_callback")
    body = stk_callback(prompt["checkout_request_id"], amount="abc")
    assert post(client, body).status_code == 200
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(created_at=utcnow() - timedelta(seconds=40))
    )
    db.session.commit()
    report = reconcile_once()
    assert report.resolved == 1
    db.session.expire_all()
    payment = db.session.get(Payment, payment_id)
    assert payment.status == "completed" and payment.paid_amount == 150
    assert payment.amount_source == "query" and not payment.needs_review
    assert "confirmed by STK Query" in payment.review_note
    assert payment.order.status == "paid"
    kinds = [e.detail for e in db.session.scalars(select(OrderEvent)) if e.kind == "order_paid"]
    assert kinds and "confirmed by query" in kinds[0]


def test_a_success_with_the_right_amount_records_where_it_came_from(
    client, make_order, make_payment, db
):
    payment = make_payment(make_order(100))
    post(client, stk_callback(payment.checkout_request_id, amount="100.00"))
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    assert payment.status == "completed" and payment.paid_amount == 100
    assert payment.amount_source == "callback" and payment.order.status == "paid"


@pytest.mark.parametrize("code", ["-0", "00", "０", 0.0, "0.0", " 0", "+0", False, 10**12])
def test_only_exactly_zero_is_a_success(client, make_order, make_payment, db, code):
    order = make_order(100)
    payment = make_payment(order)
    body = stk_callback(payment.checkout_request_id, 0)
    body["Body"]["stkCallback"]["ResultCode"] = code
    assert_error(post(client, body), 400, "malformed_callback")
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "pending"
    assert db.session.get(Order, order["id"]).status == "pending"
    assert records(db)[0].outcome == "malformed"


def test_unusable_transaction_date_and_surrogates_are_stored_safely(
    client, make_order, make_payment, db
):
    payment = make_payment(make_order(100))
    body = stk_callback(payment.checkout_request_id, receipt="NLJ7\ud800X", desc="ok \udfff")
    text = json.dumps(body).replace("20191219102115", "Infinity")  # JSON escapes \\ud800
    assert "\\ud800" in text and "Infinity" in text
    assert post(client, text).status_code == 200
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    assert payment.status == "completed" and payment.receipt == "NLJ7?X"
    assert payment.result_desc == "ok ?" and payment.paid_at is not None


def test_surrogate_in_checkout_id_is_malformed(client, db):
    text = json.dumps(stk_callback("ws_CO_X")).replace("ws_CO_X", "ws_CO_\\ud800")
    assert_error(post(client, text), 400, "malformed_callback")
    assert records(db)[0].outcome == "malformed"


def test_unknown_checkout_id_is_recorded_and_accepted(client, make_order, make_payment, db):
    payment = make_payment(make_order())
    response = post(client, stk_callback("ws_CO_unknown"))
    assert response.get_json() == ACCEPTED
    [record] = records(db)
    assert record.outcome == "unknown" and record.payment_id is None
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "pending"


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"Body": {}}',
        '{"Body": {"stkCallback": "x"}}',
        '{"Body": {"stkCallback": {"ResultCode": 0}}}',
        '{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1"}}}',
        '{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": "zero"}}}',
        '{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": true}}}',
        b"\xff\xfe\x00garbage",
        '{"Body": null}',
        '{"Body": "x"}',
        '{"Body": {"stkCallback": []}}',
        "[" * 2000,
        '{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": 1e400}}}',
        '{"a": ' * 40 + "1" + "}" * 40,
    ],
    ids=lambda body: repr(body)[:40],
)
def test_malformed_callbacks_are_400_and_recorded(client, db, body):
    error = assert_error(post(client, body), 400, "malformed_callback")
    assert error["message"].startswith("Not an STK callback")
    [record] = records(db)
    assert record.outcome == "malformed" and record.detail


def test_wrong_token_is_404_and_stores_nothing(client, make_order, make_payment, db):
    payment = make_payment(make_order())
    response = client.post(
        "/callbacks/stk/wrong-token-123456", json=stk_callback(payment.checkout_request_id)
    )
    assert_error(response, 404)
    assert records(db) == []


def test_oversized_callback_is_413_and_stores_nothing(client, db):
    body = json.dumps({"Body": {"stkCallback": {"pad": "x" * 20_000}}})
    assert_error(post(client, body), 413)
    assert records(db) == []


@pytest.fixture
def only_safaricom(app_env):
    app_env["MPESA_CALLBACK_ALLOWED_IPS"] = "safaricom"


def test_a_callback_from_outside_the_allowlist_is_stored_not_applied(
    only_safaricom, client, make_order, make_payment, db
):
    """Answered as accepted (a refused body could be money lost: the published ranges
    may be incomplete), stored as untrusted, never applied on its own."""
    payment = make_payment(make_order())
    response = post(
        client,
        stk_callback(payment.checkout_request_id),
        headers={"X-Forwarded-For": "196.201.214.200"},
    )  # not trusted: 0 hops, so the address is the test client's
    assert response.status_code == 200 and response.get_json()["ResultCode"] == 0
    [record] = records(db)
    assert record.outcome == "untrusted" and "outside MPESA_CALLBACK_ALLOWED_IPS" in record.detail
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "pending"
    from paymentapp.payments.reconcile import reconcile_once

    reconcile_once()  # the reconciler never applies it either
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "pending"
    assert records(db)[0].outcome == "untrusted"


@pytest.fixture
def one_proxy(app_env):
    app_env["TRUSTED_PROXY_HOPS"] = "1"


def test_allowed_ip_behind_trusted_proxy(
    only_safaricom, one_proxy, client, make_order, make_payment, db
):
    payment = make_payment(make_order())
    spoofed = post(
        client,
        stk_callback(payment.checkout_request_id),
        headers={"X-Forwarded-For": "196.201.214.200, 10.9.9.9"},
    )
    assert spoofed.status_code == 200  # stored, untrusted: the spoofed header is not believed
    ok = post(
        client,
        stk_callback(payment.checkout_request_id),
        headers={"X-Forwarded-For": "10.9.9.9, 196.201.214.200"},
    )
    assert ok.status_code == 200
    untrusted, record = records(db)
    assert untrusted.remote_addr == "10.9.9.9" and untrusted.outcome == "untrusted"
    assert record.remote_addr == "196.201.214.200" and record.outcome == "applied"


def test_failure_then_success_ends_paid(client, make_order, make_payment, db):
    order = make_order()
    payment = make_payment(order)
    post(client, stk_callback(payment.checkout_request_id, 1037, desc="DS timeout"))
    post(client, stk_callback(payment.checkout_request_id, 0))
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "completed"
    assert db.session.get(Order, order["id"]).status == "paid"
    assert [r.outcome for r in records(db)] == ["applied", "applied"]


def test_success_then_failure_stays_paid(client, make_order, make_payment, db):
    order = make_order()
    payment = make_payment(order)
    post(client, stk_callback(payment.checkout_request_id, 0))
    version = db.session.get(Order, order["id"]).version
    post(client, stk_callback(payment.checkout_request_id, 1032))
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "completed"
    stored = db.session.get(Order, order["id"])
    assert stored.status == "paid" and stored.version == version
    assert [r.outcome for r in records(db)] == ["applied", "ignored"]


def test_success_on_a_cancelled_order_goes_to_review(client, make_order, make_payment, db):
    order = make_order()
    payment = make_payment(order)
    stored = db.session.get(Order, order["id"])
    stored.status = "cancelled"
    db.session.commit()
    post(client, stk_callback(payment.checkout_request_id))
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    assert payment.needs_review and "cancelled" in payment.review_reason
    assert db.session.get(Order, order["id"]).status == "cancelled"


def test_second_success_on_a_paid_order_goes_to_review(client, make_order, make_payment, db):
    order = make_order()
    first, second = make_payment(order), make_payment(order, phone="254722000000")
    post(client, stk_callback(first.checkout_request_id, receipt="AAA1"))
    post(client, stk_callback(second.checkout_request_id, receipt="BBB2"))
    db.session.expire_all()
    second = db.session.get(Payment, second.id)
    assert second.status == "completed" and second.needs_review
    assert "already paid" in second.review_reason


def test_ten_concurrent_duplicates_make_exactly_one_transition(
    live_server, make_order, make_payment, db
):
    order = make_order()
    payment = make_payment(order)
    version = db.session.get(Order, order["id"]).version
    body = stk_callback(payment.checkout_request_id)
    barrier, answers = threading.Barrier(10), []

    def send():
        barrier.wait()
        answers.append(requests.post(live_server.url + URL, json=body, timeout=30))

    threads = [threading.Thread(target=send) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [a.json() for a in answers] == [ACCEPTED] * 10
    outcomes = sorted(r.outcome for r in records(db))
    assert outcomes == ["applied"] + ["duplicate"] * 9
    db.session.expire_all()
    assert db.session.get(Order, order["id"]).version == version + 1
    paid_events = db.session.scalar(
        select(func.count()).select_from(OrderEvent).where(OrderEvent.kind == "order_paid")
    )
    assert paid_events == 1


def test_simulator_callback_reaches_the_app_end_to_end(client, live_server, make_order, db):
    order = make_order(250)
    assert pay(client, order, "0712345678").status_code == 202
    prompt = live_server.prompt_for(order["number"])
    answered = live_server.press(prompt["checkout_request_id"], "accept")
    stored = wait_for(
        lambda: (o := db.session.get(Order, order["id"])).status == "paid" and o,
        "the order to be paid",
        before=db.session.expire_all,
    )
    payment = stored.payments[0]
    assert payment.receipt == answered["receipt"] and payment.paid_amount == 250
    assert records(db)[0].outcome == "applied"


@pytest.mark.parametrize("app_config", [{"MPESA_READ_TIMEOUT_S": 0.5}])
def test_late_callback_for_a_push_that_timed_out_is_matched(
    client, live_server, make_order, db, app_config
):
    order = make_order(300)
    live_server.fault("stkpush", 200, {"ResponseCode": "0"}, delay_s=1.5)
    assert pay(client, order, "0712345678").status_code == 202
    post(client, stk_callback("ws_CO_neverseen", amount=300, phone=254712345678))
    db.session.expire_all()
    stored = db.session.get(Order, order["id"])
    assert stored.status == "paid"
    assert stored.payments[0].checkout_request_id == "ws_CO_neverseen"


def test_nul_characters_in_a_callback_never_cause_a_500(client, make_order, make_payment, db):
    payment = make_payment(make_order())
    bad_id = post(client, stk_callback("ws_CO_\u0000x"))
    assert_error(bad_id, 400, "malformed_callback")
    body = stk_callback(payment.checkout_request_id, receipt="NLJ7\u0000RT61SV", desc="ok\u0000")
    assert post(client, body).status_code == 200
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).receipt == "NLJ7RT61SV"


def test_a_duplicate_callback_re_sends_the_current_snapshot(
    client, make_order, make_payment, db, socket_client
):
    """The worker that applied the first copy may have died before its emit."""
    order = make_order(100)
    payment = make_payment(order)
    sock = socket_client()
    ack = sock.emit(
        "subscribe", {"order_id": order["id"], "token": order["client_token"]}, callback=True
    )
    assert ack["ok"]
    sock.get_received()
    body = stk_callback(payment.checkout_request_id)
    post(client, body)
    first = [e["args"][0] for e in sock.get_received() if e["name"] == "payment_update"]
    post(client, body)
    again = [e["args"][0] for e in sock.get_received() if e["name"] == "payment_update"]
    assert [u["order_status"] for u in first] == ["paid"]
    assert [(u["order_status"], u["version"]) for u in again] == [("paid", first[0]["version"])]
    assert [r.outcome for r in records(db)] == ["applied", "duplicate"]


@pytest.mark.parametrize(
    "app_config",
    [{"MPESA_CALLBACK_TOKENS": ["new-token-0123456789", TEST_CALLBACK_TOKEN]}],
)
def test_rotated_tokens_are_all_accepted(client, make_order, make_payment, db, app_config):
    payment = make_payment(make_order())
    old = client.post(
        URL,
        data=json.dumps(stk_callback(payment.checkout_request_id)),
        content_type="application/json",
    )
    assert old.status_code == 200
    new = client.post(
        "/callbacks/stk/new-token-0123456789",
        data=json.dumps(stk_callback(payment.checkout_request_id)),
        content_type="application/json",
    )
    assert new.status_code == 200
    wrong = client.post("/callbacks/stk/other-token-0123456789", data="{}")
    assert_error(wrong, 404, "not_found")
    assert len(records(db)) == 2


@pytest.mark.parametrize("app_config", [{"FAULTS": {"callback.apply": "raise:ws_CO_boom"}}])
def test_a_callback_that_fails_to_apply_is_stored_and_accepted_without_a_token_leak(
    client, make_order, make_payment, db, app_config, log_output
):
    """The request-level guard: stored first, then 200; the reconciler retries it."""
    make_payment(make_order(), checkout_id="ws_CO_boom")
    response = post(client, stk_callback("ws_CO_boom"))
    assert response.status_code == 200 and response.get_json() == ACCEPTED
    [record] = records(db)
    assert record.outcome == "received" and record.attempts == 1
    err = log_output.getvalue()
    assert "event=callback.apply_failed" in err and "InjectedFault" in err
    assert TEST_CALLBACK_TOKEN not in err


def test_a_later_success_with_the_amount_answers_the_flag(client, make_order, make_payment, db):
    """Found by the fuzz: the no-amount flag stayed on a payment a later callback paid."""
    order = make_order(100)
    payment = make_payment(order)
    post(client, stk_callback(payment.checkout_request_id, amount="abc", receipt="R1AAAAAAAA"))
    post(client, stk_callback(payment.checkout_request_id, amount=100, receipt="R1AAAAAAAA"))
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    assert payment.status == "completed" and not payment.needs_review
    assert "later success callback said 100 KES" in payment.review_note
    assert payment.order.status == "paid"


def test_a_later_success_with_a_wrong_amount_stays_flagged(client, make_order, make_payment, db):
    order = make_order(100)
    payment = make_payment(order)
    post(client, stk_callback(payment.checkout_request_id, amount=None))
    post(client, stk_callback(payment.checkout_request_id, amount=150))
    db.session.expire_all()
    payment = db.session.get(Payment, payment.id)
    assert payment.status == "completed" and payment.needs_review
    assert "amount mismatch" in payment.review_reason
    assert payment.order.status == "pending"


@pytest.fixture
def default_limit_dropped():
    """The limiter is one object for every app a test makes: the default limit a test's
    app gave it must not outlive the test."""
    yield
    limiter.limit_manager.set_default_limits([])


@pytest.mark.parametrize(
    "app_config", [{"RATELIMIT_DEFAULT": "2 per minute", "RATELIMIT_STORAGE_URI": "memory://"}]
)
def test_callbacks_are_never_rate_limited_even_under_a_default_limit(
    client, db, default_limit_dropped
):
    """An operator's default limit (Flask-Limiter's RATELIMIT_DEFAULT) applies to the
    app's other routes, never to Daraja's callbacks: each one is stored and answered."""
    answers = [
        post(client, stk_callback(f"ws_CO_unknown_{i}", result_code=1032)).status_code
        for i in range(4)
    ]
    assert answers == [200] * 4
    assert len(records(db)) == 4
    assert [client.get("/healthz").status_code for _ in range(3)][-1] == 429
