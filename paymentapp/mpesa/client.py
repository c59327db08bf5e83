"""The Daraja client the app uses: one class composed from the API modules, and
`get_client()` for the current app. Import what you need from here; the modules say how
each API behaves (`stk.py`, `c2b.py`, `qr.py`, `reversal.py` on `initiator.py`), how requests go
out (`transport.py`, `tokens.py`) and what an answer means (`errors.py`).
"""

from __future__ import annotations

from flask import current_app

from ..redis_client import redis_client
from .b2c import B2CApi, new_originator_id
from .c2b import C2BApi
from .errors import (
    DarajaAuthError,
    DarajaBusy,
    DarajaError,
    DarajaRefused,
    DarajaUnavailable,
    SubscriberLocked,
)
from .formats import EAT, eat_timestamp, stk_password
from .initiator import Acknowledged, InitiatorNotConfigured, initiator_configured
from .pull import PullApi, PulledTransaction
from .qr import QrApi
from .reversal import ReversalApi
from .stk import PushAccepted, QueryResult, StkApi
from .tokens import TokenCache
from .transaction_status import TransactionStatusApi

__all__ = [
    "EAT",
    "Acknowledged",
    "DarajaAuthError",
    "DarajaBusy",
    "DarajaClient",
    "DarajaError",
    "DarajaRefused",
    "DarajaUnavailable",
    "InitiatorNotConfigured",
    "PulledTransaction",
    "PushAccepted",
    "QueryResult",
    "SubscriberLocked",
    "TokenCache",
    "eat_timestamp",
    "get_client",
    "new_originator_id",
    "initiator_configured",
    "stk_password",
]


class DarajaClient(StkApi, C2BApi, ReversalApi, B2CApi, TransactionStatusApi, PullApi, QrApi):
    """Talks to Daraja (or the simulator, which speaks the same protocol). A new API is a
    `Transport` subclass in a module of its own, added to the bases here."""


def get_client() -> DarajaClient:
    """A client for the current app, sharing the token cache through Redis if configured."""
    return DarajaClient(current_app.config, redis_client())
