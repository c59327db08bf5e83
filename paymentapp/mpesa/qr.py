"""Dynamic QR (`/mpesa/qrcode/v1/generate`): a QR code the customer scans with the M-Pesa
app, which then pays the Paybill with the amount and account filled in. Daraja answers with
the image itself (`QRCode`, a base64 PNG); there is no callback of its own: the payment
arrives as an ordinary C2B confirmation, believed to carry `RefNo` as its `BillRefNumber`
(docs/daraja.md, "Dynamic QR"), so it matches the order like any Paybill payment.
"""

from __future__ import annotations

import base64
import binascii

from .errors import DarajaUnavailable, error_from_body
from .transport import Endpoint, Transport, counts_errors

QR = Endpoint("/mpesa/qrcode/v1/generate", "qrcode")
PAYBILL = "PB"  # TrxCode: pay a Paybill (a till, `BG`, carries no account number)
MERCHANT_NAME_MAX = 22  # what the M-Pesa app shows; longer names are cut
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def qr_offered(config) -> bool:
    """Is Pay by QR offered here: `MPESA_QR` on, and a Paybill (a till, `BG`, takes no
    account number, so its payment could not name the order)."""
    return bool(config.get("MPESA_QR", True)) and (
        config.get("MPESA_TRANSACTION_TYPE") == "CustomerPayBillOnline"
    )


class QrApi(Transport):
    """Dynamic QR for a Paybill payment."""

    @counts_errors(QR)
    def paybill_qr(
        self, *, merchant_name: str, paybill: str, account: str, amount: int, size: int = 300
    ) -> bytes:
        """The PNG of a QR that pays `amount` to `paybill` for `account`."""
        payload = {
            "MerchantName": merchant_name[:MERCHANT_NAME_MAX],
            "RefNo": account,
            "Amount": amount,
            "TrxCode": PAYBILL,
            "CPI": paybill,
            "Size": str(size),
        }
        status, body = self._authorised_post(QR, payload, maybe_sent_on_timeout=False)
        if str(body.get("ResponseCode", "")).startswith("AG_") or (
            status == 200 and body.get("QRCode")
        ):
            try:
                image = base64.b64decode(body.get("QRCode") or "", validate=True)
            except (binascii.Error, ValueError):
                image = b""
            if image.startswith(PNG_MAGIC):
                return image
            raise DarajaUnavailable("Daraja's QR code was not a PNG image.", http_status=status)
        raise error_from_body(status, body)
