"""Structured, readable log lines: a human message first, then `event=… key=value ...`.

Code logs through the standard library, naming the event and its fields in `extra`:

    log.info(f"order {number} marked paid", extra={"event": "order.paid", "order": number})

and every handler the app installs renders them, in one place (`RedactSecrets` below):
`order ORD-… marked paid | event=order.paid order=ORD-…`. A field whose name looks like
a secret (`token`, `password`, …) is never printed, a field named `phone` (or `…_phone`)
is always masked (`2547•••••678`), whoever logs it, and the whole line then passes the
secret redaction.
"""

from __future__ import annotations

import logging
import re
import sys
from functools import lru_cache

from .logwriter import QUEUE_LINES, WRITER, ThreadedStreamHandler
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
    """Hide callback tokens in paths, `token=` in queries and every remembered secret.
    (Each pattern runs only on text holding what it must match: most lines hold neither.)"""
    if "/callbacks/" in text:
        text = _CALLBACK_PATH.sub(r"\1<token>", text)
    if "token=" in text:
        text = _QUERY_TOKEN.sub(r"\1<token>", text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "<secret>")
    return text


# what every LogRecord has; anything else on a record came in through `extra`
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def _fmt(value) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


@lru_cache(maxsize=4096)
def _printed(name: str) -> bool:
    """Whether a record's attribute `name` is a field to print: one that came in through
    `extra` (not what every record has, not the event itself, not private) and does not
    look like a secret. Names come from the code, so the cache stays small."""
    return (
        name not in _RECORD_ATTRIBUTES
        and name != "event"
        and not name.startswith("_")
        and not any(word in name.lower() for word in SECRET_WORDS)
    )


def event_fields(record: logging.LogRecord) -> str:
    """` | event=… k=v …` for a record logged with `extra={"event": …, …}` ("" without):
    secret-looking fields left out, phones masked, None left out."""
    event = getattr(record, "event", None)
    if event is None:
        return ""
    pairs = " ".join(
        f"{k}={_fmt(mask_phone(str(v)) if k.endswith('phone') else v)}"
        for k, v in vars(record).items()
        if v is not None and _printed(k)
    )
    return f" | event={event} {pairs}".rstrip()


class RedactSecrets(logging.Filter):
    """On every handler: the message gets its event fields (`event_fields`), then it and
    the traceback pass through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):  # one record passes several handlers
            return True
        record._redacted = True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not drop the line
            message = str(record.msg)
        record.msg, record.args = redact(message + event_fields(record)), None
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


def configure_logging(level: str = "info", queue_lines: int = QUEUE_LINES) -> None:
    """One line per record on stderr, UTC timestamps, at `level` (config's LOG_LEVEL, any
    case: checked by `environment.log_level`), written by the process's log thread
    (`logwriter.py`: never blocks a worker) with at most `queue_lines` waiting;
    idempotent."""
    WRITER.limit = queue_lines
    root = logging.getLogger()
    if getattr(root, "_paymentapp_configured", False):
        return
    handler = ThreadedStreamHandler(sys.stderr)
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s",
        "%Y-%m-%dT%H:%M:%SZ",
    )
    formatter.converter = __import__("time").gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(level.upper())  # logging knows only the upper-case names
    # the line names no source file, line, thread or multiprocessing process: no record
    # collects them (the stack walk alone was 5 % of a line's cost; the logging HOWTO's
    # "Optimization")
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    root._paymentapp_configured = True
