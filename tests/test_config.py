"""Configuration: development defaults, and fail-fast with one line naming the variable."""

import subprocess
import sys

import pytest

from paymentapp.config import ConfigError, load_config
from tests.helpers import LIVE
from tests.services import ROOT


def test_development_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("PAYMENTAPP_INSTANCE_PATH", str(tmp_path))
    config = load_config({})
    assert config["MPESA_ENV"] == "simulator"
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'paymentapp.db'}"
    assert config["PUBLIC_BASE_URL"] == "http://127.0.0.1:5000"
    assert config["CORS_ALLOWED_ORIGINS"] == ["http://127.0.0.1:5000"]
    assert config["PAYMENT_QUERY_AFTER_S"] == 30 and config["PAYMENT_EXPIRE_AFTER_S"] == 180
    assert config["REDIS_URL"] is None
    # the random dev secrets are kept, so a restart keeps sessions and callback URLs
    assert load_config({})["SECRET_KEY"] == config["SECRET_KEY"]
    assert load_config({})["MPESA_CALLBACK_TOKEN"] == config["MPESA_CALLBACK_TOKEN"]


def test_production_config_is_accepted_when_complete():
    config = load_config(LIVE)
    assert config["MPESA_BASE_URL"] == "https://api.safaricom.co.ke"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert (
        load_config({**LIVE, "MPESA_ENV": "sandbox"})["MPESA_BASE_URL"]
        == "https://sandbox.safaricom.co.ke"
    )


def test_postgres_urls_get_the_psycopg_driver():
    assert (
        load_config({**LIVE, "DATABASE_URL": "postgres://u@h/d"})["SQLALCHEMY_DATABASE_URI"]
        == "postgresql+psycopg://u@h/d"
    )


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"MPESA_CALLBACK_TOKEN": None}, "MPESA_CALLBACK_TOKEN"),
        ({"MPESA_CONSUMER_KEY": None}, "MPESA_CONSUMER_KEY"),
        ({"MPESA_CONSUMER_SECRET": None}, "MPESA_CONSUMER_SECRET"),
        ({"MPESA_PASSKEY": None}, "MPESA_PASSKEY"),
        ({"MPESA_SHORTCODE": None}, "MPESA_SHORTCODE"),
        ({"PUBLIC_BASE_URL": None}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": "http://pay.example.com"}, "PUBLIC_BASE_URL"),
        ({"PUBLIC_BASE_URL": "https://mpesa.example.com"}, "PUBLIC_BASE_URL"),
        ({"MPESA_CALLBACK_TOKEN": "short"}, "MPESA_CALLBACK_TOKEN"),
        ({"MPESA_CALLBACK_TOKEN": "my-safaricom-callback-token"}, "MPESA_CALLBACK_TOKEN"),
        ({"MPESA_ENV": "staging"}, "MPESA_ENV"),
        ({"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS"),
        ({"PAYMENT_QUERY_AFTER_S": "soon"}, "PAYMENT_QUERY_AFTER_S"),
        ({"PAYMENT_EXPIRE_AFTER_S": "10"}, "PAYMENT_EXPIRE_AFTER_S"),
        ({"MPESA_TRANSACTION_TYPE": "CustomerBuyGoodsOnline"}, "MPESA_PARTY_B"),
        ({"MPESA_TRANSACTION_TYPE": "Other"}, "MPESA_TRANSACTION_TYPE"),
        ({"MPESA_CALLBACK_ALLOWED_IPS": "10.0.0.300"}, "MPESA_CALLBACK_ALLOWED_IPS"),
        ({"TRUSTED_PROXY_HOPS": "-1"}, "TRUSTED_PROXY_HOPS"),
    ],
)
def test_bad_live_config_names_the_variable(change, variable):
    env = {**LIVE, **change}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(ConfigError, match=variable):
        load_config(env)


def test_safaricom_ip_preset_expands():
    nets = load_config({**LIVE, "MPESA_CALLBACK_ALLOWED_IPS": "safaricom, 10.1.0.0/16"})[
        "MPESA_CALLBACK_ALLOWED_IPS"
    ]
    assert any(str(n) == "196.201.214.200/32" for n in nets)
    assert any(str(n) == "10.1.0.0/16" for n in nets)


def test_start_up_stops_with_one_clear_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MPESA_ENV": "production", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "paymentapp: configuration error: SECRET_KEY is required when MPESA_ENV=production"
    ]
