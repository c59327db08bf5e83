"""`/healthz` reports the database, Redis and the browser files, and answers 503 when one
is down (missing browser files: tests/test_assets.py)."""

import pytest

from tests import services


def test_healthz_ok_without_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "db": "ok",
        "redis": "disabled",
        "assets": "ok",
    }


@pytest.fixture
def redis_url():
    return services.require_redis()


def test_healthz_checks_real_redis(app_env, redis_url, request):
    app_env["REDIS_URL"] = redis_url
    client = request.getfixturevalue("client")
    assert client.get("/healthz").get_json() == {
        "status": "ok",
        "db": "ok",
        "redis": "ok",
        "assets": "ok",
    }


def test_healthz_503_when_redis_is_down(app_env, request):
    app_env["REDIS_URL"] = f"redis://127.0.0.1:{services.free_port()}/0"
    client = request.getfixturevalue("client")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "error",
        "db": "ok",
        "redis": "error",
        "assets": "ok",
    }


def test_healthz_503_when_database_is_down(app, database_url):
    from paymentapp import create_app
    from tests.helpers import base_env

    dead = f"postgresql+psycopg://postgres@127.0.0.1:{services.free_port()}/none"
    broken = create_app({"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}, env=base_env(dead))
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["db"] == "error"
