"""Where settings come from (paymentapp/environment.py): the environment over `.env`, the
same for gunicorn.conf.py, wsgi.py and the app; and the test suite never reads a `.env`."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from paymentapp import environment
from paymentapp.environment import ConfigError, listen_address, settings_from
from tests import services
from tests.helpers import base_env


def test_dotenv_fills_what_the_environment_leaves_unset(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("PORT=5077\nLOG_LEVEL=debug\n# a comment\nHOST=0.0.0.0\n")
    settings = settings_from({"PAYMENTAPP_DOTENV": str(dotenv), "LOG_LEVEL": "warning"})
    assert settings["PORT"] == "5077" and settings["HOST"] == "0.0.0.0"
    assert settings["LOG_LEVEL"] == "warning"  # the real environment wins
    # off: nothing is read
    assert "PORT" not in settings_from({"PAYMENTAPP_DOTENV": "0"})
    assert "PORT" not in settings_from({"PAYMENTAPP_DOTENV": "off"})


def test_a_named_dotenv_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="PAYMENTAPP_DOTENV: no file at .*missing.env"):
        settings_from({"PAYMENTAPP_DOTENV": str(tmp_path / "missing.env")})


def _copy_of_the_loader(project):
    """paymentapp/environment.py in another project folder (whose `.env` it then reads),
    loaded by its path as gunicorn.conf.py loads it."""
    (project / "paymentapp").mkdir()
    shutil.copy(environment.__file__, project / "paymentapp" / "environment.py")
    spec = importlib.util.spec_from_file_location(
        "environment_copy", project / "paymentapp" / "environment.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_test_environment_ignores_a_developers_dotenv(tmp_path):
    """A `.env` in the project folder is read by default, and never by a test's process."""
    loader = _copy_of_the_loader(tmp_path)
    (tmp_path / ".env").write_text("MPESA_ENV=production\nMPESA_SHORTCODE=600999\n")
    assert loader.settings_from({})["MPESA_ENV"] == "production"  # by default: read
    for env in (
        os.environ,  # this process's (tests/conftest.py)
        services.process_env({}),  # every process tests/services.py starts
        services.Gunicorn({}).env,
        base_env("sqlite://"),  # the test apps', and tests/e2e.py's stacks
    ):
        assert env["PAYMENTAPP_DOTENV"] == "0"
        assert env["FLASK_SKIP_DOTENV"] == "1"  # nor `flask`'s own reading of `.env`
        assert "MPESA_SHORTCODE" not in loader.settings_from(
            {k: v for k, v in env.items() if k != "MPESA_SHORTCODE"}
        )


@pytest.mark.parametrize(
    ("env", "address"),
    [
        ({}, ("127.0.0.1", 5000)),
        ({"HOST": "0.0.0.0", "PORT": "8000"}, ("0.0.0.0", 8000)),
        ({"BIND": "[::1]:8001", "PORT": "9"}, ("::1", 8001)),
        ({"BIND": "unix:/run/pay.sock", "PORT": "8002"}, ("127.0.0.1", 8002)),
    ],
)
def test_where_the_server_listens(env, address):
    assert listen_address(env) == address


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "99999"}, "PORT must be a port number from 1 to 65535, got 99999"),
        ({"PORT": "0"}, "PORT must be at least 1, got 0"),
        ({"BIND": "localhost"}, "BIND must be HOST:PORT or unix:PATH, got 'localhost'"),
    ],
)
def test_bad_listen_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError) as error:
        listen_address(env)
    assert str(error.value) == message
