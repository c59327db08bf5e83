"""Serve built and third-party browser files (no CDN).

`make run`/`make test` run `npm ci` from package.json + package-lock.json (npm workspaces)
and build `clients/js/packages/client`, the single source of `paymentapp-client.js`:

- `/static/js/paymentapp-client.js`: the built client (`dist/paymentapp-client.js`, which
  imports socket.io-client from `/vendor/`), where the hosted page, the embeddable dialog
  and the admin have always imported it from;
- `/vendor/<name>`: the files listed in FILES, from `node_modules`.
"""

from pathlib import Path

from flask import Blueprint, current_app, send_from_directory

from .errors import NotFound

bp = Blueprint("vendor", __name__)

FILES = {
    "socket.io.esm.min.js": "socket.io-client/dist",
    "socket.io.esm.min.js.map": "socket.io-client/dist",
    "socket.io.min.js": "socket.io-client/dist",
    "socket.io.min.js.map": "socket.io-client/dist",
}
CLIENT_FILE = "paymentapp-client.js"


def node_modules() -> Path:
    return Path(
        current_app.config.get("NODE_MODULES_DIR")
        or Path(current_app.root_path).parent / "node_modules"
    )


def client_dist() -> Path:
    return Path(
        current_app.config.get("CLIENT_DIST_DIR")
        or Path(current_app.root_path).parent / "clients/js/packages/client/dist"
    )


@bp.get("/vendor/<path:name>")
def vendor_file(name: str):
    """One whitelisted file from node_modules, cached for a day."""
    folder = FILES.get(name)
    if folder is None or not (node_modules() / folder / name).is_file():
        raise NotFound("No such vendor file (run `npm ci`).", code="not_found")
    return send_from_directory(node_modules() / folder, name, max_age=86400)


# More specific than Flask's `/static/<path:filename>`, so it wins for this one file.
@bp.get(f"/static/js/{CLIENT_FILE}")
def client_module():
    """The built @paymentapp/client, cached like the other static files."""
    if not (client_dist() / CLIENT_FILE).is_file():
        raise NotFound(f"{CLIENT_FILE} is not built (run `make install`).", code="not_found")
    return send_from_directory(client_dist(), CLIENT_FILE)
