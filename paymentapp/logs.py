"""Structured, readable log lines: `event key=value ...` with a human message first.

Secrets never go through here, and a field named `phone` (or `…_phone`) is always
masked (`2547•••••678`), whoever logs it.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from .phones import mask_phone

SECRET_WORDS = ("password", "secret", "token", "passkey", "authorization", "consumer_key")

# The callback URL's last segment is a secret (`/callbacks/stk/<token>`, and any later
# kind such as `/callbacks/c2b/confirmation/<token>`), and so is `?token=`.
_CALLBACK_PATH = re.compile(r"(/callbacks/(?:[\w-]+/)+)[^/?#\s\"'<>]+")
_QUERY_TOKEN = re.compile(r"([?&](?:token|access_token)=)[^&#\s\"'<>]+")
_known_secrets: set[str] = set()


def remember_secrets(*values: str | None) -> None:
    """Secrets (callback tokens, keys) that must never be printed, wherever they appear."""
    _known_secrets.update(v for v in values if v and len(v) >= 8)


def redact(text: str) -> str:
    """Hide callback tokens in paths, `token=` in queries and every remembered secret."""
    text = _QUERY_TOKEN.sub(r"\1<token>", _CALLBACK_PATH.sub(r"\1<token>", text))
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "<secret>")
    return text


class RedactSecrets(logging.Filter):
    """On every handler: the formatted message and traceback pass through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):  # one record passes several handlers
            return True
        record._redacted = True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not drop the line
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(*logger_names: str) -> None:
    """Add `RedactSecrets` to every handler of the root logger and of `logger_names`."""
    for name in ("", *logger_names):
        for handler in logging.getLogger(name or None).handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())


def configure_logging(level: str | None = None) -> None:
    """One line per record on stderr, UTC timestamps; idempotent."""
    root = logging.getLogger()
    if getattr(root, "_paymentapp_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s",
        "%Y-%m-%dT%H:%M:%SZ",
    )
    formatter.converter = __import__("time").gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    root._paymentapp_configured = True


def _fmt(value) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def log_event(
    logger: logging.Logger,
    event: str,
    message: str,
    *,
    level: int = logging.INFO,
    exc_info: bool = False,
    **fields,
) -> None:
    """Log `message` plus `event=... k=v` pairs; refuses to print secret-looking fields."""
    pairs = " ".join(
        f"{k}={_fmt(mask_phone(str(v)) if k.endswith('phone') else v)}"
        for k, v in fields.items()
        if v is not None and not any(word in k.lower() for word in SECRET_WORDS)
    )
    logger.log(level, "%s | event=%s %s", message, event, pairs, exc_info=exc_info)
