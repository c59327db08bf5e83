"""`/static/js/paymentapp-client.js` is the built @paymentapp/client (clients/js), served
where pages have always imported it from, with socket.io-client from `/vendor/`; the
dialog's own modules, which a merchant's page on another origin imports through
`pay-dialog.js`, are served cross-origin like it."""

import re

from tests import services

CLIENT_DIST = services.ROOT / "clients/js/packages/client/dist"
# What the package's index.ts exports (values; types vanish from the JS). The hosted
# file, joined from src/'s modules, must export exactly these.
PUBLIC_NAMES = {
    "ConnectionState",
    "NETWORK_RANGES",
    "PHONE_EXAMPLE",
    "PHONE_FORMATS",
    "PaymentClient",
    "PaymentConnection",
    "PaymentError",
    "formatKes",
    "maskPhone",
    "networkOf",
    "normalizePhone",
    "openSocket",
    "phoneProblem",
}
# `import … from "./x.js"` and `import "./x.js"`, over several lines too.
LOCAL_IMPORT = re.compile(r"""^import\s(?:[^"';]*?\sfrom\s)?["'](\./[^"']+)["'];""", re.M)


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
    assert b'from "socket.io-client";' in (CLIENT_DIST / "connection.js").read_bytes()


def test_the_hosted_client_is_one_file_with_the_packages_exports():
    def names(export_list):
        return {name.strip() for name in export_list.split(",") if name.strip()}

    package = re.findall(r"^export \{([^}]*)\} from", (CLIENT_DIST / "index.js").read_text(), re.M)
    assert set().union(*map(names, package)) == PUBLIC_NAMES
    built = (CLIENT_DIST / "paymentapp-client.js").read_text()
    assert not LOCAL_IMPORT.search(built), "src/'s modules are joined into the one file"
    exports = re.findall(r"^export\b.*$", built, re.M)
    assert len(exports) == 1, exports  # one list, at the end
    assert names(re.fullmatch(r"export \{(.*)\};", exports[0]).group(1)) == PUBLIC_NAMES


def test_the_other_static_files_are_still_flask_static(client):
    with client.get("/static/js/pay-dialog.js") as response:
        assert response.status_code == 200
        assert b'from "./paymentapp-client.js"' in response.data


def test_every_module_the_dialog_imports_is_served_cross_origin(client):
    """A merchant's page loads pay-dialog.js from us; the browser then fetches each module
    it imports with CORS too, so every one needs the same header or the dialog never runs."""
    seen, queue = set(), ["pay-dialog.js"]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        with client.get(
            f"/static/js/{name}", headers={"Origin": "https://merchant.example"}
        ) as response:
            assert response.status_code == 200, name
            assert "javascript" in response.content_type, name
            assert response.headers["Access-Control-Allow-Origin"] == "*", name
            source = response.get_data(as_text=True)
        queue += [spec.removeprefix("./") for spec in LOCAL_IMPORT.findall(source)]
    assert {
        "pay-dialog-component.js",
        "pay-dialog-markup.js",
        "pay-dialog-paybill.js",
        "pay-dialog-phone.js",
        "pay-dialog-qr.js",
        "pay-dialog-states.js",
        "paymentapp-client.js",
    } <= seen


def test_an_unbuilt_client_is_a_clear_404(app, client, tmp_path):
    app.config["CLIENT_DIST_DIR"] = str(tmp_path)
    response = client.get("/static/js/paymentapp-client.js")
    assert response.status_code == 404
    assert "make install" in response.get_json()["error"]["message"]
