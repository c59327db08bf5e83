"""The production entry point: real gunicorn with gunicorn.conf.py and gevent workers."""

import io
import json
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
            assert health.json() == {"status": "ok", "db": "ok", "redis": "ok", "assets": "ok"}
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


def _open_files_limit(pid: int) -> int:
    """The soft 'Max open files' of a running process."""
    from pathlib import Path

    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files line")


@pytest.mark.e2e
def test_workers_may_open_a_file_per_connection(tmp_path):
    """With a low `ulimit -n`, gunicorn.conf.py raises the workers' open-files limit to
    WORKER_CONNECTIONS plus room for the database, Redis and logs (up to the hard limit)."""
    import resource
    import subprocess

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    connections = 3000
    # what gunicorn.conf.py asks for, capped by the hard limit it may not pass
    expected = connections + 1024
    if hard != resource.RLIM_INFINITY:
        expected = min(expected, hard)
    env = {**base_env(f"sqlite:///{tmp_path}/app.db"), "WORKER_CONNECTIONS": str(connections)}
    env["PAYMENTAPP_INSTANCE_PATH"] = str(tmp_path)
    # a low soft limit, inherited by gunicorn
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, expected - 1), hard))
    try:
        with services.Gunicorn(env, workers=2) as server:
            workers = subprocess.run(
                ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True
            ).stdout.split()
            assert len(workers) == 2
            for pid in workers:
                assert _open_files_limit(int(pid)) == expected
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.e2e
def test_gunicorn_listens_where_dotenv_says_and_the_environment_wins(tmp_path):
    """PORT, HOST, WEB_CONCURRENCY and LOG_LEVEL from a `.env` (here a temporary
    project's, named by PAYMENTAPP_DOTENV) reach gunicorn.conf.py as they reach the app;
    what the real environment sets wins."""
    port = services.free_port()
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        f"PORT={port}\nHOST=127.0.0.1\nWEB_CONCURRENCY=3\nLOG_LEVEL=Info\n"
        f"PAYMENTAPP_INSTANCE_PATH={tmp_path}\nDATABASE_URL=sqlite:///{tmp_path}/app.db\n"
    )
    env = {
        **base_env(f"sqlite:///{tmp_path}/app.db"),
        "PAYMENTAPP_DOTENV": str(dotenv),
        # from `.env`, not from the environment (None unsets what Gunicorn would set)
        "PORT": None,
        "HOST": None,
        "PUBLIC_BASE_URL": None,
        "DATABASE_URL": None,
        "PAYMENTAPP_INSTANCE_PATH": None,
        "WEB_CONCURRENCY": "2",  # the environment wins over `.env`'s 3
    }
    services.flask_cli(env, "db", "upgrade")
    assert (tmp_path / "app.db").exists()  # the CLI read `.env` too
    with services.Gunicorn(env, port=port) as server:
        assert requests.get(server.url + "/healthz", timeout=5).json()["db"] == "ok"
        # the app took `.env`'s PORT too: its own address is an allowed origin
        assert requests.get(server.url + "/realtime/origin", timeout=5).json()["allowed"]
    log = server.log()
    assert f"Listening at: http://127.0.0.1:{port}" in log
    assert len(re.findall(r"Booting worker with pid", log)) == 2
    assert "Traceback" not in log


@pytest.mark.e2e
def test_python_wsgi_py_serves_at_host_and_port(tmp_path):
    """`python wsgi.py` (one process, no gunicorn) once always took 127.0.0.1:5000."""
    import subprocess
    import sys

    port = services.free_port()
    env = {
        **base_env(f"sqlite:///{tmp_path}/app.db"),
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    services.flask_cli(env, "db", "upgrade")
    log = tmp_path / "wsgi.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "wsgi.py"],
            cwd=services.ROOT,
            env=services.process_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        services.wait_http(f"http://127.0.0.1:{port}/healthz")
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.json()["db"] == "ok", log.read_text()
    finally:
        proc.terminate()
        proc.wait(15)


def test_each_connection_reads_through_a_small_buffer():
    """gunicorn.conf.py's handler gives every connection a read buffer of RFILE_BUFFER
    bytes instead of pywsgi's 8 KiB (memory every open dialog holds)."""
    import socket
    import sys

    conf = _gunicorn_conf()
    ours, theirs = socket.socketpair()
    try:
        handler = conf.RedactingWebSocketHandler(ours, ("127.0.0.1", 1), server=None)
        default = ours.makefile("rb", -1)
        # a BufferedReader's size counts its buffer
        assert sys.getsizeof(default) - sys.getsizeof(handler.rfile) == (
            io.DEFAULT_BUFFER_SIZE - conf.RFILE_BUFFER
        )
        default.close()
        handler.rfile.close()
    finally:
        ours.close()
        theirs.close()


@pytest.mark.e2e
def test_requests_and_frames_longer_than_the_read_buffer(tmp_path):
    """Through gunicorn: a callback whose headers and body are each several times the read
    buffer is stored byte for byte and applied, the keep-alive connection's next request is
    read intact, and a socket frame of several buffers is answered in full."""
    import psycopg

    from tests import e2e

    conf = _gunicorn_conf()
    with e2e.running_stack(tmp_path) as stack:
        order = e2e.create_order(stack, 100)
        checkout_id = e2e.start_payment(stack, order)
        watcher = e2e.Watcher(stack.url)
        try:
            many = [{"order_id": order["id"], "token": order["client_token"]}] * 30
            frame = json.dumps(many)
            assert len(frame) > 3 * conf.RFILE_BUFFER
            answer = watcher.sio.call("subscribe_many", many, timeout=e2e.WAIT_S)
            assert [r["ok"] for r in answer["results"]] == [True] * 30

            body = e2e.callback_body(checkout_id, 0, 100)
            body["Body"]["stkCallback"]["ResultDesc"] = "processed successfully " * 200
            raw = json.dumps(body).encode()
            assert len(raw) > 4 * conf.RFILE_BUFFER
            padding = {"X-Padding": "p" * (3 * conf.RFILE_BUFFER)}
            response = stack.http.post(
                e2e.callback_url(stack),
                data=raw,
                headers={"Content-Type": "application/json", **padding},
                timeout=10,
            )
            assert response.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
            assert watcher.wait_for(order["id"], order_status="paid")["order_status"] == "paid"
            # the same keep-alive connection, after a body that ended mid-buffer
            status = stack.http.get(
                f"{stack.url}/api/orders/{order['id']}/status",
                headers={"X-Order-Token": order["client_token"], **padding},
                timeout=10,
            )
            assert status.json()["order_status"] == "paid"
        finally:
            watcher.close()
        url = services.psycopg_url(stack.env["DATABASE_URL"])
        with psycopg.connect(url) as conn:
            stored = conn.execute(
                "SELECT body FROM callback_records WHERE checkout_request_id = %s",
                (checkout_id,),
            ).fetchall()
        assert stored == [(raw.decode(),)]


def _gunicorn_conf():
    """gunicorn.conf.py, loaded by its path as gunicorn loads it."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_each_worker_opens_its_database_pool_before_it_serves(tmp_path):
    """`database.open_pool` from `post_worker_init`: every worker holds its DB_POOL_SIZE
    connections from the start, not opened one by one under the first burst of
    subscribes (a restart's reconnecting dialogs)."""
    import psycopg

    url = services.create_pg_database()
    try:
        env = {
            **base_env(url),
            "REDIS_URL": services.require_redis(),
            "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
            "DB_POOL_SIZE": "3",
        }
        services.flask_cli(env, "db", "upgrade")
        with (
            services.Gunicorn(env, workers=2),
            psycopg.connect(
                services.psycopg_url(url),
                autocommit=True,  # pg_stat_activity is read once per transaction
            ) as pg,
        ):

            def backends() -> int:
                return pg.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()[0]

            # the health check that told us gunicorn was up used one of them
            services.wait_for(lambda: backends() == 6, timeout=10, what="2 × 3 connections")
            assert backends() == 6
    finally:
        services.drop_pg_database(url)


@pytest.mark.e2e
def test_the_configuration_serves_an_app_that_is_not_paymentapp(tmp_path):
    """gunicorn.conf.py's hooks leave another app alone (the bench's floor is a bare
    Flask-SocketIO app served with this configuration): no database pool to open."""
    (tmp_path / "plain.py").write_text(
        "from flask import Flask\napp = Flask(__name__)\napp.get('/healthz')(lambda: 'plain')\n"
    )
    app = ["--pythonpath", str(tmp_path), "plain:app"]
    with services.Gunicorn({"PAYMENTAPP_INSTANCE_PATH": str(tmp_path)}, app=app) as server:
        assert requests.get(server.url + "/healthz", timeout=5).text == "plain"
    assert "Traceback" not in server.log()
