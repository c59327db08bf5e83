"""Logging never blocks a worker (paymentapp/logwriter.py): lines go to a bounded queue
that one real OS thread writes; when the reader stalls, lines are dropped and counted,
never waited for; what is queued is written at exit."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import time

import pytest
import requests

from paymentapp.logwriter import LineWriter, ThreadedStreamHandler
from tests import services
from tests.helpers import base_env

DROPPED = re.compile(r"paymentapp: (\d+) log lines dropped \(log queue full\)")


class StalledPipe:
    """A pipe nobody reads yet: writes to it block once its buffer (64 KiB) is full."""

    def __init__(self):
        read_fd, write_fd = os.pipe()
        self.reader = os.fdopen(read_fd, "r")
        self.stream = os.fdopen(write_fd, "w")
        self.text: list[str] = []
        self._thread = None

    def start_reading(self) -> None:
        self._thread = threading.Thread(target=lambda: self.text.extend(self.reader))
        self._thread.start()

    def read_so_far(self) -> str:
        return "".join(self.text)

    def close(self) -> str:
        self.stream.close()
        self._thread.join(10)
        self.reader.close()
        return "".join(self.text)


def test_a_stalled_reader_never_blocks_the_logger_lines_are_dropped_and_counted():
    pipe = StalledPipe()
    writer = LineWriter(limit=500)
    handler = logging.StreamHandler(pipe.stream)
    line = "x" * 99 + "\n"  # 100 bytes: 64 KiB of pipe holds ~650 of them
    total = 5_000
    for number in range(total):  # would hang here if a put waited for the pipe
        writer.put(handler, f"{number:05d}{line}")
    assert writer.dropped_total > 0
    assert writer.queued + writer.dropped_total == total

    pipe.start_reading()
    writer.flush()
    assert writer.handled == writer.queued
    text = pipe.close()
    numbers = [int(row[:5]) for row in text.splitlines() if not DROPPED.search(row)]
    assert numbers == sorted(numbers) and len(numbers) == writer.queued  # in order, none lost
    said = sum(int(m.group(1)) for m in DROPPED.finditer(text))
    assert said == writer.dropped_total  # and the log itself says how many went


def test_the_app_logs_through_the_thread_and_flush_waits_for_the_write(app, log_output):
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, ThreadedStreamHandler)]
    assert len(handlers) == 1
    logging.getLogger("paymentapp.test").warning("written by the log thread")
    assert "written by the log thread" in log_output.getvalue()  # getvalue flushes first


def test_dropped_lines_are_counted_on_metrics(client):
    def dropped() -> float:
        body = client.get("/metrics").get_data(as_text=True)
        match = re.search(r"^paymentapp_log_lines_dropped_total (\S+)$", body, re.M)
        assert match, body
        return float(match.group(1))

    before = dropped()
    pipe = StalledPipe()
    writer = LineWriter(limit=100)
    handler = logging.StreamHandler(pipe.stream)
    for _ in range(2_000):
        writer.put(handler, "y" * 200 + "\n")
    assert writer.dropped_total > 0
    assert dropped() == before + writer.dropped_total
    pipe.start_reading()
    writer.flush()
    pipe.close()


@pytest.mark.e2e
def test_a_gunicorn_worker_keeps_serving_while_its_log_is_stalled(tmp_path):
    """INFO logging and the access log on, stderr a pipe nobody reads (journald stuck): the
    worker still answers every request; the lines that did not fit are dropped and counted,
    and what was queued is written when the worker stops."""
    database_url = services.create_pg_database()
    pipe = StalledPipe()
    env = {
        **base_env(database_url),
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
        "LOG_LEVEL": "INFO",
        "ACCESS_LOG": "-",
        "LOG_QUEUE_LINES": "100",
    }
    try:
        services.flask_cli(env, "db", "upgrade")
        server = services.Gunicorn(env, workers=1)
        server.proc = subprocess.Popen(
            services.GUNICORN,
            cwd=services.ROOT,
            env=server.env,
            stdout=pipe.stream,
            stderr=pipe.stream,
        )
        services.wait_http(server.url + "/healthz", timeout=30)
        session = requests.Session()
        for _ in range(1_500):  # ~200 bytes of access log each: far more than the pipe holds
            assert session.get(server.url + "/healthz", timeout=10).status_code == 200
        metrics = session.get(server.url + "/metrics", timeout=10).text
        dropped = re.search(r"^paymentapp_log_lines_dropped_total (\S+)$", metrics, re.M)
        assert dropped and float(dropped.group(1)) > 0, metrics
        pipe.start_reading()  # the reader is back: the queue drains, new lines go through

        def a_new_line_went_through() -> bool:
            # a request made while the queue is still full has its line dropped: ask again
            assert session.get(server.url + "/healthz?after=stall", timeout=10).ok
            return '"GET /healthz?after=stall HTTP/1.1" 200' in pipe.read_so_far()

        services.wait_for(a_new_line_went_through, "a line after the stall", interval=0.2)
        session.close()
        server.stop()  # SIGTERM: the worker flushes its queue as it exits
        log = pipe.close()
    finally:
        server.stop()
        services.drop_pg_database(database_url)
    assert DROPPED.search(log), log[-2000:]
    assert '"GET /healthz?after=stall HTTP/1.1" 200' in log
    assert "Worker exiting" in log


def test_first_lines_from_several_threads_start_one_writer_and_lose_none():
    """Handlers queue without a lock: threads whose first lines race (a new process, or
    the first lines after a fork) still start exactly one writer thread, and every line
    is written."""
    pipe = StalledPipe()
    pipe.start_reading()
    writer = LineWriter()
    handler = logging.StreamHandler(pipe.stream)
    started = []
    real_start = writer._start

    def slow_start():  # every racing thread would be in here at once, unless locked out
        started.append(1)
        time.sleep(0.05)
        real_start()

    writer._start = slow_start
    threads, lines = 8, 200
    ready = threading.Barrier(threads)

    def log_lines(thread: int) -> None:
        ready.wait()
        for number in range(lines):
            writer.put(handler, f"{thread}-{number}\n")

    workers = [threading.Thread(target=log_lines, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    writer.flush()
    written = pipe.close().splitlines()
    assert len(started) == 1
    assert sorted(written) == sorted(f"{t}-{n}" for t in range(threads) for n in range(lines))
