"""The simulator's initiator key pair: what Safaricom's certificate is to a live
deployment. The app encrypts the initiator password with this certificate exactly as it
would with Safaricom's (`mpesa/initiator.py`), and the simulator's Reversal, B2C and
Transaction Status endpoints decrypt the SecurityCredential with the private key, so the
real encryption path runs in `make run` and in the tests.

Made once per machine in `instance/` (beside the certificate named by MPESA_CERT_PATH),
by whichever process starts first; the others read it.
"""

from __future__ import annotations

import base64
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ..config import SIMULATOR_INITIATOR_NAME


def _key_path(cert_path: str) -> Path:
    return Path(cert_path).with_suffix(".key")


def _publish(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all; a file already there wins (another process)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name)
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def ensure_initiator_keys(config) -> None:
    """Make the key pair and its self-signed certificate, if the simulator's own initiator
    is configured and they are not there yet."""
    if config["MPESA_INITIATOR_NAME"] != SIMULATOR_INITIATOR_NAME or not config["MPESA_CERT_PATH"]:
        return
    cert_path = Path(config["MPESA_CERT_PATH"])
    key_path = _key_path(cert_path)
    if cert_path.is_file() and key_path.is_file():
        return
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    if not key_path.is_file():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _publish(key_path, pem)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if cert_path.is_file():
        return
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paymentapp Daraja simulator")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    _publish(cert_path, certificate.public_bytes(serialization.Encoding.PEM))


def decrypt_credential(config, credential: str) -> str | None:
    """The password inside a SecurityCredential, or None when it does not decrypt with
    the simulator's key (wrong certificate, not base64, not PKCS#1 v1.5)."""
    key_path = _key_path(config["MPESA_CERT_PATH"] or "")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        data = base64.b64decode(credential, validate=True)
        return key.decrypt(data, padding.PKCS1v15()).decode()
    except (OSError, ValueError, TypeError, InvalidKey, UnicodeDecodeError):
        return None
