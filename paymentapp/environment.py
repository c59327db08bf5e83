"""Where settings come from, for gunicorn.conf.py, wsgi.py and the app alike: the process
environment over the project's `.env` (the environment wins), and the small parsers every
setting goes through, each failing with one line that names the variable and what it may be.

gunicorn.conf.py loads this file by its path in gunicorn's master process, where importing
`paymentapp` (the app's modules) must not happen before gevent patches the workers: so
this module imports nothing from the project and nothing but the standard library and
python-dotenv.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values, load_dotenv

# The project's own folder: `instance/` and `.env` are found here whatever the working
# directory (a `flask` command run elsewhere must not make a second database and secret).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Unset or on: the project's `.env`; `0`/`off`: none (the test suite's setting); a path: that file.
DOTENV_SWITCH = "PAYMENTAPP_DOTENV"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off", "")


class ConfigError(Exception):
    """A setting is missing or contradictory; the message names the variable."""


def dotenv_file(env: Mapping) -> Path | None:
    """The `.env` file `env` asks for (PAYMENTAPP_DOTENV), or None for none."""
    value = (env.get(DOTENV_SWITCH) or "").strip()
    if value and value.lower() in _OFF:
        return None
    if not value or value.lower() in _ON:
        path = PROJECT_ROOT / ".env"
        return path if path.is_file() else None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{DOTENV_SWITCH}: no file at {value} (0 reads no .env file)")
    return path


def settings_from(environ: Mapping) -> dict:
    """`environ` over its `.env` file's settings, without changing the process."""
    path = dotenv_file(environ)
    from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path else {}
    return {**from_file, **environ}


def load_environment() -> Mapping:
    """Add `.env`'s settings to the process environment where it has none, and return it:
    child processes (gunicorn's workers, a `flask` command's) then see the same settings."""
    path = dotenv_file(os.environ)
    if path:
        load_dotenv(path, override=False)
    return os.environ


# -- parsers: each raises ConfigError naming the variable and what is allowed ------------------


def whole_number(env: Mapping, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or not str(raw).strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def seconds(env: Mapping, name: str, default: float, minimum: float = 0.0) -> float:
    """A duration in seconds, fractions allowed (`1.5`)."""
    raw = env.get(name)
    if raw is None or not str(raw).strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a number of seconds (such as 3 or 0.5), got {raw!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g} seconds, got {raw!r}")
    return value


def flag(env: Mapping, name: str) -> bool:
    """A yes/no setting, off unless set: `1` or `0` (also true/false, yes/no, on/off)."""
    raw = str(env.get(name) or "")
    value = raw.strip().lower()
    if value not in _ON + _OFF:
        raise ConfigError(f"{name} must be 1 or 0 (or true/false, yes/no, on/off), got {raw!r}")
    return value in _ON


def on_off(env: Mapping, name: str) -> bool:
    """A switch, on unless set to off."""
    raw = str(env.get(name) or "on")
    value = raw.strip().lower()
    if value not in ("on", "off"):
        raise ConfigError(f"{name} must be on or off, got {raw!r}")
    return value == "on"


def one_of(env: Mapping, name: str, allowed: tuple[str, ...], default: str) -> str:
    """One word of `allowed`, any case."""
    raw = env.get(name)
    value = str(raw or default).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return value


def log_level(env: Mapping) -> str:
    """LOG_LEVEL, any case (`info`, `INFO`), as the lower-case name gunicorn takes."""
    return one_of(env, "LOG_LEVEL", LOG_LEVELS, "info")


def split_list(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").split(",") if item.strip()]


# -- where the server listens --------------------------------------------------------------


def listen_address(env: Mapping) -> tuple[str, int]:
    """The (host, port) the server listens on: BIND's when it is `HOST:PORT`, otherwise
    HOST and PORT (127.0.0.1 and 5000). gunicorn.conf.py binds there, `python wsgi.py`
    serves there, and simulator mode's default PUBLIC_BASE_URL and origins follow it."""
    bind = (env.get("BIND") or "").strip()
    host, _, port = bind.rpartition(":")
    if bind and not bind.startswith(("unix:", "fd://")):
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"BIND must be HOST:PORT or unix:PATH, got {bind!r}")
        return host.strip("[]"), int(port)
    port = whole_number(env, "PORT", 5000, minimum=1)
    if port > 65535:
        raise ConfigError(f"PORT must be a port number from 1 to 65535, got {port}")
    return (env.get("HOST") or "127.0.0.1").strip() or "127.0.0.1", port


def bind_address(env: Mapping) -> str:
    """gunicorn's `bind`: BIND as given, or HOST:PORT (an IPv6 host in brackets)."""
    if (env.get("BIND") or "").strip():
        listen_address(env)  # checked
        return env["BIND"].strip()
    host, port = listen_address(env)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_url(env: Mapping) -> str:
    """Where a browser on this machine reaches the server (`make run`'s address): the
    default PUBLIC_BASE_URL."""
    host, port = listen_address(env)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def local_origins(env: Mapping) -> list[str]:
    """The origins a browser on this machine opens the app at: `local_url`, and
    127.0.0.1 and localhost at the same port (a new user types either)."""
    _, port = listen_address(env)
    urls = (local_url(env), f"http://127.0.0.1:{port}", f"http://localhost:{port}")
    return list(dict.fromkeys(urls))
