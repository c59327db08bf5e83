"""B2C (`/mpesa/b2c/v3/paymentrequest`): pay money from the B2C shortcode to a phone. Used
for partial refunds (Reversal gives back only a whole transaction, `reversal.py`).

The request carries OUR `OriginatorConversationID`, made before it is sent: Daraja's
guard against paying twice, and the id Transaction Status is asked by when the outcome is
unknown. A B2C request whose answer never came is never sent again (money may have left);
its result or Transaction Status settles it. The answer is an acknowledgement
(`initiator.py`); the outcome comes to ResultURL (`TransactionAmount`,
`TransactionReceipt`, `ReceiverPartyPublicName`, … among its parameters).

Daraja's spelling `Occassion` (sic) is kept.
"""

from __future__ import annotations

import secrets

from .initiator import Acknowledged, InitiatorApi, remarks, security_credential
from .transport import Endpoint, counts_errors

B2C = Endpoint("/mpesa/b2c/v3/paymentrequest", "b2c")


def new_originator_id() -> str:
    """An OriginatorConversationID of our own: unique, and short enough for Daraja."""
    return f"pa-{secrets.token_hex(12)}"


class B2CApi(InitiatorApi):
    """Payments from the configured B2C shortcode to customers' phones."""

    @counts_errors(B2C)
    def pay_to_phone(
        self,
        *,
        originator_conversation_id: str,
        amount: int,
        phone: str,
        reason: str,
        result_url: str,
        timeout_url: str,
        occasion: str = "",
    ) -> Acknowledged:
        """Ask M-Pesa to pay `amount` to `phone` (2547…/2541…) from MPESA_B2C_SHORTCODE."""
        config = self.initiator_config
        payload = {
            "OriginatorConversationID": originator_conversation_id,
            "InitiatorName": self.initiator_name,
            "SecurityCredential": security_credential(config),
            "CommandID": config.get("MPESA_B2C_COMMAND_ID") or "BusinessPayment",
            "Amount": int(amount),
            "PartyA": config["MPESA_B2C_SHORTCODE"],
            "PartyB": phone,
            "Remarks": remarks(reason),
            "QueueTimeOutURL": timeout_url,
            "ResultURL": result_url,
            "Occassion": occasion[:100],
        }
        ack = self._initiate(B2C, payload)
        if not ack.originator_conversation_id:
            ack = Acknowledged(originator_conversation_id, ack.conversation_id, ack.description)
        return ack
