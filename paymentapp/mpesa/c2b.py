"""C2B (the customer pays the Paybill or Till by hand): Register URL v2, which tells
Daraja where to POST confirmations and validations. Those arrive in `callbacks/c2b.py`;
`flask mpesa register-c2b` (commands.py) calls this.

In production the registration is one-time (changing it goes through Safaricom's
portal); the sandbox and the simulator let you register again.
"""

from __future__ import annotations

from .errors import error_from_body
from .transport import Endpoint, Transport, counts_errors

REGISTER = Endpoint("/mpesa/c2b/v2/registerurl", "c2b_register")


class C2BApi(Transport):
    """C2B URL registration; the shortcode is the caller's (Paybill and STK may differ)."""

    @counts_errors(REGISTER)
    def register_c2b_urls(
        self, *, shortcode: str, confirmation_url: str, validation_url: str, response_type: str
    ) -> dict:
        """Daraja's C2B Register URL (v2); returns its answer. `response_type` is what
        M-Pesa does when the validation URL does not answer in time."""
        payload = {
            "ShortCode": shortcode,
            "ResponseType": response_type,
            "ConfirmationURL": confirmation_url,
            "ValidationURL": validation_url,
        }
        status, body = self._authorised_post(REGISTER, payload, maybe_sent_on_timeout=False)
        if str(body.get("ResponseCode", "")) == "0":
            return body
        raise error_from_body(status, body)
