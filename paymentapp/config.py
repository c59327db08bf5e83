"""Configuration from the environment (and `.env`), with development defaults.

`load_config()` returns a plain dict for `app.config`. In `sandbox` and `production`
mode a missing or contradictory setting raises `ConfigError` naming the variable, so
start-up stops with one clear line instead of failing later on a live payment. Where
settings come from (`.env`) and the parsers of single values are `environment.py`'s,
shared with gunicorn.conf.py.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet
from limits import parse_many

# ConfigError and PROJECT_ROOT are imported from here too (`from paymentapp.config import`)
from .database import engine_options
from .environment import (
    PROJECT_ROOT,
    ConfigError,
    flag,
    load_environment,
    local_origins,
    local_url,
    log_level,
    on_off,
    one_of,
    seconds,
    split_list,
    whole_number,
)
from .faults import parse_faults

MPESA_ENVS = ("simulator", "sandbox", "production")
DARAJA_BASE_URLS = {
    "sandbox": "https://sandbox.safaricom.co.ke",
    "production": "https://api.safaricom.co.ke",
}
# Safaricom's published STK callback source addresses (docs/daraja.md, with older extras).
SAFARICOM_CALLBACK_IPS = (
    "196.201.214.200 196.201.214.206 196.201.213.114 196.201.214.207 196.201.214.208 "
    "196.201.213.44 196.201.212.127 196.201.212.138 196.201.212.129 196.201.212.136 "
    "196.201.212.74 196.201.212.69 196.201.212.128 196.201.212.132"
).split()
# Daraja's public sandbox credentials; the simulator accepts the same ones.
SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
SIMULATOR_CONSUMER_KEY = "simulator-consumer-key"
# The simulator's initiator (Reversal, B2C, Transaction Status): its password is encrypted
# with the certificate of a key pair the simulator makes in `instance/` (simulator/keys.py)
SIMULATOR_INITIATOR_NAME = "simulator-initiator"
SIMULATOR_INITIATOR_PASSWORD = "Simulator#2026"
SIMULATOR_CONSUMER_SECRET = "simulator-consumer-secret"
# B2C (partial refunds): the simulator's own B2C shortcode, and Daraja's CommandIDs
SIMULATOR_B2C_SHORTCODE = "600000"
B2C_COMMANDS = ("BusinessPayment", "SalaryPayment", "PromotionPayment")
# How the simulator may answer prompts by itself (MPESA_SIMULATOR_AUTO): simulator/callbacks.py
SIMULATOR_AUTO = ("accept", "cancel", "insufficient", "wrong_pin", "lose_callback", "expire")
# Daraja rejects callback URLs containing these words (docs/daraja.md, "URL rules").
FORBIDDEN_CALLBACK_WORDS = ("mpesa", "safaricom", "exec", "cmd", "sql", "query")


def _instance_path() -> Path:
    return Path(os.environ.get("PAYMENTAPP_INSTANCE_PATH") or PROJECT_ROOT / "instance")


def _dev_secret(name: str, make=secrets.token_urlsafe) -> str:
    """A random development secret kept in `instance/` so restarts keep sessions/URLs."""
    folder = _instance_path()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        path.write_text(make(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _fernet_key(text: str) -> str:
    """A Fernet key derived from secret text: the development key for secrets at rest."""
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _qr_size(env) -> int:
    size = whole_number(env, "MPESA_QR_SIZE", 300, minimum=100)
    if size > 1000:
        raise ConfigError(f"MPESA_QR_SIZE must be from 100 to 1000 pixels, got {size}")
    return size


def _rate_limit(env, name: str, default: str) -> str:
    """A rate limit in the limiter's syntax ('10 per minute;50 per hour')."""
    value = env.get(name) or default
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} must look like '10 per minute', got {value!r}") from None
    return value


def _no_forbidden_words(name: str, value: str) -> None:
    if any(word in value.lower() for word in FORBIDDEN_CALLBACK_WORDS):
        words = ", ".join(FORBIDDEN_CALLBACK_WORDS)
        raise ConfigError(f"{name} must not contain {words} (Daraja rejects such callback URLs)")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def parse_allowed_ips(
    raw: str | None, name: str = "MPESA_CALLBACK_ALLOWED_IPS", *, safaricom: bool = True
) -> list:
    """An allowlist setting (`name`) as networks: IPs or CIDRs, comma-separated; with
    `safaricom`, that word expands to Safaricom's published callback addresses."""
    networks = []
    for item in split_list(raw):
        if safaricom and item.lower() == "safaricom":
            networks.extend(ipaddress.ip_network(ip) for ip in SAFARICOM_CALLBACK_IPS)
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP address or CIDR") from None
    return networks


def address_in(ip: str | None, networks: list) -> bool:
    """Is `ip` (a client address, possibly missing or malformed) in one of `networks`?"""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


def _initiator(env, live: bool) -> dict:
    """Daraja's initiator (Reversal, B2C, Transaction Status): a name and either the
    SecurityCredential as the Daraja portal gives it, or the password and the
    environment's certificate to encrypt it with. Live without them: those APIs are off.
    The simulator has its own initiator, whose certificate it makes (simulator/keys.py)."""
    name = env.get("MPESA_INITIATOR_NAME") or ""
    credential = env.get("MPESA_SECURITY_CREDENTIAL") or ""
    password = env.get("MPESA_INITIATOR_PASSWORD") or ""
    cert_path = env.get("MPESA_CERT_PATH") or ""
    if credential and (password or cert_path):
        raise ConfigError(
            "MPESA_SECURITY_CREDENTIAL is already encrypted: leave out MPESA_INITIATOR_PASSWORD "
            "and MPESA_CERT_PATH, or give those two instead"
        )
    if bool(password) != bool(cert_path):
        raise ConfigError("MPESA_INITIATOR_PASSWORD and MPESA_CERT_PATH go together")
    if cert_path and not Path(cert_path).is_file():
        raise ConfigError(f"MPESA_CERT_PATH: no file at {cert_path}")
    if (credential or password) and not name:
        raise ConfigError("MPESA_INITIATOR_NAME is required with an initiator credential")
    if name and not (credential or password):
        raise ConfigError(
            "MPESA_INITIATOR_NAME needs MPESA_SECURITY_CREDENTIAL, or MPESA_INITIATOR_PASSWORD "
            "and MPESA_CERT_PATH"
        )
    b2c = (env.get("MPESA_B2C_SHORTCODE") or "").strip()
    if b2c.lower() == "off":
        b2c = ""
    elif b2c and not (b2c.isdigit() and 5 <= len(b2c) <= 7):
        raise ConfigError("MPESA_B2C_SHORTCODE must be a shortcode of 5 to 7 digits, or off")
    if b2c and not name and live:
        raise ConfigError("MPESA_B2C_SHORTCODE needs MPESA_INITIATOR_NAME and its credential")
    command = env.get("MPESA_B2C_COMMAND_ID") or "BusinessPayment"
    if command not in B2C_COMMANDS:
        raise ConfigError(f"MPESA_B2C_COMMAND_ID must be one of {', '.join(B2C_COMMANDS)}")
    if not live and not name:
        folder = _instance_path()
        name, password = SIMULATOR_INITIATOR_NAME, SIMULATOR_INITIATOR_PASSWORD
        cert_path = str(folder / "simulator-initiator.cer")
        if "MPESA_B2C_SHORTCODE" not in env:
            b2c = SIMULATOR_B2C_SHORTCODE  # partial refunds work out of the box
    return {
        "MPESA_INITIATOR_NAME": name,
        "MPESA_SECURITY_CREDENTIAL": credential,
        "MPESA_INITIATOR_PASSWORD": password,
        "MPESA_CERT_PATH": cert_path,
        "MPESA_B2C_SHORTCODE": b2c,
        "MPESA_B2C_COMMAND_ID": command,
        # receipts entered by hand count once Transaction Status confirms them (with an
        # initiator); off: on the admin's word, as without one
        "MPESA_RECEIPT_CHECKS": on_off(env, "MPESA_RECEIPT_CHECKS"),
    }


def load_config(env=None) -> dict:
    """Build the app config from `env` (default: the process environment over `.env`)."""
    if env is None:
        env = load_environment()

    mpesa_env = (env.get("MPESA_ENV") or "simulator").strip().lower()
    if mpesa_env not in MPESA_ENVS:
        raise ConfigError(f"MPESA_ENV must be one of {', '.join(MPESA_ENVS)}, got {mpesa_env!r}")
    live = mpesa_env != "simulator"

    def required_when_live(name: str, dev_default):
        value = env.get(name)
        if value:
            return value
        if live:
            raise ConfigError(f"{name} is required when MPESA_ENV={mpesa_env}")
        return dev_default() if callable(dev_default) else dev_default

    secret_key = required_when_live("SECRET_KEY", lambda: _dev_secret("secret_key"))
    # ENCRYPTION_KEYS=new,old rotates the key of secrets at rest (crypto.py): first encrypts
    encryption_keys = split_list(env.get("ENCRYPTION_KEYS")) or [
        required_when_live("ENCRYPTION_KEY", lambda: _fernet_key(_dev_secret("encryption_key")))
    ]
    for key in encryption_keys:
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                "ENCRYPTION_KEY must be a Fernet key (32 url-safe base64 bytes): make one "
                "with flask --app wsgi secrets new-key"
            ) from None
    # MPESA_CALLBACK_TOKENS=new,old rotates the token: the first builds new callback URLs,
    # every one is accepted (pushes sent before the change still call back to the old).
    callback_tokens = split_list(env.get("MPESA_CALLBACK_TOKENS")) or [
        required_when_live(
            # hex: no FORBIDDEN_CALLBACK_WORDS can occur in it (a URL-safe token held
            # "sql" or "cmd" about once in 400 new instances, refused by the rule below)
            "MPESA_CALLBACK_TOKEN",
            lambda: _dev_secret("callback_token", secrets.token_hex),
        )
    ]
    token_name = (
        "MPESA_CALLBACK_TOKENS" if env.get("MPESA_CALLBACK_TOKENS") else "MPESA_CALLBACK_TOKEN"
    )
    for callback_token in callback_tokens:
        if (
            len(callback_token) < 16
            or not callback_token.replace("-", "").replace("_", "").isalnum()
        ):
            raise ConfigError(f"{token_name} must be at least 16 letters, digits, '-' or '_'")
        if not callback_token.isascii():
            raise ConfigError(f"{token_name} must be ASCII letters, digits, '-' or '_'")
        _no_forbidden_words(token_name, callback_token)

    public_base_url = (env.get("PUBLIC_BASE_URL") or local_url(env)).rstrip("/")
    parts = urlsplit(public_base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"PUBLIC_BASE_URL must be an http(s) URL, got {public_base_url!r}")
    if live and parts.scheme != "https":
        raise ConfigError(f"PUBLIC_BASE_URL must be https when MPESA_ENV={mpesa_env}")
    if live and "PUBLIC_BASE_URL" not in env:
        raise ConfigError(f"PUBLIC_BASE_URL is required when MPESA_ENV={mpesa_env}")
    _no_forbidden_words("PUBLIC_BASE_URL", public_base_url)

    transaction_type = env.get("MPESA_TRANSACTION_TYPE") or "CustomerPayBillOnline"
    if transaction_type not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
        raise ConfigError(
            "MPESA_TRANSACTION_TYPE must be CustomerPayBillOnline or CustomerBuyGoodsOnline"
        )
    shortcode = required_when_live("MPESA_SHORTCODE", SANDBOX_SHORTCODE)
    party_b = env.get("MPESA_PARTY_B") or ""
    if transaction_type == "CustomerBuyGoodsOnline" and not party_b:
        raise ConfigError("MPESA_PARTY_B (the till number) is required with CustomerBuyGoodsOnline")

    initiator = _initiator(env, live)
    # Callbacks are proof of payment: in production only Safaricom's published addresses
    # are trusted unless told otherwise (`any`: every address, with a warning at start)
    raw_ips = (env.get("MPESA_CALLBACK_ALLOWED_IPS") or "").strip()
    if raw_ips.lower() == "any":
        callback_ips = []
    elif not raw_ips and mpesa_env == "production":
        callback_ips = parse_allowed_ips("safaricom")
    else:
        callback_ips = parse_allowed_ips(raw_ips)

    if live and not env.get("DATABASE_URL"):
        raise ConfigError(
            f"DATABASE_URL is required when MPESA_ENV={mpesa_env} (PostgreSQL: "
            "postgresql+psycopg://user:password@host/db)"
        )
    database_url = env.get("DATABASE_URL") or f"sqlite:///{_instance_path() / 'paymentapp.db'}"
    if live and database_url.startswith("sqlite") and not flag(env, "ALLOW_SQLITE_IN_PRODUCTION"):
        raise ConfigError(
            f"DATABASE_URL is SQLite, refused when MPESA_ENV={mpesa_env}: use PostgreSQL, "
            "or set ALLOW_SQLITE_IN_PRODUCTION=1 for a single-process trial"
        )
    # A reconciler or webhook process is another process even with one web worker: they
    # share the Daraja token and reach the browsers only through Redis.
    if live and not env.get("REDIS_URL"):
        raise ConfigError(
            f"REDIS_URL is required when MPESA_ENV={mpesa_env} (the Daraja token and the "
            "Socket.IO messages are shared through it)"
        )
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    cors = split_list(env.get("CORS_ALLOWED_ORIGINS")) or [_origin(public_base_url)]
    if "*" in cors and live:
        raise ConfigError(f"CORS_ALLOWED_ORIGINS must not be '*' when MPESA_ENV={mpesa_env}")
    if not live:  # a new user opens localhost as often as 127.0.0.1: both are this app
        cors = list(dict.fromkeys([*cors, *local_origins(env)]))

    query_after = whole_number(env, "PAYMENT_QUERY_AFTER_S", 30, minimum=1)
    expire_after = whole_number(env, "PAYMENT_EXPIRE_AFTER_S", 180, minimum=1)
    if expire_after <= query_after:
        raise ConfigError("PAYMENT_EXPIRE_AFTER_S must be greater than PAYMENT_QUERY_AFTER_S")

    # The demo shop lets any visitor send M-Pesa prompts to any phone: simulator mode
    # only, unless asked for (sandbox demos); never in production.
    demo_shop = mpesa_env == "simulator" or flag(env, "DEMO_SHOP")
    if flag(env, "DEMO_SHOP") and mpesa_env == "production":
        raise ConfigError("DEMO_SHOP=1 is refused when MPESA_ENV=production (it is for demos)")
    home_url = (env.get("HOME_URL") or "").strip() or None
    if home_url and urlsplit(home_url).scheme not in ("http", "https"):
        raise ConfigError(f"HOME_URL must be an http(s) URL, got {home_url!r}")

    simulator_auto = one_of(env, "MPESA_SIMULATOR_AUTO", ("off", *SIMULATOR_AUTO), "off")
    faults = parse_faults(env.get("PAYMENTAPP_FAULTS"))
    if faults and live:
        raise ConfigError(
            f"PAYMENTAPP_FAULTS is for tests only, refused when MPESA_ENV={mpesa_env}"
        )

    admin_timezone = env.get("ADMIN_TIMEZONE") or "Africa/Nairobi"
    try:
        ZoneInfo(admin_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"ADMIN_TIMEZONE: unknown time zone {admin_timezone!r}") from None
    admin_max_age = whole_number(env, "ADMIN_SESSION_MAX_AGE_S", 12 * 3600, minimum=300)
    address_prompt_limit = _rate_limit(env, "PAYMENT_ADDRESS_RATE_LIMIT", "20 per 10 minutes")
    login_rate_limit = _rate_limit(env, "ADMIN_LOGIN_RATE_LIMIT", "10 per minute;50 per hour")

    # `/metrics` (paymentapp/metrics/routes.py): a bearer token and/or an address allowlist.
    metrics_token = (env.get("METRICS_TOKEN") or "").strip() or None
    if metrics_token and (
        len(metrics_token) < 16 or not all("!" <= char <= "~" for char in metrics_token)
    ):
        raise ConfigError(
            "METRICS_TOKEN must be at least 16 printable ASCII characters, without spaces"
        )

    return {
        "SECRET_KEY": secret_key,
        "ENCRYPTION_KEYS": encryption_keys,
        "SQLALCHEMY_DATABASE_URI": database_url,
        # a pool sized for gevent; liveness checked after idle time only (database.py)
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(env, database_url),
        "REDIS_URL": env.get("REDIS_URL") or None,
        "SOCKETIO_CHANNEL": env.get("SOCKETIO_CHANNEL") or "paymentapp-socketio",
        # Per Socket.IO connection: orders watched at once, and the burst of events (a
        # `subscribe_many` counts one per order). None: realtime/events.py's 50 and 50.
        "SOCKET_MAX_ROOMS": whole_number(env, "SOCKET_MAX_ROOMS", 0, minimum=1) or None,
        "SOCKET_EVENT_BURST": whole_number(env, "SOCKET_EVENT_BURST", 0, minimum=1) or None,
        "MPESA_ENV": mpesa_env,
        "MPESA_BASE_URL": (
            env.get("MPESA_BASE_URL")
            or DARAJA_BASE_URLS.get(mpesa_env)
            or f"{public_base_url}/_simulator"  # the built-in simulator, same app
        ).rstrip("/"),
        "MPESA_SIMULATOR_PROMPT_TTL_S": seconds(env, "MPESA_SIMULATOR_PROMPT_TTL_S", 60),
        "PAYMENT_PHONE_COOLDOWN_S": whole_number(env, "PAYMENT_PHONE_COOLDOWN_S", 10),
        # prompts that reached a phone, per order and window (payments/prompt_limits.py)
        "PAYMENT_PROMPTS_PER_ORDER": whole_number(env, "PAYMENT_PROMPTS_PER_ORDER", 3, minimum=1),
        "PAYMENT_PROMPT_WINDOW_S": whole_number(env, "PAYMENT_PROMPT_WINDOW_S", 600, minimum=1),
        "PAYMENT_ADDRESS_RATE_LIMIT": address_prompt_limit,
        "APPROVALS": on_off(env, "APPROVALS"),
        "MPESA_CONSUMER_KEY": required_when_live("MPESA_CONSUMER_KEY", SIMULATOR_CONSUMER_KEY),
        "MPESA_CONSUMER_SECRET": required_when_live(
            "MPESA_CONSUMER_SECRET", SIMULATOR_CONSUMER_SECRET
        ),
        "MPESA_SHORTCODE": shortcode,
        "MPESA_PASSKEY": required_when_live("MPESA_PASSKEY", SANDBOX_PASSKEY),
        "MPESA_TRANSACTION_TYPE": transaction_type,
        "MPESA_PARTY_B": party_b or shortcode,
        "MPESA_SIMULATOR_AUTO": "" if simulator_auto == "off" else simulator_auto,
        "MPESA_SIMULATOR_AUTO_DELAY_S": seconds(env, "MPESA_SIMULATOR_AUTO_DELAY_S", 3),
        "PUBLIC_BASE_URL": public_base_url,
        "MPESA_CALLBACK_TOKEN": callback_tokens[0],
        "MPESA_CALLBACK_TOKENS": callback_tokens,
        "MPESA_CALLBACK_ALLOWED_IPS": callback_ips,
        "TRUSTED_PROXY_HOPS": whole_number(env, "TRUSTED_PROXY_HOPS", 0),
        "METRICS_TOKEN": metrics_token,
        "METRICS_ALLOWED_IPS": parse_allowed_ips(
            env.get("METRICS_ALLOWED_IPS"), "METRICS_ALLOWED_IPS", safaricom=False
        ),
        "FAULTS": faults,
        "DEMO_SHOP": demo_shop,
        "ORDER_EXPIRE_AFTER_S": whole_number(env, "ORDER_EXPIRE_AFTER_S", 24 * 3600, minimum=60),
        "MPESA_C2B_SHORTCODE": env.get("MPESA_C2B_SHORTCODE") or shortcode,
        **initiator,
        "MPESA_C2B_VALIDATION": flag(env, "MPESA_C2B_VALIDATION"),
        "MPESA_C2B_MIN_AMOUNT": whole_number(env, "MPESA_C2B_MIN_AMOUNT", 1, minimum=1),
        # Pull Transactions in the reconciler's pass, every so many seconds (0: off)
        "MPESA_PULL_INTERVAL_S": whole_number(env, "MPESA_PULL_INTERVAL_S", 0),
        # Pay by QR (docs/dialog.md): a Dynamic QR of the amount due beside the phone form
        "MPESA_QR": on_off(env, "MPESA_QR"),
        "MPESA_QR_MERCHANT_NAME": (env.get("MPESA_QR_MERCHANT_NAME") or "M-Pesa checkout")[:64],
        "MPESA_QR_SIZE": _qr_size(env),
        "QR_RATE_LIMIT": _rate_limit(env, "QR_RATE_LIMIT", "30 per minute"),
        "WEBHOOK_ALLOW_PRIVATE": flag(env, "WEBHOOK_ALLOW_PRIVATE"),
        "WEBHOOKS_IN_PROCESS": flag(env, "WEBHOOKS_IN_PROCESS"),
        "HOME_URL": home_url,
        "FAULT_DIR": env.get("PAYMENTAPP_FAULT_DIR") or None,
        "CORS_ALLOWED_ORIGINS": cors,
        "PAYMENT_QUERY_AFTER_S": query_after,
        "CALLBACK_RETRY_AFTER_S": whole_number(env, "CALLBACK_RETRY_AFTER_S", 30, minimum=1),
        "PAYMENT_EXPIRE_AFTER_S": expire_after,
        "CLIENT_TOKEN_MAX_AGE_S": whole_number(
            env, "CLIENT_TOKEN_MAX_AGE_S", 24 * 3600, minimum=60
        ),
        "RECONCILER_IN_PROCESS": flag(env, "RECONCILER_IN_PROCESS"),
        "LOG_LEVEL": log_level(env),
        "LOG_QUEUE_LINES": whole_number(env, "LOG_QUEUE_LINES", 10_000, minimum=100),
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": live,
        # Admin dashboard (paymentapp/admin): sessions, lockout, login rate limit.
        "ADMIN_IDLE_TIMEOUT_S": whole_number(env, "ADMIN_IDLE_TIMEOUT_S", 30 * 60, minimum=60),
        "ADMIN_SESSION_MAX_AGE_S": admin_max_age,
        "PERMANENT_SESSION_LIFETIME": admin_max_age,
        "ADMIN_TIMEZONE": admin_timezone,
        "ADMIN_LOCKOUT_AFTER": 5,
        "ADMIN_LOCKOUT_S": 15 * 60,
        "ADMIN_LOGIN_RATE_LIMIT": login_rate_limit,
        "RATELIMIT_STORAGE_URI": env.get("REDIS_URL") or "memory://",
        # Deployments (and test runs) sharing one Redis keep their counters apart.
        "RATELIMIT_KEY_PREFIX": (env.get("SOCKETIO_CHANNEL") or "paymentapp-socketio") + "-limits",
        # A limiter outage must not lock admins out; per-account lockout still applies.
        "RATELIMIT_SWALLOW_ERRORS": True,
        # CSRF is checked by the admin blueprint only: the JSON APIs use bearer keys and
        # client tokens, never cookies, so a global check would only break them.
        "WTF_CSRF_CHECK_DEFAULT": False,
        # The token lives in the admin session, which has its own idle and absolute limits.
        "WTF_CSRF_TIME_LIMIT": None,
    }
