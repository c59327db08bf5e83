"""A webhook delivery worker SIGKILLed mid-delivery: the claim expires, and the event is
delivered again by the next worker (at least once, never lost)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests import services
from tests.helpers import base_env
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e


def test_worker_killed_mid_delivery_is_redelivered_after_the_claim_expires(tmp_path):
    database = services.create_pg_database()
    env = {
        **base_env(database),
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
        "SOCKETIO_CHANNEL": f"wh-{uuid.uuid4().hex}",
    }
    try:
        services.flask_cli(env, "db", "upgrade")
        api_key = services.flask_cli(env, "apikey", "create", "wh").strip().splitlines()[-1]
        with Receiver() as hung, services.Gunicorn(env) as server:
            hung.delay_s = 60  # holds the first delivery until its worker is killed
            services.flask_cli(env, "webhooks", "add", hung.url, "--events", "order.created")
            import requests

            created = requests.post(
                server.url + "/api/orders",
                json={"amount": 42},
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=10,
            )
            assert created.status_code == 201
            worker = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "webhooks", "deliver", "--loop"],
                cwd=services.ROOT,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                services.wait_for(lambda: hung.received, "the first delivery", timeout=30)
            finally:
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait(10)
            hung.delay_s = 0
            # a new worker, once the dead one's claim (60 s) has expired; the test moves
            # the clock rather than waiting: the claim is pushed into the past
            from sqlalchemy import create_engine, text

            engine = create_engine(env["DATABASE_URL"])
            with engine.begin() as conn:
                claimed = conn.execute(
                    text("select count(*) from webhook_deliveries where claimed_until > now()")
                ).scalar_one()
                assert claimed == 1  # the dead worker's claim is still there
                conn.execute(
                    text("update webhook_deliveries set claimed_until = now() - interval '1 s'")
                )
            out = services.flask_cli(env, "webhooks", "deliver")
            assert "succeeded=1" in out
            with engine.connect() as conn:
                status = conn.execute(text("select status from webhook_deliveries")).scalar_one()
            engine.dispose()
            assert status == "succeeded"
            ids = hung.event_ids()
            assert len(ids) == 2 and ids[0] == ids[1]  # the same event, at least once
    finally:
        services.drop_pg_database(database)
