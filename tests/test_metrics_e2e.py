"""`/metrics` across processes: real gunicorn (2 gevent workers), a command-line process,
PostgreSQL and Redis. One scrape, whichever worker answers it, adds up every process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import services
from tests.e2e import (
    WAIT_S,
    Watchers,
    callback_body,
    callback_url,
    create_order,
    running_stack,
    start_payment,
)
from tests.helpers import METRICS_TOKEN, base_env, samples, value

pytestmark = pytest.mark.e2e


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


STALE = f"counter_{dead_pid()}.db"  # left by a process that is gone
RUNNING = f"counter_{os.getpid()}.db"  # left by one still running (a reconciler, say)


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory):
    """The operator's PROMETHEUS_MULTIPROC_DIR, with files left by an earlier run."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    from paymentapp.metrics import DARAJA_ERRORS

    path = tmp_path_factory.mktemp("metrics")
    (path / STALE).write_bytes(b"")
    running = MmapedDict(str(path / RUNNING))
    key = mmap_key(
        "paymentapp_daraja_errors",
        "paymentapp_daraja_errors_total",
        ["endpoint", "kind"],
        ["stkquery", "unavailable"],
        DARAJA_ERRORS._documentation,
    )
    running.write_value(key, 3.0, 0.0)
    running.close()
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, metrics_dir):
    """The stack with that metrics directory, shared with its CLI commands."""
    with running_stack(
        tmp_path_factory.mktemp("instance"),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        METRICS_TOKEN=METRICS_TOKEN,
    ) as running:
        yield running


def scrape_text(stack) -> str:
    """One scrape on a connection of its own (so either worker may answer it)."""
    response = requests.get(
        stack.url + "/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}", "Connection": "close"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.text


def sockets_by_pid(text: str) -> dict[int, float]:
    families = text_string_to_metric_families(text)
    family = next(f for f in families if f.name == "paymentapp_socket_connections")
    return {int(s.labels["pid"]): s.value for s in family.samples if s.value}


def test_one_scrape_adds_up_both_workers_and_a_cli_process(stack):
    assert requests.get(stack.url + "/metrics", timeout=10).status_code == 401
    watchers = Watchers(stack)
    try:
        watchers.on_both_workers()
        opened: dict[int, int] = {}
        for watcher in watchers.opened:
            opened[watcher.pid] = opened.get(watcher.pid, 0) + 1
        assert len(opened) == 2

        # an STK Push from a web worker; an STK Query from `flask mpesa reconcile`
        order = create_order(stack, 75)
        start_payment(stack, order)

        def queried() -> bool:
            return "queried=1" in services.flask_cli(stack.env, "mpesa", "reconcile")

        # the payment is due for a query PAYMENT_QUERY_AFTER_S (1 s) after its push
        services.wait_for(queried, "a reconcile pass to query the payment", WAIT_S, interval=0.5)

        scrapes = [scrape_text(stack) for _ in range(6)]
        # every worker's open sockets, in one scrape, whichever worker answered it
        for text in scrapes:
            assert sockets_by_pid(text) == opened
        totals = [samples(text) for text in scrapes]
        for scraped in totals:
            stkpush = value(scraped, "paymentapp_daraja_request_seconds_count", endpoint="stkpush")
            stkquery = value(
                scraped, "paymentapp_daraja_request_seconds_count", endpoint="stkquery"
            )
            assert stkpush == 1  # counted in one web worker
            assert stkquery >= 1  # counted in the CLI process, gone since
            assert value(scraped, "paymentapp_payments", method="stk", status="pending") == 1
            assert value(scraped, "paymentapp_metrics_database_up") == 1

        # A worker killed outright: its open sockets leave the gauge (gunicorn's child_exit),
        # its counts stay in the totals.
        victim = next(iter(opened))
        os.kill(victim, signal.SIGKILL)

        def without_victim() -> str | None:
            text = scrape_text(stack)
            return None if victim in sockets_by_pid(text) else text

        after = services.wait_for(
            without_victim, "the killed worker's sockets to leave the gauge", WAIT_S, 0.2
        )
        assert {pid: n for pid, n in opened.items() if pid != victim} == sockets_by_pid(after)
        scraped = samples(after)
        assert value(scraped, "paymentapp_daraja_request_seconds_count", endpoint="stkpush") == 1
    finally:
        watchers.close()
    log = stack.server.log()
    assert "Traceback" not in log and "MonkeyPatchWarning" not in log


def test_the_operators_directory_keeps_only_running_processes_files(stack, metrics_dir):
    left = {p.name for p in metrics_dir.iterdir()}
    assert RUNNING in left and STALE not in left
    # the running process's counts are in every scrape
    errors = value(
        samples(scrape_text(stack)),
        "paymentapp_daraja_errors_total",
        endpoint="stkquery",
        kind="unavailable",
    )
    assert errors == 3


def test_callbacks_handled_by_either_worker_add_up(stack):
    """Callbacks posted at once on connections of their own, so whichever worker takes
    each; one scrape counts them all."""

    def handled(scraped) -> float:
        return sum(
            v for (name, _), v in scraped.items() if name == "paymentapp_callback_seconds_count"
        )

    before = handled(samples(scrape_text(stack)))
    posted = 8

    def post(_) -> int:
        body = callback_body(f"ws_CO_{uuid.uuid4().hex[:12]}", 1032)  # matches no payment
        headers = {"Connection": "close"}
        return requests.post(callback_url(stack), json=body, headers=headers, timeout=10)

    with ThreadPoolExecutor(4) as pool:
        for response in pool.map(post, range(posted)):
            assert response.status_code == 200, response.text
    assert handled(samples(scrape_text(stack))) - before == posted


def test_without_the_variable_gunicorn_makes_a_directory_and_removes_it(tmp_path):
    env = base_env(
        f"sqlite:///{tmp_path}/app.db",
        PAYMENTAPP_INSTANCE_PATH=str(tmp_path),
        PROMETHEUS_MULTIPROC_DIR="",  # unset, whatever the developer's environment says
        GUNICORN_CMD_ARGS="--graceful-timeout 2",
    )
    server = services.Gunicorn(env)
    before = len(server.log())  # the log file is per port and appended to
    with server:
        log = server.wait_log("metrics: PROMETHEUS_MULTIPROC_DIR=", after=before)
        found = re.search(r"metrics: PROMETHEUS_MULTIPROC_DIR=(\S+)", log)
        assert found, log
        path = found.group(1)
        assert os.path.isdir(path)
        response = requests.get(server.url + "/metrics", timeout=10)  # simulator mode: open
        assert response.status_code == 200
        assert "paymentapp_socket_connections{pid=" in response.text
    assert not os.path.exists(path)
