"""`flask db upgrade` on an empty SQLite and an empty PostgreSQL gives the models' schema."""

import os
import subprocess
import sys

import pytest

from tests import services
from tests.services import ROOT

# Creates one order through the merchant API of an app built on the migrated database and
# prints its number (argv[1] is the API key).
FIRST_ORDER = """
import sys
from wsgi import app
answer = app.test_client().post(
    "/api/orders", json={"amount": 100}, headers={"Authorization": "Bearer " + sys.argv[1]}
)
assert answer.status_code == 201, answer.get_data(as_text=True)
print(answer.get_json()["number"])
"""


def run(argv: list[str], database_url: str, tmp_path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MPESA_ENV": "simulator",
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "x",
        "MPESA_CALLBACK_TOKEN": "cbtoken-migrations-test",
    }
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def flask(*args, database_url: str, tmp_path) -> subprocess.CompletedProcess:
    return run(["-m", "flask", "--app", "wsgi", *args], database_url, tmp_path)


def upgrade_and_check(url: str, tmp_path) -> None:
    up = flask("db", "upgrade", database_url=url, tmp_path=tmp_path)
    assert up.returncode == 0, up.stderr
    check = flask("db", "check", database_url=url, tmp_path=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    # the migrated database really works: the first order number is ORD-1001 + check digit
    key = flask("apikey", "create", "m", database_url=url, tmp_path=tmp_path)
    assert key.returncode == 0, key.stderr
    api_key = key.stdout.strip().splitlines()[-1]
    order = run(["-c", FIRST_ORDER, api_key], url, tmp_path)
    assert order.returncode == 0, order.stdout + order.stderr
    assert order.stdout.strip().splitlines()[-1] == "ORD-10017"  # 1001 and its check digit
    down = flask("db", "downgrade", "base", database_url=url, tmp_path=tmp_path)
    assert down.returncode == 0, down.stderr


def test_migrations_on_empty_sqlite(tmp_path):
    upgrade_and_check(f"sqlite:///{tmp_path / 'migrated.db'}", tmp_path)


@pytest.mark.e2e
def test_migrations_on_empty_postgresql(tmp_path):
    url = services.create_pg_database()
    try:
        upgrade_and_check(url, tmp_path)
    finally:
        services.drop_pg_database(url)
