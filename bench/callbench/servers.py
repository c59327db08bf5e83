"""The servers of the callback benchmark and their setup, each run on a fresh database.

A server name is a variant: the program (paymentapp, the floor, the Node peer) and the
environment it runs with. `paymentapp` is the production configuration (sandbox mode
against a fake Daraja, LOG_LEVEL=INFO, the gunicorn access log on); `paymentapp-warning`
is the same with the bench's old logging (WARNING, no access log); `node-pg` writes the
same lines per payment as paymentapp at INFO (PEER_LOG=1), `node-pg-quiet` none. Every
server's output goes through the same drain (procs.Server).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from base64 import urlsafe_b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests import services

from .procs import GUNICORN_WORKERS, ROOT, Server
from .sandbox import FakeDaraja, sandbox_env, seed_through_api

BENCH = ROOT / "bench"
SEED_PAYMENTAPP = BENCH / "load" / "seed_paymentapp.py"
NODE_PEER = BENCH / "peers" / "node-pg" / "server.mjs"
NODE_SCHEMA = BENCH / "peers" / "node-pg" / "schema.sql"
PROBE = BENCH / "probe"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
CALLBACK_TOKEN = "bench-callback-token-0123"
DEFAULT_WORKER_CONNECTIONS = 10_000  # gunicorn.conf.py's default
INFO = {"LOG_LEVEL": "INFO", "ACCESS_LOG": "-"}  # production: the access log on stdout
WARNING = {"LOG_LEVEL": "WARNING", "ACCESS_LOG": "/dev/null"}


@dataclass
class Setup:
    """One run's server, before it starts. `seed`, when set, runs once the server
    answers and writes `orders` (orders made through the server's own API)."""

    server: Server
    orders: Path
    callback_path: str
    check: dict | None = None
    seed: Callable[[], None] | None = None
    probe_dir: Path | None = None  # where the GC probe writes (Python servers)
    daraja: FakeDaraja | None = None  # paymentapp's fake Daraja (it counts the calls)


@dataclass(frozen=True)
class Variant:
    label: str
    program: str  # "paymentapp", "floor" or "node-pg"
    env: dict = field(default_factory=dict)


VARIANTS = {
    "paymentapp": Variant(
        "paymentapp (sandbox, INFO + access log; gunicorn, 2 gevent workers, PostgreSQL, Redis)",
        "paymentapp",
        INFO,
    ),
    "paymentapp-warning": Variant(
        "paymentapp-warning (the same, LOG_LEVEL=WARNING, no access log)", "paymentapp", WARNING
    ),
    "floor": Variant(
        "floor: bare Flask-SocketIO (same worker, 2 workers, Redis, no DB, no log lines)",
        "floor",
        WARNING,
    ),
    "node-pg": Variant(
        "node-pg: Express + socket.io + pg (1 process; paymentapp's 4 INFO lines per payment)",
        "node-pg",
        {"PEER_LOG": "1"},
    ),
    "node-pg-quiet": Variant("node-pg-quiet: the same, no log lines", "node-pg"),
}
PYTHON_PROGRAMS = ("paymentapp", "floor")


def worker_connections(dialogs: int) -> int:
    # One worker may accept every dialog (accepts are uneven): size each for all of them.
    return max(DEFAULT_WORKER_CONNECTIONS, dialogs + 1000)


def gunicorn_env(port: int, dialogs: int, probe_dir: Path, extra: dict) -> dict:
    """A gunicorn server's environment, with the GC probe (bench/probe) on its path."""
    probe_dir.mkdir(exist_ok=True)
    path = os.pathsep.join(p for p in (str(PROBE), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(GUNICORN_WORKERS),
        "WORKER_CONNECTIONS": str(worker_connections(dialogs)),
        "PYTHONPATH": path,
        "BENCH_GC_DIR": str(probe_dir),
        **extra,
    }


def flask_cli(env: dict, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def setup_paymentapp(stack, workdir: Path, dialogs: int, tag: str, variant: Variant, seeding):
    """A fresh migrated database and paymentapp in sandbox mode against a fake Daraja.
    Orders: with `seeding` "models", inserted through the app's models before the server
    starts (bench/load/seed_paymentapp.py); with "api", made with the pushes through the
    running server's API (an API key made here, `Setup.seed`)."""
    database_url = services.create_pg_database()
    stack.callback(services.drop_pg_database, database_url)
    daraja = FakeDaraja().start()  # also with "models": any Daraja call lands here, counted
    stack.callback(daraja.stop)
    app_env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": services.require_redis(),
        "SOCKETIO_CHANNEL": f"bench-{tag}",
        "SECRET_KEY": SECRET_KEY,
        "MPESA_CALLBACK_TOKEN": CALLBACK_TOKEN,
        **sandbox_env(daraja.url),
        **variant.env,
    }
    flask_cli(app_env, "db", "upgrade")
    orders = workdir / "orders.json"
    port = services.free_port()
    probe_dir = workdir / "gc"
    env = gunicorn_env(port, dialogs, probe_dir, app_env)  # with the https PUBLIC_BASE_URL
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    server = Server(variant.program, cmd, env, port, workdir, "children")
    setup = Setup(server, orders, f"/callbacks/stk/{CALLBACK_TOKEN}", probe_dir=probe_dir)
    setup.check = {"kind": "paymentapp", "url": database_url}
    setup.daraja = daraja
    if seeding == "models":
        subprocess.run(
            [sys.executable, str(SEED_PAYMENTAPP), str(dialogs), str(orders), tag],
            cwd=ROOT, env={**os.environ, **app_env}, check=True, capture_output=True,
        )  # fmt: skip
        return setup
    api_key = flask_cli(app_env, "apikey", "create", "bench", "--scopes", "orders:write")
    api_key = api_key.strip().splitlines()[-1]

    def seed() -> None:
        orders.write_text(json.dumps(seed_through_api(server.url, api_key, daraja, dialogs)))

    setup.seed = seed
    return setup


def setup_floor(stack, workdir: Path, dialogs: int, tag: str, variant: Variant, seeding):
    orders = workdir / "orders.json"
    orders.write_text(
        json.dumps(
            [
                {"order_id": f"o{tag}{i}", "token": "-", "checkout_id": f"c{i}", "amount": 10}
                for i in range(dialogs)
            ]
        )
    )
    port = services.free_port()
    extra = {
        "REDIS_URL": services.require_redis(),
        "SOCKETIO_CHANNEL": f"bench-floor-{tag}",
        **variant.env,
    }
    probe_dir = workdir / "gc"
    cmd = [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
        "--pythonpath", str(BENCH / "peers"), "floor:app",
    ]  # fmt: skip
    env = gunicorn_env(port, dialogs, probe_dir, extra)
    server = Server("floor", cmd, env, port, workdir, "children")
    return Setup(server, orders, "/cb/{order_id}", probe_dir=probe_dir)


def node_token(order_id: str) -> str:
    digest = hmac.new(SECRET_KEY.encode(), order_id.encode(), hashlib.sha256).digest()
    return urlsafe_b64encode(digest).rstrip(b"=").decode()


def setup_node(stack, workdir: Path, dialogs: int, tag: str, variant: Variant, seeding):
    database_url = services.create_pg_database()
    stack.callback(services.drop_pg_database, database_url)
    plain_url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    rows = [(f"ord_{tag}_{i}", f"ws_CO_{tag}_{i:06d}", 10 + i % 90) for i in range(dialogs)]
    with psycopg.connect(plain_url) as conn:
        conn.execute(NODE_SCHEMA.read_text())
        with (
            conn.cursor() as cur,
            cur.copy("COPY orders (id, checkout_request_id, amount) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
    orders = workdir / "orders.json"
    orders.write_text(
        json.dumps(
            [
                {"order_id": oid, "token": node_token(oid), "checkout_id": cid, "amount": amount}
                for oid, cid, amount in rows
            ]
        )
    )
    port = services.free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": plain_url,
        "BENCH_SECRET": SECRET_KEY,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
        **variant.env,
    }
    server = Server("node-pg", [node(), str(NODE_PEER)], env, port, workdir, "self")
    return Setup(
        server, orders, f"/callbacks/stk/{CALLBACK_TOKEN}", {"kind": "node-pg", "url": plain_url}
    )


SETUP = {"paymentapp": setup_paymentapp, "floor": setup_floor, "node-pg": setup_node}


def setup(name: str, stack, workdir: Path, dialogs: int, tag: str, seeding: str) -> Setup:
    variant = VARIANTS[name]
    return SETUP[variant.program](stack, workdir, dialogs, tag, variant, seeding)


def node() -> str:
    found = shutil.which("node")
    if not found:
        raise SystemExit("node is not installed (the load generator and the Node peer need it)")
    return found


def db_check(check: dict | None) -> dict:
    """After a run: how many orders the database says are paid, callbacks by outcome."""
    if check is None:
        return {}
    url = check["url"].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        paid = conn.execute("SELECT count(*) FROM orders WHERE status = 'paid'").fetchone()[0]
        outcomes = dict(
            conn.execute("SELECT outcome, count(*) FROM callback_records GROUP BY outcome")
        )
    return {"orders_paid": paid, "callback_outcomes": outcomes}
