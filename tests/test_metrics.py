"""`/metrics`: who may read it, its format, and what its numbers count (in-process registry;
the multi-worker sums are in test_metrics_e2e.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from paymentapp import metrics
from paymentapp.config import ConfigError, load_config
from paymentapp.models import (
    CallbackRecord,
    Order,
    Payment,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from paymentapp.mpesa import client as daraja
from paymentapp.outbox.events import order_snapshot
from paymentapp.webhooks.events import new_event
from tests import services
from tests.helpers import (
    LIVE,
    METRICS_TOKEN,
    TEST_CALLBACK_TOKEN,
    assert_error,
    base_env,
    change,
    samples,
    stk_callback,
    value,
)

TOKEN = METRICS_TOKEN

FAMILIES = {
    "paymentapp_callback_seconds",
    "paymentapp_callback_to_emit_seconds",
    "paymentapp_daraja_request_seconds",
    "paymentapp_daraja_errors",
    "paymentapp_socket_connections",
    "paymentapp_redis_publish_failures",
    "paymentapp_payments",
    "paymentapp_orders",
    "paymentapp_backlog",
    "paymentapp_backlog_oldest_seconds",
    "paymentapp_webhook_deliveries_pending",
    "paymentapp_metrics_database_up",
}


def scrape(client, **headers) -> dict[tuple, float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return samples(response.get_data(as_text=True))


def live_app(make_app, **env):
    """A production-mode app on the test database."""
    live = {**LIVE, "ALLOW_SQLITE_IN_PRODUCTION": "1", **env}
    live.pop("DATABASE_URL")
    return make_app(live)


# -- who may read it ---------------------------------------------------------------------------


def test_simulator_mode_without_settings_is_open_in_the_prometheus_format(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    assert response.headers["Cache-Control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert FAMILIES <= names, FAMILIES - names


def test_openmetrics_when_the_scraper_asks_for_it(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


@pytest.mark.parametrize("mode", ["sandbox", "production"])
def test_live_modes_without_settings_have_no_metrics(make_app, mode):
    client = live_app(make_app, MPESA_ENV=mode).test_client()
    assert_error(client.get("/metrics"), 404, "not_found")


def test_the_token_is_required_and_checked(make_app):
    client = live_app(make_app, METRICS_TOKEN=TOKEN).test_client()
    missing = client.get("/metrics")
    assert_error(missing, 401, "missing_token")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(client.get("/metrics", headers={"Authorization": "Basic eDp5"}), 401)
    wrong = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
    assert_error(wrong, 401, "invalid_token")
    non_ascii = client.get("/metrics", headers={"Authorization": "Bearer tökën-0123456789abcdef"})
    assert_error(non_ascii, 401, "invalid_token")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_a_token_set_in_simulator_mode_is_required_there_too(make_app):
    client = make_app({"METRICS_TOKEN": TOKEN}).test_client()
    assert_error(client.get("/metrics"), 401, "missing_token")


def test_the_address_allowlist(make_app):
    client = live_app(make_app, METRICS_ALLOWED_IPS="10.0.0.0/8, 192.0.2.7").test_client()
    for address in ("10.1.2.3", "192.0.2.7"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert_error(refused, 403, "ip_not_allowed")


def test_the_allowlist_sees_the_client_behind_trusted_proxies(make_app):
    client = live_app(make_app, METRICS_ALLOWED_IPS="10.0.0.0/8", TRUSTED_PROXY_HOPS="1")
    client = client.test_client()
    via_proxy = {"REMOTE_ADDR": "127.0.0.1"}
    ok = client.get("/metrics", environ_base=via_proxy, headers={"X-Forwarded-For": "10.9.9.9"})
    assert ok.status_code == 200
    # a client's own X-Forwarded-For entry is not believed: the proxy appends the real one
    spoofed = {"X-Forwarded-For": "10.9.9.9, 203.0.113.9"}
    assert_error(client.get("/metrics", environ_base=via_proxy, headers=spoofed), 403)


def test_with_both_settings_both_must_pass(make_app):
    client = live_app(make_app, METRICS_TOKEN=TOKEN, METRICS_ALLOWED_IPS="10.0.0.0/8")
    client = client.test_client()
    inside, outside = {"REMOTE_ADDR": "10.0.0.1"}, {"REMOTE_ADDR": "203.0.113.9"}
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/metrics", environ_base=inside, headers=good).status_code == 200
    assert_error(client.get("/metrics", environ_base=outside, headers=good), 403)
    assert_error(client.get("/metrics", environ_base=inside), 401)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN must be at least 16"),
        ({"METRICS_TOKEN": "has spaces in it 0123456789"}, "METRICS_TOKEN"),
        ({"METRICS_ALLOWED_IPS": "10.0.0.0/8,not-an-ip"}, "METRICS_ALLOWED_IPS: 'not-an-ip'"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_variable(env, says):
    with pytest.raises(ConfigError, match=says):
        load_config({**base_env("sqlite://"), **env})


def test_settings_are_parsed():
    config = load_config(
        {**base_env("sqlite://"), "METRICS_TOKEN": TOKEN, "METRICS_ALLOWED_IPS": "10.0.0.1"}
    )
    assert config["METRICS_TOKEN"] == TOKEN
    assert [str(n) for n in config["METRICS_ALLOWED_IPS"]] == ["10.0.0.1/32"]
    assert load_config(base_env("sqlite://"))["METRICS_TOKEN"] is None


# -- what it counts ----------------------------------------------------------------------------


def test_payments_orders_and_backlogs_come_from_the_database(client, db, make_order, make_payment):
    paid, waiting, _ = make_order(100), make_order(200), make_order(300)
    change(db, paid["id"], status="paid")
    due = make_payment(waiting)
    due.next_query_at = utcnow() - timedelta(seconds=40)
    make_payment(waiting).next_query_at = utcnow() + timedelta(seconds=60)
    done = make_payment(paid)
    done.status = "completed"
    old = utcnow() - timedelta(seconds=100)
    db.session.add_all(
        [
            CallbackRecord(body="{}", received_at=old),  # stored, never applied: retry due
            CallbackRecord(body="{}"),  # just arrived: not due yet
            CallbackRecord(body="{}", received_at=old, outcome="applied"),
        ]
    )
    endpoint = WebhookEndpoint(url="https://shop.example.com/hook", secret="s")
    order = db.session.get(Order, paid["id"])
    body = {"order": order_snapshot(order), "payment_id": done.id}
    event = new_event("order.paid", body, utcnow(), order)
    db.session.add_all([endpoint, event])
    db.session.flush()
    for next_attempt_at, status in [
        (utcnow() - timedelta(seconds=5), "pending"),
        (utcnow() + timedelta(hours=1), "pending"),
        (None, "succeeded"),
    ]:
        db.session.add(
            WebhookDelivery(
                event_id=event.id,
                endpoint_id=endpoint.id,
                status=status,
                next_attempt_at=next_attempt_at,
            )
        )
    db.session.commit()

    scraped = scrape(client)
    assert value(scraped, "paymentapp_payments", method="stk", status="pending") == 2
    assert value(scraped, "paymentapp_payments", method="stk", status="completed") == 1
    assert value(scraped, "paymentapp_payments", method="paybill", status="completed") == 0
    assert value(scraped, "paymentapp_orders", status="paid") == 1
    assert value(scraped, "paymentapp_orders", status="pending") == 2
    assert value(scraped, "paymentapp_orders", status="cancelled") == 0
    assert value(scraped, "paymentapp_backlog", queue="stk_query") == 1
    assert value(scraped, "paymentapp_backlog", queue="callback_retry") == 1
    assert value(scraped, "paymentapp_backlog", queue="webhook_delivery") == 1
    assert value(scraped, "paymentapp_webhook_deliveries_pending") == 2
    assert 39 <= value(scraped, "paymentapp_backlog_oldest_seconds", queue="stk_query") < 60
    # due since it turned CALLBACK_RETRY_AFTER_S (30 s) old: 70 s ago
    assert 69 <= value(scraped, "paymentapp_backlog_oldest_seconds", queue="callback_retry") < 90
    assert value(scraped, "paymentapp_metrics_database_up") == 1
    assert db.session.get(Payment, due.id).status == "pending"


def test_a_database_failure_still_answers_with_the_process_metrics(make_app, tmp_path):
    broken = make_app({"DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/x.db"})
    scraped = scrape(broken.test_client())
    assert value(scraped, "paymentapp_metrics_database_up") == 0
    assert ("paymentapp_socket_connections", ()) in scraped
    assert ("paymentapp_payments", (("method", "stk"), ("status", "pending"))) not in scraped


def test_callback_helpers_observe_and_never_raise(client):
    before = scrape(client)
    metrics.observe_callback("stk", "applied", 0.004)
    metrics.observe_callback("stk", "applied", 0.2)
    metrics.observe_callback_to_emit(0.003)
    for bad in (("stk", "applied", "soon"), ("stk", "applied", None)):
        metrics.observe_callback(*bad)  # recorded nowhere, raised nowhere
    metrics.observe_callback_to_emit("later")
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    labels = {"kind": "stk", "outcome": "applied"}
    assert grew("paymentapp_callback_seconds_count", **labels) == 2
    assert grew("paymentapp_callback_seconds_bucket", le="0.005", **labels) == 1
    assert grew("paymentapp_callback_seconds_bucket", le="0.25", **labels) == 2
    assert grew("paymentapp_callback_seconds_sum", **labels) == pytest.approx(0.204)
    assert grew("paymentapp_callback_to_emit_seconds_count") == 1
    assert grew("paymentapp_callback_to_emit_seconds_bucket", le="0.0025") == 0
    assert grew("paymentapp_callback_to_emit_seconds_bucket", le="0.005") == 1


def test_real_callbacks_are_timed_by_kind_and_outcome(client, make_order, make_payment):
    """The callback route feeds the histograms: an applied success (which emits the
    order's update), its duplicate (which re-sends the snapshot), and a malformed body."""
    payment = make_payment(make_order(100))
    url = f"/callbacks/stk/{TEST_CALLBACK_TOKEN}"
    before = scrape(client)
    body = stk_callback(payment.checkout_request_id, amount=100)
    assert client.post(url, json=body).status_code == 200
    assert client.post(url, json=body).status_code == 200
    assert client.post(url, data=b"not json", content_type="application/json").status_code == 400
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    count = "paymentapp_callback_seconds_count"
    assert grew(count, kind="stk", outcome="applied") == 1
    assert grew(count, kind="stk", outcome="duplicate") == 1
    assert grew(count, kind="stk", outcome="malformed") == 1
    assert grew("paymentapp_callback_to_emit_seconds_count") == 2  # applied + duplicate


def test_daraja_latency_and_errors_by_endpoint(app, client, live_server):
    """Against the app's own simulator over real HTTP."""
    before = scrape(client)
    accepted = daraja.DarajaClient(app.config).stk_push(
        amount=10, phone="254712345678", reference="ORD-1", description="Pay ORD-1"
    )
    daraja.DarajaClient(app.config).stk_query(accepted.checkout_request_id)
    live_server.fault("stkpush", 500, {"errorCode": "500.003.02", "errorMessage": "Spike arrest"})
    with pytest.raises(daraja.DarajaBusy):
        daraja.DarajaClient(app.config).stk_push(
            amount=10, phone="254712345679", reference="ORD-2", description="Pay ORD-2"
        )
    unreachable = {**app.config, "MPESA_BASE_URL": f"http://127.0.0.1:{services.free_port()}"}
    with pytest.raises(daraja.DarajaUnavailable):  # the token fetch fails: an oauth error only
        daraja.DarajaClient({**unreachable, "MPESA_CONSUMER_KEY": "other"}).stk_query("ws_CO_1")
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("paymentapp_daraja_request_seconds_count", endpoint="oauth") == 2  # 1 + failed
    assert grew("paymentapp_daraja_request_seconds_count", endpoint="stkpush") == 2
    assert grew("paymentapp_daraja_request_seconds_count", endpoint="stkquery") == 1
    assert grew("paymentapp_daraja_request_seconds_sum", endpoint="stkpush") > 0
    assert grew("paymentapp_daraja_errors_total", endpoint="stkpush", kind="busy") == 1
    assert grew("paymentapp_daraja_errors_total", endpoint="oauth", kind="unavailable") == 1
    assert grew("paymentapp_daraja_errors_total", endpoint="stkquery", kind="unavailable") == 0


def test_open_sockets_are_counted(client, socket_client):
    before = value(scrape(client), "paymentapp_socket_connections")
    first, second = socket_client(), socket_client()
    assert value(scrape(client), "paymentapp_socket_connections") == before + 2
    first.disconnect()
    assert value(scrape(client), "paymentapp_socket_connections") == before + 1
    second.disconnect()
    assert value(scrape(client), "paymentapp_socket_connections") == before


@pytest.fixture
def dead_redis(app_env):
    """Point the app at a Redis that is not there (before `app` is built)."""
    app_env["REDIS_URL"] = f"redis://127.0.0.1:{services.free_port()}/0"


def test_redis_publish_failures_are_counted(dead_redis, client, db, make_order):
    before = scrape(client)
    order = make_order()  # its `order_created` emit fails: Redis is not there
    change(db, order["id"])  # and these, within the pause after a failure, are skipped
    after = scrape(client)
    for reason in ("error", "skipped"):
        name = "paymentapp_redis_publish_failures_total"
        assert value(after, name, reason=reason) - value(before, name, reason=reason) >= 1
