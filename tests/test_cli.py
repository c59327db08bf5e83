"""CLI commands: API keys are printed once and stored hashed, listed and revoked (refused
from the next request on); admins get password hashes."""

from sqlalchemy import select
from werkzeug.security import check_password_hash

from paymentapp import audit
from paymentapp.models import AdminUser, ApiKey
from paymentapp.security import create_api_key, hash_api_key
from tests.helpers import assert_error


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


def test_apikey_list_shows_name_prefix_created_and_revoked(app, db):
    runner = app.test_cli_runner()
    empty = runner.invoke(args=["apikey", "list"])
    assert empty.exit_code == 0 and "No API keys" in empty.output
    shop, _ = create_api_key("web shop")
    pos, _ = create_api_key("till")
    assert runner.invoke(args=["apikey", "revoke", "till"]).exit_code == 0
    result = runner.invoke(args=["apikey", "list"])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.strip().splitlines()
    assert header.split() == ["NAME", "PREFIX", "CREATED", "(UTC)", "REVOKED", "(UTC)", "SCOPES"]
    assert rows[0].startswith("web shop") and f"{shop.prefix}…" in rows[0]
    assert rows[0].split()[-3:] == ["active", "all", "scopes"]
    db.session.refresh(pos)
    assert rows[1].startswith("till") and pos.revoked_at.strftime("%Y-%m-%d %H:%M") in rows[1]
    assert "pk_" not in result.output.replace(shop.prefix, "").replace(pos.prefix, "")


def test_apikey_revoke_refuses_the_key_at_once(app, db, client):
    _, plain = create_api_key("web shop")
    auth = {"Authorization": f"Bearer {plain}"}
    assert client.get("/api/orders", headers=auth).status_code == 200
    result = app.test_cli_runner().invoke(args=["apikey", "revoke", "web shop"])
    assert result.exit_code == 0, result.output
    assert "Revoked 1 API key named 'web shop'" in result.output
    assert_error(client.get("/api/orders", headers=auth), 401, "invalid_api_key")


def test_apikey_revoke_unknown_name_fails_clearly(app, db):
    create_api_key("web shop")
    result = app.test_cli_runner().invoke(args=["apikey", "revoke", "webshop"])
    assert result.exit_code != 0
    assert "No active API key is named 'webshop' (active keys: 'web shop')" in result.output
    # a key revoked already is not active: revoking it again says so too
    app.test_cli_runner().invoke(args=["apikey", "revoke", "web shop"])
    again = app.test_cli_runner().invoke(args=["apikey", "revoke", "web shop"])
    assert again.exit_code != 0 and "active keys: none" in again.output


def test_apikey_revoke_revokes_every_key_with_the_name(app, db, client):
    keys = [create_api_key("shop")[1] for _ in range(3)]
    _, other = create_api_key("till")
    result = app.test_cli_runner().invoke(args=["apikey", "revoke", "shop"])
    assert result.exit_code == 0, result.output
    assert "Revoked 3 API keys named 'shop'" in result.output
    for plain in keys:
        response = client.get("/api/orders", headers={"Authorization": f"Bearer {plain}"})
        assert response.status_code == 401
    assert (
        client.get("/api/orders", headers={"Authorization": f"Bearer {other}"}).status_code == 200
    )
    assert db.session.scalar(select(ApiKey).where(ApiKey.name == "till")).revoked_at is None


def test_audit_tail_prints_the_newest_events_oldest_first(app, db):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["audit", "tail"]).output == ""  # nothing yet
    assert runner.invoke(args=["apikey", "create", "web shop"]).exit_code == 0
    for number in range(3):
        audit.record("order.cancelled", f"ORD-{number} cancelled", target=f"ORD-{number}")
    db.session.commit()
    lines = runner.invoke(args=["audit", "tail", "-n", "2"]).output.splitlines()
    assert [line.split("  ")[1:] for line in lines] == [
        ["system", "-", "-", "order.cancelled", "ORD-1", "ORD-1 cancelled"],
        ["system", "-", "-", "order.cancelled", "ORD-2", "ORD-2 cancelled"],
    ]
    first = runner.invoke(args=["audit", "tail"]).output.splitlines()[0]
    assert first.split("  ")[1:5] == ["cli", "-", "-", "apikey.created"]
    assert first[10] == "T" and first[19] == "Z"  # UTC, ISO 8601


def test_audit_tail_follow_prints_what_comes_next(app, db, capsys):
    audit.record("secrets.rotated", "earlier", actor="cli")
    db.session.commit()
    before = db.session.scalar(audit.events().limit(1)).id - 1
    polls = []

    def stop():
        polls.append(1)
        if len(polls) == 2:  # after the first poll, someone acts
            audit.record("webhook.deleted", "later", target="we_1", actor="alice", role="owner")
            db.session.commit()
        return len(polls) == 3

    last = audit.follow_from(before, interval=0, stop=stop)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1:] for line in printed] == [
        ["cli", "-", "-", "secrets.rotated", "-", "earlier"],
        ["alice", "owner", "-", "webhook.deleted", "we_1", "later"],
    ]
    assert last == db.session.scalar(audit.events().limit(1)).id
