"""`/static/js/paymentapp-client.js` is the built @paymentapp/client (clients/js), served
where pages have always imported it from, with socket.io-client from `/vendor/`."""

from tests import services

CLIENT_DIST = services.ROOT / "clients/js/packages/client/dist"


def test_the_built_client_is_served_where_the_pages_import_it(client):
    built = (CLIENT_DIST / "paymentapp-client.js").read_bytes()
    with client.get(
        "/static/js/paymentapp-client.js", headers={"Origin": "https://merchant.example"}
    ) as response:
        assert response.status_code == 200
        assert "javascript" in response.content_type
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.data == built
    assert b'from "../../vendor/socket.io.esm.min.js";' in built
    assert b'from "socket.io-client"' not in built
    assert b"import.meta.url" not in built, "the base URL is always given, never guessed"
    # the package's own build imports socket.io-client by name, for bundlers
    assert b'from "socket.io-client";' in (CLIENT_DIST / "index.js").read_bytes()


def test_the_other_static_files_are_still_flask_static(client):
    with client.get("/static/js/pay-dialog.js") as response:
        assert response.status_code == 200
        assert b'from "./paymentapp-client.js"' in response.data


def test_an_unbuilt_client_is_a_clear_404(app, client, tmp_path):
    app.config["CLIENT_DIST_DIR"] = str(tmp_path)
    response = client.get("/static/js/paymentapp-client.js")
    assert response.status_code == 404
    assert "make install" in response.get_json()["error"]["message"]
