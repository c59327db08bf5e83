"""Transaction Status (`/mpesa/transactionstatus/v1/query`): what became of a transaction,
asked by its receipt (`TransactionID`) or by the OriginatorConversationID of the request
that made it (`OriginalConversationID`). An initiator API: the answer acknowledges
(`initiator.py`); the status comes to ResultURL, with `ReceiptNo`, `TransactionStatus`
("Completed"), `Amount`, `FinalisedTime`, `DebitPartyName`, `CreditPartyName` among its
parameters. Safaricom's secondary reconciliation path when a result never arrives.
"""

from __future__ import annotations

from .initiator import Acknowledged, InitiatorApi, remarks, security_credential
from .transport import Endpoint, counts_errors

STATUS = Endpoint("/mpesa/transactionstatus/v1/query", "transaction_status")
SHORTCODE_IDENTIFIER = "4"  # an organisation's shortcode


class TransactionStatusApi(InitiatorApi):
    """Transaction Status on a shortcode."""

    @counts_errors(STATUS)
    def transaction_status(
        self,
        *,
        shortcode: str,
        result_url: str,
        timeout_url: str,
        transaction_id: str | None = None,
        original_conversation_id: str | None = None,
        reason: str = "Status check",
    ) -> Acknowledged:
        """Ask what became of a transaction; one of the two ids is needed."""
        if not (transaction_id or original_conversation_id):
            raise ValueError("a receipt or an OriginatorConversationID is needed")
        payload = {
            "Initiator": self.initiator_name,
            "SecurityCredential": security_credential(self.initiator_config),
            "CommandID": "TransactionStatusQuery",
            "PartyA": shortcode,
            "IdentifierType": SHORTCODE_IDENTIFIER,
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": remarks(reason),
            "Occasion": "",
        }
        if transaction_id:
            payload["TransactionID"] = transaction_id
        if original_conversation_id:
            payload["OriginalConversationID"] = original_conversation_id
        return self._initiate(STATUS, payload)
