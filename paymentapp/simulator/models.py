"""The simulator's own tables, and the one rule for them: they are disposable.

Simulator state (tokens, open prompts, queued faults, registered C2B URLs, Paybill
payments, reversals, B2C payments, settings) lives in the app database so that every
worker sees it, but it belongs to no migration:

- Every table here is named `sim_*`, and `migrations/env.py` (`include_object`) leaves
  such tables out of autogenerate, so no revision creates, changes or drops them.
- `ensure_tables` creates them on first use, once per process and database: the
  blueprint's `before_request` hook (daraja.py) calls it before every simulator URL, and
  `reset_state` calls it too.
- If a `sim_*` table in the database has other column names than declared below (an
  older layout), all of them are dropped and created anew, losing their rows.
- `reset_state` empties them (tests).

So a change to a table below needs no migration: edit it, and the next process rebuilds.
"""

from __future__ import annotations

import logging
import secrets
import time

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    inspect,
    select,
)
from sqlalchemy.exc import IntegrityError, ProgrammingError

from ..extensions import db
from ..models import UTCDateTime

log = logging.getLogger(__name__)

sim_metadata = MetaData()
sim_tokens = Table(
    "sim_tokens",
    sim_metadata,
    Column("token", String(64), primary_key=True),
    Column("consumer_key", String(128), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)
sim_prompts = Table(
    "sim_prompts",
    sim_metadata,
    Column("checkout_request_id", String(64), primary_key=True),
    Column("merchant_request_id", String(64), nullable=False),
    Column("phone", String(12), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("account_reference", String(12), nullable=False),
    Column("transaction_desc", String(13), nullable=False),
    Column("callback_url", Text, nullable=False),
    Column("transaction_type", String(32), nullable=False),
    Column("party_b", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # open | answered
    Column("result_code", Integer),
    Column("result_desc", String(255)),
    Column("receipt", String(16)),
    Column("send_callback", Boolean, nullable=False, default=True),
    Column("callback_status", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("answered_at", UTCDateTime),
)
sim_c2b_urls = Table(
    "sim_c2b_urls",
    sim_metadata,
    Column("shortcode", String(16), primary_key=True),
    Column("response_type", String(16), nullable=False),  # Completed | Cancelled
    Column("confirmation_url", Text, nullable=False),
    Column("validation_url", Text, nullable=False),
    Column("conversation_id", String(64), nullable=False),
    Column("automatic", Boolean, nullable=False, default=False),  # from the app's config
    Column("registered_at", UTCDateTime, nullable=False),
)
sim_c2b_payments = Table(
    "sim_c2b_payments",
    sim_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trans_id", String(32), nullable=False),
    Column("source", String(16), nullable=False),  # phone | api | stk_twin
    Column("transaction_type", String(16), nullable=False),
    Column("shortcode", String(16), nullable=False),
    Column("account", String(64), nullable=False),  # BillRefNumber, exactly as typed
    Column("amount", Integer, nullable=False),
    Column("msisdn", String(12), nullable=False),
    Column("trans_time", String(14), nullable=False),  # as sent: YYYYMMDDHHMMSS, EAT
    Column("balance", String(20), nullable=False),
    Column("overrides", Text),  # JSON: fields replaced in the body (test API)
    Column("copies", Integer, nullable=False, default=1),
    Column("twin_order", String(8)),  # stk_twin: before | after the STK callback
    # sending | validating | rejected | confirmed | failed
    Column("state", String(16), nullable=False),
    Column("result_code", String(16)),  # the validation's ResultCode
    Column("validation_status", String(255)),
    Column("confirmation_status", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
)
sim_reversals = Table(
    "sim_reversals",
    sim_metadata,
    Column("conversation_id", String(64), primary_key=True),
    Column("originator_conversation_id", String(64), nullable=False),
    Column("receipt", String(32), nullable=False),  # the transaction asked to be reversed
    Column("amount", Integer, nullable=False),
    Column("result_url", Text, nullable=False),
    Column("timeout_url", Text, nullable=False),
    Column("result_code", String(16)),  # as sent: "0", or R000001, 2001, …
    Column("result_desc", String(255)),
    Column("reversal_receipt", String(16)),  # the reversal's own TransactionID
    Column("result_status", String(255)),  # how posting the result went
    Column("created_at", UTCDateTime, nullable=False),
)
sim_b2c_payments = Table(
    "sim_b2c_payments",
    sim_metadata,
    Column("conversation_id", String(64), primary_key=True),
    # the caller's: unique, Daraja's guard against paying twice
    Column("originator_conversation_id", String(64), nullable=False, unique=True),
    Column("phone", String(12), nullable=False),  # PartyB, who is paid
    Column("amount", Integer, nullable=False),
    Column("command_id", String(32), nullable=False),
    Column("result_code", String(16), nullable=False),  # as sent: "0", "1", "2001"
    Column("result_desc", String(255)),
    Column("receipt", String(16)),  # the payment's TransactionReceipt, on success
    Column("result_url", Text, nullable=False),
    Column("timeout_url", Text, nullable=False),
    Column("result_status", String(255)),  # how posting the result went
    Column("created_at", UTCDateTime, nullable=False),
)
sim_status_checks = Table(
    "sim_status_checks",
    sim_metadata,
    Column("conversation_id", String(64), primary_key=True),
    Column("result_url", Text, nullable=False),
    Column("timeout_url", Text, nullable=False),
    Column("result", Text, nullable=False),  # the JSON body to post
    Column("result_status", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
)
sim_qr_codes = Table(  # Dynamic QR codes handed out (qr.py); the phone can scan them
    "sim_qr_codes",
    sim_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("payload", Text, nullable=False),  # what the QR holds (EMVCo-shaped TLV)
    Column("merchant_name", String(64), nullable=False),
    Column("ref_no", String(64), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("trx_code", String(2), nullable=False),
    Column("cpi", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
sim_settings = Table(
    "sim_settings",
    sim_metadata,
    Column("name", String(32), primary_key=True),
    Column("value", String(255), nullable=False),
)
sim_faults = Table(
    "sim_faults",
    sim_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("delay_s", Float, nullable=False, default=0),
)
_ready_engines: set[str] = set()


def ensure_tables() -> None:
    """Create the tables on first use, rebuilding them if an older layout is found.

    On a fresh database the first requests race to create them (the phone page polls
    while the first STK Push arrives, on any worker): the loser's CREATE fails on a
    duplicate, and it simply looks again.
    """
    key = str(db.engine.url)
    if key in _ready_engines:
        return
    for attempt in range(3):
        try:
            _create_tables()
            break
        except (IntegrityError, ProgrammingError):
            if attempt == 2:
                raise
            time.sleep(0.2)
    _ready_engines.add(key)


def _create_tables() -> None:
    inspector = inspect(db.engine)
    stale = any(
        inspector.has_table(table.name)
        and {c["name"] for c in inspector.get_columns(table.name)} != set(table.columns.keys())
        for table in sim_metadata.sorted_tables
    )
    if stale:
        log.info("simulator: rebuilding its sim_* tables for a newer layout")
        sim_metadata.drop_all(db.engine, checkfirst=True)
    sim_metadata.create_all(db.engine, checkfirst=True)


def reset_state() -> None:
    """Forget all tokens, prompts, faults, C2B registrations, payments, reversals, B2C
    payments, status checks and settings: every `sim_*` table (tests)."""
    ensure_tables()
    for table in sim_metadata.sorted_tables:
        db.session.execute(delete(table))
    db.session.commit()


RECEIPT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def new_receipt() -> str:
    """A fresh M-Pesa receipt (`S` and nine of Daraja's characters), unique across STK
    receipts, C2B TransIDs, reversals and B2C payments: one movement of money, one
    receipt."""
    while True:
        receipt = "S" + "".join(secrets.choice(RECEIPT_ALPHABET) for _ in range(9))
        taken = db.session.execute(
            select(sim_prompts.c.receipt)
            .where(sim_prompts.c.receipt == receipt)
            .union_all(
                select(sim_c2b_payments.c.trans_id).where(sim_c2b_payments.c.trans_id == receipt),
                select(sim_reversals.c.reversal_receipt).where(
                    sim_reversals.c.reversal_receipt == receipt
                ),
                select(sim_b2c_payments.c.receipt).where(sim_b2c_payments.c.receipt == receipt),
            )
        ).first()
        if taken is None:
            return receipt


def get_prompt(checkout_id: str):
    """The prompt row for a CheckoutRequestID, or None."""
    return db.session.execute(
        select(sim_prompts).where(sim_prompts.c.checkout_request_id == checkout_id)
    ).first()
