"""Configuration: development defaults, and fail-fast with one line naming the variable."""

import subprocess
import sys

import pytest

from paymentapp.config import SIMULATOR_AUTO, ConfigError, load_config
from paymentapp.simulator.callbacks import ACTIONS
from tests import services
from tests.helpers import LIVE, base_env
from tests.services import NO_DOTENV, ROOT


def test_development_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("PAYMENTAPP_INSTANCE_PATH", str(tmp_path))
    config = load_config({})
    assert config["MPESA_ENV"] == "simulator"
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'paymentapp.db'}"
    assert config["PUBLIC_BASE_URL"] == "http://127.0.0.1:5000"
    assert config["CORS_ALLOWED_ORIGINS"] == ["http://127.0.0.1:5000", "http://localhost:5000"]
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
    env = {"PATH": "/usr/bin:/bin", "MPESA_ENV": "production", "HOME": str(tmp_path), **NO_DOTENV}
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


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """Development secrets in a temporary folder, not the project's `instance/`."""
    monkeypatch.setenv("PAYMENTAPP_INSTANCE_PATH", str(tmp_path))


@pytest.mark.parametrize("spelling", ["info", "INFO", "Info", " warning "])
def test_log_level_is_any_case(spelling, instance):
    assert load_config({"LOG_LEVEL": spelling})["LOG_LEVEL"] == spelling.strip().lower()
    assert load_config({})["LOG_LEVEL"] == "info"


def test_simulator_mode_allows_both_local_addresses_at_the_port_it_listens_on(instance):
    """A new user opens http://localhost:PORT as often as http://127.0.0.1:PORT."""
    env = {"PORT": "5077"}
    assert load_config(env)["CORS_ALLOWED_ORIGINS"] == [
        "http://127.0.0.1:5077",
        "http://localhost:5077",
    ]
    # a merchant's own list keeps them (the app's own pages are on those origins)...
    shop = load_config({**env, "CORS_ALLOWED_ORIGINS": "https://shop.example"})
    assert shop["CORS_ALLOWED_ORIGINS"] == [
        "https://shop.example",
        "http://127.0.0.1:5077",
        "http://localhost:5077",
    ]
    # ... and outside simulator mode only what is configured is allowed
    live = load_config({**LIVE, "PORT": "5077"})
    assert live["CORS_ALLOWED_ORIGINS"] == ["https://pay.example.com"]


def test_the_simulator_auto_answers_are_the_phone_buttons(instance):
    assert set(SIMULATOR_AUTO) == set(ACTIONS)
    assert load_config({"MPESA_SIMULATOR_AUTO": "Accept"})["MPESA_SIMULATOR_AUTO"] == "accept"
    assert load_config({"MPESA_SIMULATOR_AUTO": "off"})["MPESA_SIMULATOR_AUTO"] == ""
    assert (
        load_config({"MPESA_SIMULATOR_AUTO_DELAY_S": "0.5"})["MPESA_SIMULATOR_AUTO_DELAY_S"] == 0.5
    )


# A bad value of each kind, and the one line that must name the variable and what is allowed.
BAD_SETTINGS = [
    (
        {"LOG_LEVEL": "verbose"},
        "LOG_LEVEL must be one of debug, info, warning, error, critical, got 'verbose'",
    ),
    (
        {"MPESA_SIMULATOR_AUTO": "yes"},
        "MPESA_SIMULATOR_AUTO must be one of off, accept, cancel, insufficient, wrong_pin, "
        "lose_callback, expire, got 'yes'",
    ),
    (
        {"MPESA_SIMULATOR_PROMPT_TTL_S": "1m"},
        "MPESA_SIMULATOR_PROMPT_TTL_S must be a number of seconds (such as 3 or 0.5), got '1m'",
    ),
    (
        {"MPESA_SIMULATOR_AUTO_DELAY_S": "nan"},
        "MPESA_SIMULATOR_AUTO_DELAY_S must be a number of seconds (such as 3 or 0.5), got 'nan'",
    ),
    ({"PORT": "http"}, "PORT must be a whole number, got 'http'"),
    (
        {"DEMO_SHOP": "maybe"},
        "DEMO_SHOP must be 1 or 0 (or true/false, yes/no, on/off), got 'maybe'",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_SETTINGS)
def test_a_bad_value_is_one_config_error_naming_the_variable(change, message, instance):
    with pytest.raises(ConfigError) as error:
        load_config(change)
    assert str(error.value) == message


def _the_one_line(stderr: str) -> list[str]:
    """The lines of stderr that are not gunicorn's own (it has its say around ours)."""
    return [line for line in stderr.splitlines() if line.startswith("paymentapp:")]


@pytest.mark.parametrize(("change", "message"), BAD_SETTINGS)
def test_the_cli_stops_with_the_one_line(change, message, tmp_path):
    env = {**base_env(f"sqlite:///{tmp_path}/app.db"), "PAYMENTAPP_INSTANCE_PATH": str(tmp_path)}
    result = services.flask_run({**env, **change}, "routes")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"paymentapp: configuration error: {message}"]


def test_the_documented_log_level_spelling_starts_the_cli(tmp_path):
    """`LOG_LEVEL=info`, as docs/configuration.md spells the default, once crashed start-up."""
    env = {**base_env(f"sqlite:///{tmp_path}/app.db"), "PAYMENTAPP_INSTANCE_PATH": str(tmp_path)}
    result = services.flask_run({**env, "LOG_LEVEL": "info"}, "routes")
    assert result.returncode == 0, result.stderr
    assert "/realtime/origin" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(("change", "message"), BAD_SETTINGS)
def test_gunicorn_stops_with_the_one_line_and_no_traceback(change, message, tmp_path):
    """Settings gunicorn.conf.py reads stop the master; the app's stop the first worker,
    and gunicorn with it (not a worker failing again and again)."""
    env = {
        **base_env(f"sqlite:///{tmp_path}/app.db"),
        "PAYMENTAPP_INSTANCE_PATH": str(tmp_path),
        "PORT": str(services.free_port()),
        **change,
    }
    result = services.gunicorn_run(env)
    assert result.returncode != 0
    assert _the_one_line(result.stderr) == [f"paymentapp: configuration error: {message}"]
    assert "Traceback" not in result.stderr


def test_the_postgresql_pool_is_sized_for_gevent_workers_and_configurable():
    pg = {**LIVE, "DATABASE_URL": "postgresql://u@db/pay"}
    assert load_config(pg)["SQLALCHEMY_ENGINE_OPTIONS"] == {
        "pool_size": 20,
        "max_overflow": 10,
        "pool_timeout": 10,
        "pool_use_lifo": True,
    }
    sized = load_config(
        {**pg, "DB_POOL_SIZE": "4", "DB_MAX_OVERFLOW": "0", "DB_POOL_TIMEOUT_S": "3"}
    )
    assert sized["SQLALCHEMY_ENGINE_OPTIONS"] == {
        "pool_size": 4,
        "max_overflow": 0,
        "pool_timeout": 3,
        "pool_use_lifo": True,
    }
    for name, value in (
        ("DB_POOL_SIZE", "0"),
        ("DB_MAX_OVERFLOW", "many"),
        ("DB_POOL_TIMEOUT_S", "0"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_config({**pg, name: value})
    # SQLite keeps SQLAlchemy's own pool, which takes none of these
    assert load_config({"DATABASE_URL": "sqlite:////tmp/x.db"})["SQLALCHEMY_ENGINE_OPTIONS"] == {}


def test_the_app_builds_its_engine_with_the_pool_settings(make_app, database_url):
    from paymentapp.extensions import db

    app = make_app({"DB_POOL_SIZE": "3", "DB_MAX_OVERFLOW": "2"})
    with app.app_context():
        pool = db.engine.pool
        if database_url.startswith("postgresql"):
            assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 2, 10)
        else:
            assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {}


def test_the_simulators_own_callback_token_never_holds_a_word_daraja_refuses(instance, monkeypatch):
    """The development callback token is hex: a URL-safe random token held "sql", "cmd" or
    "exec" about once in 400 new instances, and the app then refused its own token."""
    import secrets

    unlucky = "unlucky-sql-cmd-exec-" + "x" * 24
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes: unlucky)
    token = load_config({})["MPESA_CALLBACK_TOKEN"]
    assert int(token, 16) and len(token) == 64
    assert load_config({})["MPESA_CALLBACK_TOKEN"] == token  # kept in instance/
