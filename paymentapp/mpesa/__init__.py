"""M-Pesa: the Daraja client, one module per Daraja API (the built-in simulator is
`paymentapp/simulator/`).

- `client.py`: `DarajaClient`, composed from the API classes below, and `get_client()`;
  the rest of the app imports from here.
- `stk.py`: M-Pesa Express, STK Push and STK Query.
- `c2b.py`: C2B Register URL (v2), for Paybill confirmations and validations.
- `transport.py`: the HTTP session, the access token (Daraja's Authorization API), the
  authorised POST with its one retry, and the per-endpoint metrics (`counts_errors`).
- `tokens.py`: the deployment's one token (Redis or this process) and the busy pause.
- `errors.py`: `DarajaError` and its kinds, and the mapping from Daraja's error answers.
- `formats.py`: Daraja's formats, defined once: EAT timestamps, amounts, receipts,
  account (order) numbers. Used by STK, C2B, order numbers and the simulator.

- `initiator.py`: what the initiator APIs share: the SecurityCredential (RSA with the
  environment's certificate) and the acknowledgement every request gets.
- `reversal.py`: Reversal of a transaction, by its receipt.

Room for the other initiator APIs (docs/daraja.md): B2C (`b2c.py`), Transaction Status
(`transaction_status.py`), and Pull Transactions (`pull.py`), each an `InitiatorApi` (or
`Transport`) subclass with its own `Endpoint`s, added to `DarajaClient`'s bases.
"""
