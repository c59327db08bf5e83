"""Structured, readable log lines: `event key=value ...` with a human message first.

Secrets never go through here; phone numbers are masked by the caller (`mask_phone`).
"""

from __future__ import annotations

import logging
import os
import sys

SECRET_WORDS = ("password", "secret", "token", "passkey", "authorization", "consumer_key")


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
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    root._paymentapp_configured = True


def _fmt(value) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def log_event(logger: logging.Logger, event: str, message: str, **fields) -> None:
    """Log `message` plus `event=... k=v` pairs; refuses to print secret-looking fields."""
    pairs = " ".join(
        f"{k}={_fmt(v)}"
        for k, v in fields.items()
        if v is not None and not any(word in k.lower() for word in SECRET_WORDS)
    )
    logger.info("%s | event=%s %s", message, event, pairs)
