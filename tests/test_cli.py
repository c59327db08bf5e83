"""CLI commands: API keys are printed once and stored hashed; admins get password hashes."""

from sqlalchemy import select
from werkzeug.security import check_password_hash

from paymentapp.models import AdminUser, ApiKey
from paymentapp.security import hash_api_key


def test_apikey_create_prints_key_once_and_stores_hash(app, db, client):
    result = app.test_cli_runner().invoke(args=["apikey", "create", "web shop"])
    assert result.exit_code == 0, result.output
    plain = result.output.strip().splitlines()[-1]
    assert plain.startswith("pk_")
    record = db.session.scalar(select(ApiKey))
    assert record.name == "web shop" and record.key_hash == hash_api_key(plain)
    assert plain not in (record.key_hash + record.prefix)
    assert (
        client.get("/api/orders", headers={"Authorization": f"Bearer {plain}"}).status_code == 200
    )


def test_apikey_create_refuses_empty_name(app):
    result = app.test_cli_runner().invoke(args=["apikey", "create", "  "])
    assert result.exit_code != 0


def test_admin_create_prompts_and_hashes(app, db):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["admin", "create", "alice"], input="correct horse\ncorrect horse\n"
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(AdminUser).where(AdminUser.username == "alice"))
    assert check_password_hash(user.password_hash, "correct horse")
    assert "correct horse" not in user.password_hash
    short = runner.invoke(args=["admin", "create", "bob"], input="short\nshort\n")
    assert short.exit_code != 0
    assert db.session.scalar(select(AdminUser).where(AdminUser.username == "bob")) is None
