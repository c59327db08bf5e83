"""Secrets at rest: webhook signing secrets are stored encrypted with
ENCRYPTION_KEYS, read back to sign, survive a key rotation (`flask secrets rotate`), and a
live mode refuses to start without a key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from paymentapp import crypto
from paymentapp.config import ConfigError, load_config
from paymentapp.models import WebhookEndpoint
from tests.helpers import LIVE

URL = "/api/webhook-endpoints"


def stored(db, endpoint_id: str) -> str:
    """The secret column as the database holds it."""
    return db.session.execute(
        text("SELECT secret FROM webhook_endpoints WHERE id = :id"), {"id": endpoint_id}
    ).scalar_one()


def endpoint(client, auth) -> dict:
    made = client.post(URL, json={"url": "http://127.0.0.1:9/hook"}, headers=auth)
    assert made.status_code == 201, made.get_data(as_text=True)
    return made.get_json()


def test_a_webhook_secret_is_stored_encrypted_and_read_back(app, client, auth, db):
    made = endpoint(client, auth)
    raw = stored(db, made["id"])
    assert raw.startswith("fernet:") and made["secret"] not in raw
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, made["id"]).secret == made["secret"]
    # a rotation of the endpoint's secret keeps the old one, encrypted too
    rotated = client.post(f"{URL}/{made['id']}/rotate-secret", headers=auth).get_json()
    previous = db.session.execute(
        text("SELECT previous_secret FROM webhook_endpoints WHERE id = :id"),
        {"id": made["id"]},
    ).scalar_one()
    assert previous.startswith("fernet:") and made["secret"] not in previous
    db.session.expire_all()
    row = db.session.get(WebhookEndpoint, made["id"])
    assert (row.secret, row.previous_secret) == (rotated["secret"], made["secret"])


def test_secrets_survive_a_key_rotation(app, client, auth, db):
    made = endpoint(client, auth)
    old = app.config["ENCRYPTION_KEYS"][0]
    new = Fernet.generate_key().decode()
    app.config["ENCRYPTION_KEYS"] = [new, old]  # the new key first: both decrypt
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, made["id"]).secret == made["secret"]
    result = app.test_cli_runner().invoke(args=["secrets", "rotate"])
    assert result.exit_code == 0 and "Re-encrypted the secrets of 1" in result.output
    app.config["ENCRYPTION_KEYS"] = [new]  # the old key gone
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, made["id"]).secret == made["secret"]
    shown = client.get(f"{URL}/{made['id']}", headers=auth)
    assert shown.status_code == 200
    # a key removed before the rotation: the secret cannot be read, and says why
    app.config["ENCRYPTION_KEYS"] = [Fernet.generate_key().decode()]
    db.session.expire_all()
    with pytest.raises(crypto.SecretUnreadable, match="flask secrets rotate"):
        db.session.get(WebhookEndpoint, made["id"]).secret  # noqa: B018


def test_a_secret_from_before_encryption_is_read_and_encrypted_by_a_rotation(app, client, auth, db):
    made = endpoint(client, auth)
    db.session.execute(
        text("UPDATE webhook_endpoints SET secret = 'whsec_plain' WHERE id = :id"),
        {"id": made["id"]},
    )
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, made["id"]).secret == "whsec_plain"
    assert app.test_cli_runner().invoke(args=["secrets", "rotate"]).exit_code == 0
    assert stored(db, made["id"]).startswith("fernet:")
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, made["id"]).secret == "whsec_plain"


def test_live_modes_need_a_valid_key(app):
    without = {k: v for k, v in LIVE.items() if k != "ENCRYPTION_KEY"}
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY is required"):
        load_config(without)
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY must be a Fernet key"):
        load_config({**LIVE, "ENCRYPTION_KEY": "not-a-key"})
    two = [Fernet.generate_key().decode() for _ in range(2)]
    assert load_config({**without, "ENCRYPTION_KEYS": ",".join(two)})["ENCRYPTION_KEYS"] == two
    printed = app.test_cli_runner().invoke(args=["secrets", "new-key"]).output.strip()
    Fernet(printed.encode())  # a usable key
