"""Built-in Daraja simulator, served at `/_simulator` in simulator mode only.

It speaks Daraja's protocol over real HTTP, so the real client code runs end to end
(docs/payments.md, "The Daraja simulator"). Its state lives in the app database, so it
works across workers.

- models.py: the `sim_*` tables, and the rule that they are disposable (no migration).
- daraja.py: OAuth, STK Push, STK Query, C2B Register URL, queued faults; and the hooks
  guarding every URL.
- callbacks.py: how a prompt ends, and the callback posted to its CallBackURL.
- initiator.py: the initiator APIs (Reversal, Transaction Status), their
  SecurityCredential checked with the simulator's own key pair (keys.py), and the results
  posted to the ResultURL.
- b2c.py: B2C, the business paying a phone (partial refunds), on initiator.py's
  machinery; a used OriginatorConversationID is refused.
- pull.py: Pull Transactions (registration, and the completed Paybill payments of a
  time window, confirmation lost or not).
- c2b.py: Paybill: registered URLs, Pay Bill payments (validation, confirmation) and the
  C2B twins of STK payments.
- phone.py: the simulated handset page (prompts, Pay Bill) and the JSON test API.
"""

from flask import Blueprint

bp = Blueprint("simulator", __name__, url_prefix="/_simulator")

from . import b2c, daraja, initiator, phone, pull, qr  # noqa: E402,F401
from .callbacks import answer_prompt, callback_body  # noqa: E402
from .models import get_prompt, reset_state  # noqa: E402

__all__ = ["bp", "answer_prompt", "callback_body", "get_prompt", "reset_state"]
