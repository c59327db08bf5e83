"""Real services for tests: PostgreSQL, Redis, free ports, a gunicorn runner, and `wait_for`,
the one bounded polling loop of the suite.

With PAYMENTAPP_REQUIRE_SERVICES=1 (CI) a missing service fails the test instead of
skipping it, so a green run always means the real thing was exercised. Otherwise the run
ends with what it skipped, grouped by reason, and the command that would run it
(`skip_summary`, printed by tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("PAYMENTAPP_REQUIRE_SERVICES") == "1"
PG_SERVER_URL = os.environ.get(
    "PAYMENTAPP_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PAYMENTAPP_REDIS_URL", "redis://127.0.0.1:6379/0")
# Every process the suite starts reads no `.env` (a developer's own settings must not leak
# into a test): not paymentapp's loader (paymentapp/environment.py), and not the `flask`
# command's own reading of one; a test of `.env` itself names its file instead.
NO_DOTENV = {"PAYMENTAPP_DOTENV": "0", "FLASK_SKIP_DOTENV": "1"}
T = TypeVar("T")


def unavailable(reason: str, fix: str | None = None):
    """Skip, or fail when the run requires every service; `fix` is the command that
    provides it (`make services`), which the run's summary names."""
    if fix:
        reason = f"{reason}; run `{fix}`"
    if REQUIRE:
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)  # never under PAYMENTAPP_REQUIRE_SERVICES=1 (CI): failed above


# A skip reason's command, however the reason is worded ("…; run `make services`").
_FIX = re.compile(r"\brun `([^`]+)`")


def skip_summary(skipped: list) -> tuple[list[str], str | None]:
    """The skipped reports of a run as one line per reason ("23 tests skipped: PostgreSQL
    not reachable at …; run `make services`"), most first, and a last line naming the
    commands that would run them (None when no reason names one)."""
    counts: dict[str, int] = {}
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ").strip()
        if reason in ("", "Skipped"):
            reason = "no reason given"
        counts[reason] = counts.get(reason, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    # a reason may carry a whole error message: its first line says it
    lines = [f"{_tests(count)} skipped: {reason.splitlines()[0]}" for reason, count in ranked]
    fixes = {fix: None for reason, _ in ranked for fix in _FIX.findall(reason)}
    fixable = sum(count for reason, count in ranked if _FIX.search(reason))
    if not fixes:
        return lines, None
    commands = " && ".join(fixes)
    tests = "test" if fixable == 1 else "tests"
    return lines, f"To run the {fixable} skipped {tests}: `{commands}`, then `make test`"


def _tests(count: int) -> str:
    return f"{count} test{'' if count == 1 else 's'}"


def psycopg_url(url: str) -> str:
    """A SQLAlchemy `postgresql+psycopg://` URL as psycopg itself takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_available(url: str = PG_SERVER_URL) -> bool:
    import psycopg

    try:
        with psycopg.connect(psycopg_url(url), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def create_pg_database(server_url: str = PG_SERVER_URL) -> str:
    """Create an empty, uniquely named database on the server; return its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    if not postgres_available(server_url):
        unavailable(
            f"PostgreSQL not reachable at {make_url(server_url).render_as_string()}",
            "make services",
        )
    name = f"pa_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(psycopg_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(psycopg_url(admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_available(url: str = REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def require_redis(url: str = REDIS_URL) -> str:
    if not redis_available(url):
        unavailable(f"Redis not reachable at {url}", "make services")
    return url


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], T],
    what: str = "the condition",
    timeout: float = 10.0,
    interval: float = 0.05,
    before: Callable[[], object] | None = None,
) -> T:
    """Call `predicate()` until it returns something truthy, and return that; fail the test
    after `timeout` seconds. The one polling loop of the suite.

    `before` runs ahead of every try: `before=db.session.expire_all` lets the test's own
    session see what other threads and processes committed.
    """
    deadline = time.monotonic() + timeout
    while True:
        if before is not None:
            before()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Wait until something answers HTTP at `url` (any status)."""

    def answers() -> bool:
        try:
            requests.get(url, timeout=1)
        except requests.RequestException:
            return False
        return True

    wait_for(answers, f"{url} to answer", timeout, interval=0.1)


def process_env(env: dict) -> dict:
    """A child process's environment: this one's, no `.env`, then `env` (None unsets)."""
    merged = {**os.environ, **NO_DOTENV, **env}
    return {key: value for key, value in merged.items() if value is not None}


GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


class Gunicorn:
    """A real `gunicorn -c gunicorn.conf.py wsgi:app` on a free loopback port (`env` may
    unset PORT, HOST, ... with None, to have them from a `.env` file instead); `app`
    serves another WSGI app with the same configuration."""

    def __init__(
        self, env: dict, workers: int = 1, port: int | None = None, app: Sequence[str] = ()
    ):
        self.command = [*GUNICORN[:-1], *app] if app else GUNICORN
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = process_env(
            {
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
                "WEB_CONCURRENCY": str(workers),
                "PUBLIC_BASE_URL": self.url,
                **env,
            }
        )
        self.proc: subprocess.Popen | None = None
        self.log_path = ROOT / "test-artifacts" / f"gunicorn-{self.port}.log"

    def start(self) -> Gunicorn:
        self.log_path.parent.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_http(self.url + "/healthz")
        except AssertionError:
            self.stop()
            raise RuntimeError("gunicorn did not start:\n" + self.log()) from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, after: int = 0, timeout: float = 10.0) -> str:
        """The log from offset `after`, once `text` is in it. A running server writes its lines
        from a thread of its own (paymentapp/logwriter.py), a moment after the event."""
        return wait_for(
            lambda: text in self.log()[after:] and self.log()[after:],
            f"{text!r} in the server log",
            timeout,
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class RedisServer:
    """A private `redis-server` on a free port, for tests that stop, freeze or restart it."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed", "make services")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited")
            return redis_available(self.url)

        wait_for(ready, f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung Redis)."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.thaw()
        self.stop()


def flask_run(
    env: dict, *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `flask --app wsgi ...` as its own process (as a user would), whatever it answers."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=process_env(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def flask_cli(env: dict, *args: str, input: str | None = None, timeout: float = 120) -> str:
    """Run `flask --app wsgi ...`, which must succeed; returns stdout."""
    result = flask_run(env, *args, input=input, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def gunicorn_run(env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """Start gunicorn and wait for it to stop by itself (a start refused by a setting)."""
    return subprocess.run(
        GUNICORN, cwd=ROOT, env=process_env(env), capture_output=True, text=True, timeout=timeout
    )


CHROMIUM = os.environ.get("PAYMENTAPP_CHROMIUM", "/usr/bin/chromium")
# Headless in this sandbox: no GPU, no sandbox as root, and no background network calls.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> str:
    import shutil

    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        unavailable(f"Chromium not found at {CHROMIUM}", "make browsers")
    return CHROMIUM
