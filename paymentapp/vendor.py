"""Serve third-party browser files from the npm-installed `node_modules` (no CDN).

`make run`/`make test` run `npm ci` from package.json + package-lock.json; only the
files listed here are exposed.
"""

from pathlib import Path

from flask import Blueprint, current_app, send_from_directory

from .errors import NotFound

bp = Blueprint("vendor", __name__, url_prefix="/vendor")

FILES = {
    "socket.io.esm.min.js": "socket.io-client/dist",
    "socket.io.esm.min.js.map": "socket.io-client/dist",
    "socket.io.min.js": "socket.io-client/dist",
    "socket.io.min.js.map": "socket.io-client/dist",
}


def node_modules() -> Path:
    return Path(
        current_app.config.get("NODE_MODULES_DIR")
        or Path(current_app.root_path).parent / "node_modules"
    )


@bp.get("/<path:name>")
def vendor_file(name: str):
    """One whitelisted file from node_modules, cached for a day."""
    folder = FILES.get(name)
    if folder is None or not (node_modules() / folder / name).is_file():
        raise NotFound("No such vendor file (run `npm ci`).", code="not_found")
    return send_from_directory(node_modules() / folder, name, max_age=86400)
