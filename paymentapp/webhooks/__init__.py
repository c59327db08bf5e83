"""Merchant webhooks: signed, retried, at-least-once order events to the merchant's server.

`events.py` is the catalogue and the outbox writer (called inside the transaction of each
change, from `outbox/hook.py`), `endpoints.py` registers URLs (with SSRF checks),
`delivery.py` claims and sends deliveries with back-off, `signing.py` is the signature
both sides compute, `routes.py` the merchant API and `commands.py` the CLI.
"""
