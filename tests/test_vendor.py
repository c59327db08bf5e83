"""The socket.io client is served from the npm-installed package, and nothing else is."""


def test_socketio_esm_is_served_from_node_modules(client):
    with client.get("/vendor/socket.io.esm.min.js") as response:
        assert response.status_code == 200
        assert "javascript" in response.content_type
        assert b"io" in response.data and len(response.data) > 10_000


def test_other_files_are_not_exposed(client):
    assert client.get("/vendor/../package.json").status_code == 404
    assert client.get("/vendor/socket.io-client/package.json").status_code == 404
