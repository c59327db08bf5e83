"""The Daraja client against the real HTTP simulator: tokens, password, errors, retries."""

import base64
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from paymentapp.mpesa import client as daraja
from paymentapp.simulator.models import sim_tokens
from tests import services


def token_count(db) -> int:
    return db.session.scalar(select(func.count()).select_from(sim_tokens))


def push(app, phone="254712345678", reference="ORD-1"):
    return daraja.DarajaClient(app.config).stk_push(
        amount=10, phone=phone, reference=reference, description="Pay ORD-1"
    )


def test_timestamp_is_east_africa_time_and_password_matches_daraja():
    assert daraja.eat_timestamp(datetime(2021, 6, 28, 6, 24, 8, tzinfo=UTC)) == "20210628092408"
    password = daraja.stk_password("174379", "passkey", "20210628092408")
    assert base64.b64decode(password).decode() == "174379passkey20210628092408"


def test_one_token_is_reused_across_calls(app, live_server, db):
    push(app, "254712345671")
    push(app, "254712345672")
    daraja.DarajaClient(app.config).stk_query(live_server.prompts()[0]["checkout_request_id"])
    assert token_count(db) == 1


def test_token_revoked_mid_flight_is_refreshed_once(app, live_server, db):
    push(app, "254712345671")
    import requests

    requests.post(f"{live_server.url}/_simulator/api/tokens/revoke", timeout=5)
    accepted = push(app, "254712345672")
    assert accepted.checkout_request_id.startswith("ws_CO_")
    assert token_count(db) == 2


def test_token_refused_twice_gives_up(app, live_server):
    body = {"requestId": "1", "errorCode": "404.001.03", "errorMessage": "Invalid Access Token"}
    live_server.fault("stkpush", 401, body)
    live_server.fault("stkpush", 401, body)
    with pytest.raises(daraja.DarajaRefused, match="Invalid Access Token"):
        push(app)


def test_wrong_consumer_secret_is_an_auth_error(app, live_server):
    config = {**app.config, "MPESA_CONSUMER_SECRET": "wrong"}
    with pytest.raises(daraja.DarajaAuthError):
        daraja.DarajaClient(config).access_token()


def test_wrong_passkey_is_wrong_credentials(app, live_server):
    config = {**app.config, "MPESA_PASSKEY": "not-the-passkey"}
    with pytest.raises(daraja.DarajaAuthError, match="Wrong credentials"):
        daraja.DarajaClient(config).stk_push(
            amount=1, phone="254712345678", reference="ORD-1", description="x"
        )


def test_expires_in_as_string_or_number(app, live_server):
    live_server.fault("oauth", 200, {"access_token": "abc", "expires_in": 3599})
    client = daraja.DarajaClient({**app.config, "MPESA_CONSUMER_KEY": "number-key"})
    assert client.access_token() == "abc"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, {"errorCode": "500.003.02", "errorMessage": "Spike arrest"}, daraja.DarajaBusy),
        (500, {"errorCode": "500.003.03", "errorMessage": "Quota"}, daraja.DarajaBusy),
        (500, {"errorCode": "500.003.1001", "errorMessage": "Internal"}, daraja.DarajaUnavailable),
        (
            400,
            {"errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid Amount"},
            daraja.DarajaRefused,
        ),
        (502, "<html>bad gateway</html>", daraja.DarajaUnavailable),
        (200, "[1, 2]", daraja.DarajaUnavailable),
        (200, {"ResponseCode": "1", "ResponseDescription": "Rejected"}, daraja.DarajaRefused),
    ],
)
def test_error_answers_map_to_domain_errors(app, live_server, status, body, error):
    live_server.fault("stkpush", status, body)
    with pytest.raises(error):
        push(app)


@pytest.mark.parametrize("app_config", [{"MPESA_READ_TIMEOUT_S": 0.3}])
def test_read_timeout_on_push_is_maybe_sent(app, live_server, app_config):
    # the token first: on a busy machine its own request may take longer than 0.3 s, and a
    # timed-out token request is rightly "not sent"; this test is about the push
    daraja.DarajaClient({**app.config, "MPESA_READ_TIMEOUT_S": 10}).access_token()
    live_server.fault("stkpush", 200, {}, delay_s=1)
    with pytest.raises(daraja.DarajaUnavailable) as info:
        push(app)
    assert info.value.maybe_sent is True


def test_unreachable_daraja_is_unavailable_not_sent(app, log_output):
    port = services.free_port()
    config = {**app.config, "MPESA_BASE_URL": f"http://127.0.0.1:{port}"}
    with pytest.raises(daraja.DarajaUnavailable) as info:
        daraja.DarajaClient(config).access_token()
    assert info.value.maybe_sent is False
    # the log says why, without secrets
    line = next(li for li in log_output.getvalue().splitlines() if "daraja.unreachable" in li)
    assert "ConnectionError" in line and f"host=127.0.0.1:{port}" in line
    assert "refused" in line.lower() and "connect_timeout_s=" in line
    assert app.config["MPESA_CONSUMER_SECRET"] not in log_output.getvalue()


def test_query_being_processed_then_final(app, live_server):
    accepted = push(app)
    client = daraja.DarajaClient(app.config)
    assert client.stk_query(accepted.checkout_request_id) == daraja.QueryResult(pending=True)
    live_server.press(accepted.checkout_request_id, "cancel")
    result = client.stk_query(accepted.checkout_request_id)
    assert result.pending is False and result.result_code == 1032


def test_secrets_never_reach_the_logs(app, live_server, caplog):
    caplog.set_level("DEBUG")
    push(app)
    text = caplog.text
    for secret in (
        app.config["MPESA_CONSUMER_SECRET"],
        app.config["MPESA_PASSKEY"],
        app.config["MPESA_CALLBACK_TOKEN"],
        "254712345678",
    ):
        assert secret not in text
    assert "2547•••••678" in text


@pytest.fixture
def redis_env(app_env):
    url = services.require_redis()
    app_env["REDIS_URL"] = url
    return url


def test_token_is_shared_through_redis_and_refreshed_by_one_process(
    redis_env, app, live_server, db
):
    """Daraja kills the previous token on every request: many workers, one token."""
    import redis

    from paymentapp.redis_client import redis_client

    def worker(results):
        with app.app_context():
            # a fresh client per "process", each with its own Redis connection
            client = daraja.DarajaClient(app.config, redis.Redis.from_url(redis_env))
            results.append(client.access_token())

    # a token another test (or an earlier run) cached for this address and key would be
    # used without asking the simulator: start from none
    key = daraja.DarajaClient(app.config).tokens.key
    redis_client().delete(key, key + ":busy")
    results, barrier = [], threading.Barrier(8)
    threads = [threading.Thread(target=lambda: (barrier.wait(), worker(results))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8 and len(set(results)) == 1
    assert token_count(db) == 1
    redis_client().delete(daraja.DarajaClient(app.config).tokens.key)
