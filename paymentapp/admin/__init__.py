"""Admin dashboard: login, live orders, order detail, review queue, API keys, webhooks,
the audit log.

Pages: `routes/`, one module per screen, all on `bp` (every endpoint is `admin.*`):
  session.py    what every request goes through (the guard: a live session, then CSRF;
                security headers; what templates get; error pages), login and logout
  orders.py     the orders list and CSV; one order, and recording a payment by hand or
                a refund, checking a prompt now, cancelling
  review.py     the review queue: close with a note, assign a Paybill payment
  api_keys.py   merchant API keys
  webhooks.py   webhook endpoints, test events, resending an event
  audit.py      the audit log (`paymentapp/audit.py`) and its CSV
  actions.py    what every action shares; `attempt` is where a service's refusal becomes
                the answer (a flashed message, or the form refilled with its errors)
Reads (nothing writes):
  queries.py           the orders pages: filters, totals, pages, CSV, an order's history
  charts.py            the orders page's charts: one aggregate query each, by time bucket
  review_queries.py    the review queue and its count
  webhook_queries.py   webhook events with their deliveries and attempts
  lookups.py           the one row a URL or a form names (or a 404)
How things are shown (no database):
  presenters.py          orders, payments and refunds; times, phones and bodies for all
  chart_presenters.py    the charts' series (zeros filled), axes, words and tables
  review_presenters.py   Paybill payments that matched no order
  webhook_presenters.py  endpoints, events, deliveries and attempts
Sessions:
  auth.py     who is logged in, and the rules for logging in and out
  events.py   the `/admin` Socket.IO namespace: only a live session may listen
"""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Imported after `bp` exists: these modules register their routes and handlers on it.
from . import events, routes  # noqa: E402,F401
