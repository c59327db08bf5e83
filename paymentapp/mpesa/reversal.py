"""Reversal (`/mpesa/reversal/v1/request`): give back the whole of one M-Pesa
transaction, by its receipt. The answer is an acknowledgement (`initiator.py`); the
outcome comes to ResultURL, or to QueueTimeOutURL when Safaricom's queue timed out.

Daraja's spellings are kept: `RecieverIdentifierType` (sic), `11` = an organisation's
shortcode as the receiver. It reverses the whole transaction: a partial refund is B2C's.
"""

from __future__ import annotations

from .initiator import Acknowledged, InitiatorApi, remarks, security_credential
from .transport import Endpoint, counts_errors

REVERSAL = Endpoint("/mpesa/reversal/v1/request", "reversal")
RECEIVER_IS_SHORTCODE = "11"


class ReversalApi(InitiatorApi):
    """Reversal of a transaction received on the configured shortcode."""

    @counts_errors(REVERSAL)
    def reverse(
        self,
        *,
        receipt: str,
        amount: int,
        shortcode: str,
        reason: str,
        result_url: str,
        timeout_url: str,
        occasion: str = "",
    ) -> Acknowledged:
        """Ask M-Pesa to reverse the transaction `receipt` (its whole `amount`)."""
        payload = {
            "Initiator": self.initiator_name,
            "SecurityCredential": security_credential(self.initiator_config),
            "CommandID": "TransactionReversal",
            "TransactionID": receipt,
            "Amount": int(amount),
            "ReceiverParty": shortcode,
            "RecieverIdentifierType": RECEIVER_IS_SHORTCODE,
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": remarks(reason),
            "Occasion": occasion[:100],
        }
        return self._initiate(REVERSAL, payload)
