"""Daraja's initiator APIs (Reversal today; B2C and Transaction Status build on this):
who asks, and what every one of them answers at once.

- **SecurityCredential**: the initiator's password, RSA-encrypted with the environment's
  certificate (Safaricom's sandbox and production certificates differ; the simulator
  makes its own, simulator/keys.py) with PKCS#1 v1.5 padding, then base64: the
  `cryptography` package does the RSA. `MPESA_SECURITY_CREDENTIAL`, the value the
  Daraja portal generates, is used as it is (the peer libraries disagree on what exactly
  gets encrypted, so the portal's value is the safe path; docs/daraja.md).
- **The answer is only an acknowledgement** (`ResponseCode` "0", `ConversationID`,
  `OriginatorConversationID`); the outcome comes later to the request's ResultURL, or to
  its QueueTimeOutURL when the request timed out in Safaricom's queue (not a failure:
  ask Transaction Status).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import DarajaError, error_from_body
from .transport import Endpoint, Transport

REMARKS_MIN, REMARKS_MAX = 2, 100  # Daraja's limits on `Remarks`


class InitiatorNotConfigured(DarajaError):
    """Refunds and status checks through M-Pesa need MPESA_INITIATOR_NAME and a credential."""

    kind = "not_configured"


def initiator_configured(config) -> bool:
    """Are the initiator APIs on (a name and a credential, or the simulator's own)?"""
    return bool(
        config.get("MPESA_INITIATOR_NAME")
        and (
            config.get("MPESA_SECURITY_CREDENTIAL")
            or (config.get("MPESA_INITIATOR_PASSWORD") and config.get("MPESA_CERT_PATH"))
        )
    )


def encrypt_credential(password: str, certificate_pem: bytes) -> str:
    """base64(RSA-PKCS#1 v1.5(password)) with the public key of a PEM certificate (or a
    bare PEM public key)."""
    try:
        public_key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except ValueError:
        public_key = serialization.load_pem_public_key(certificate_pem)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("the certificate's key is not an RSA key")
    return base64.b64encode(public_key.encrypt(password.encode(), padding.PKCS1v15())).decode()


def security_credential(config) -> str:
    """The SecurityCredential to send: the configured one, or the password encrypted now
    with MPESA_CERT_PATH (a fresh encryption each time: PKCS#1 v1.5 is randomised)."""
    if not initiator_configured(config):
        raise InitiatorNotConfigured(
            "Refunds and checks through M-Pesa are off: set MPESA_INITIATOR_NAME and "
            "MPESA_SECURITY_CREDENTIAL (docs/configuration.md)."
        )
    if config.get("MPESA_SECURITY_CREDENTIAL"):
        return config["MPESA_SECURITY_CREDENTIAL"]
    try:
        certificate = Path(config["MPESA_CERT_PATH"]).read_bytes()
        return encrypt_credential(config["MPESA_INITIATOR_PASSWORD"], certificate)
    except (OSError, ValueError) as exc:
        raise InitiatorNotConfigured(
            f"MPESA_CERT_PATH cannot be used to encrypt the initiator password: {exc}"
        ) from None


def remarks(text: str) -> str:
    """`Remarks` within Daraja's 2–100 characters."""
    text = " ".join((text or "").split())[:REMARKS_MAX]
    return text if len(text) >= REMARKS_MIN else "Refund"


@dataclass(frozen=True)
class Acknowledged:
    """Daraja took the request; the outcome comes to the ResultURL, matched by these."""

    originator_conversation_id: str
    conversation_id: str
    description: str


class InitiatorApi(Transport):
    """The initiator and the one way its requests go out."""

    def __init__(self, config: dict, redis_client=None):
        super().__init__(config, redis_client)
        self.initiator_config = config
        self.initiator_name = config.get("MPESA_INITIATOR_NAME") or ""

    def _initiate(self, endpoint: Endpoint, payload: dict) -> Acknowledged:
        """POST an initiator request. A timeout may have been acted on: the caller must not
        send it again blindly (`DarajaUnavailable.maybe_sent`), but find out what happened
        (the result, or Transaction Status)."""
        status, body = self._authorised_post(endpoint, payload, maybe_sent_on_timeout=True)
        if str(body.get("ResponseCode", "")).strip() == "0" and body.get("ConversationID"):
            return Acknowledged(
                originator_conversation_id=str(body.get("OriginatorConversationID") or ""),
                conversation_id=str(body["ConversationID"]),
                description=str(body.get("ResponseDescription") or ""),
            )
        raise error_from_body(status, body)
