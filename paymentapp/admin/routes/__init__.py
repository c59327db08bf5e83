"""The dashboard's pages, one module per screen, all on the admin blueprint `bp`; what
each is for: `paymentapp/admin/__init__.py`. Importing them registers their routes."""

from . import api_keys, approvals, audit, orders, review, session, users, webhooks  # noqa: F401
