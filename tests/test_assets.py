"""No blank page: an app whose payment page's browser files are missing (a checkout without
the JS build) refuses to start, naming `make install`, unless
PAYMENTAPP_ALLOW_MISSING_ASSETS=1; then `/healthz` names what is missing."""

import subprocess
import sys

import pytest

from paymentapp import create_app
from paymentapp.config import ConfigError
from paymentapp.extensions import db
from tests import services
from tests.helpers import base_env

CLIENT = "/static/js/paymentapp-client.js"
TEST_CONFIG = {"TESTING": True, "SOCKETIO_ASYNC_MODE": "threading"}


def unbuilt(tmp_path, node_modules: bool = True) -> dict:
    """Config of an app whose client build (and, if not `node_modules`, npm's folder) is
    looked for in empty folders."""
    config = {**TEST_CONFIG, "CLIENT_DIST_DIR": str(tmp_path / "dist")}
    if not node_modules:
        config["NODE_MODULES_DIR"] = str(tmp_path / "node_modules")
    return config


def test_without_the_client_build_the_app_refuses_to_start(tmp_path, database_url):
    with pytest.raises(ConfigError) as refused:
        create_app(unbuilt(tmp_path), env=base_env(database_url))
    message = str(refused.value)
    assert "\n" not in message
    assert f"missing ({CLIENT})" in message
    assert "run `make install`" in message and "PAYMENTAPP_ALLOW_MISSING_ASSETS=1" in message


def test_without_node_modules_the_socket_library_is_named_too(tmp_path, database_url):
    with pytest.raises(ConfigError, match=r"/vendor/socket\.io\.esm\.min\.js"):
        create_app(unbuilt(tmp_path, node_modules=False), env=base_env(database_url))


def test_the_switch_starts_it_and_healthz_names_what_is_missing(tmp_path, database_url):
    app = create_app(
        unbuilt(tmp_path), env=base_env(database_url, PAYMENTAPP_ALLOW_MISSING_ASSETS="1")
    )
    try:
        client = app.test_client()
        health = client.get("/healthz")
        script = client.get(CLIENT)
    finally:
        with app.app_context():
            db.engine.dispose()
    assert health.status_code == 503
    assert health.get_json() == {
        "status": "error",
        "db": "ok",
        "redis": "disabled",
        "assets": "missing",
        "missing_assets": [CLIENT],
    }
    assert script.status_code == 404


def test_a_bad_switch_value_is_named(tmp_path, database_url):
    with pytest.raises(ConfigError, match="PAYMENTAPP_ALLOW_MISSING_ASSETS must be 1 or 0"):
        create_app(
            unbuilt(tmp_path), env=base_env(database_url, PAYMENTAPP_ALLOW_MISSING_ASSETS="maybe")
        )


def test_healthz_says_the_built_files_are_there(client):
    assert client.get("/healthz").get_json()["assets"] == "ok"


@pytest.fixture
def checkout_without_js(tmp_path):
    """A folder holding the Python code alone (linked), as `pip install` + a copy of the
    code would leave it: no clients/js build, no node_modules."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    for name in ("paymentapp", "wsgi.py"):
        (folder / name).symlink_to(services.ROOT / name)
    return folder


def flask_in(folder, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "routes"],
        cwd=folder,
        env=services.process_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_refuses_with_one_line(checkout_without_js, tmp_path, database_url):
    env = base_env(database_url, PAYMENTAPP_INSTANCE_PATH=str(tmp_path / "instance"))
    env["PAYMENTAPP_ALLOW_MISSING_ASSETS"] = None  # unset, whatever this run has
    result = flask_in(checkout_without_js, env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("paymentapp: ")
    assert CLIENT in lines[0] and "run `make install`" in lines[0]


def test_the_cli_starts_with_the_switch(checkout_without_js, tmp_path, database_url):
    env = base_env(
        database_url,
        PAYMENTAPP_INSTANCE_PATH=str(tmp_path / "instance"),
        PAYMENTAPP_ALLOW_MISSING_ASSETS="1",
    )
    result = flask_in(checkout_without_js, env)
    assert result.returncode == 0, result.stderr
    assert "/healthz" in result.stdout
