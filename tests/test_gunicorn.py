"""The production entry point: real gunicorn with gunicorn.conf.py and gevent workers."""

import re

import pytest
import requests

from tests import services
from tests.helpers import base_env


@pytest.mark.e2e
def test_gunicorn_serves_with_two_gevent_workers(tmp_path):
    url = services.create_pg_database()
    redis_url = services.require_redis()
    try:
        env = {**base_env(url), "REDIS_URL": redis_url, "PAYMENTAPP_INSTANCE_PATH": str(tmp_path)}
        services.flask_cli(env, "db", "upgrade")
        with services.Gunicorn(env, workers=2) as server:
            health = requests.get(server.url + "/healthz", timeout=5)
            assert health.json() == {"status": "ok", "db": "ok", "redis": "ok"}
            token_url = f"{server.url}/api/orders/ord_x/status?token=secret-client-token"
            assert requests.get(token_url, timeout=5).status_code == 403
            requests.post(f"{server.url}/callbacks/stk/{env['MPESA_CALLBACK_TOKEN']}", timeout=5)
        log = server.log()
        assert len(re.findall(r"Booting worker with pid", log)) == 2
        assert "MonkeyPatchWarning" not in log
        assert "Traceback" not in log
        # secrets never reach the access log
        assert "secret-client-token" not in log
        assert env["MPESA_CALLBACK_TOKEN"] not in log
    finally:
        services.drop_pg_database(url)
