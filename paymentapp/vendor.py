"""Serve built and third-party browser files (no CDN).

`make run`/`make test` run `npm ci` from package.json + package-lock.json (npm workspaces)
and build `clients/js/packages/client`, the single source of `paymentapp-client.js`:

- `/static/js/paymentapp-client.js`: the built client (`dist/paymentapp-client.js`, which
  imports socket.io-client from `/vendor/`), where the hosted page, the embeddable dialog
  and the admin have always imported it from;
- `/vendor/<name>`: the files listed in FILES, from `node_modules`.

Without them the payment page is blank, so `create_app` refuses to start while one is
missing (`check_built`; PAYMENTAPP_ALLOW_MISSING_ASSETS=1 starts anyway) and `/healthz`
names them (`missing`).
"""

from collections.abc import Mapping
from pathlib import Path

from flask import Blueprint, Flask, current_app, send_from_directory

from .environment import ConfigError, flag
from .errors import NotFound

bp = Blueprint("vendor", __name__)

FILES = {
    "socket.io.esm.min.js": "socket.io-client/dist",
    "socket.io.esm.min.js.map": "socket.io-client/dist",
    "socket.io.min.js": "socket.io-client/dist",
    "socket.io.min.js.map": "socket.io-client/dist",
}
CLIENT_FILE = "paymentapp-client.js"


def node_modules(app: Flask | None = None) -> Path:
    app = app or current_app
    return Path(app.config.get("NODE_MODULES_DIR") or Path(app.root_path).parent / "node_modules")


def client_dist(app: Flask | None = None) -> Path:
    app = app or current_app
    return Path(
        app.config.get("CLIENT_DIST_DIR")
        or Path(app.root_path).parent / "clients/js/packages/client/dist"
    )


def missing(app: Flask | None = None) -> list[str]:
    """The URLs of the files the pages load whose source is not on disk (source maps
    aside); `make install` or `make build` makes them all."""
    app = app or current_app
    files = {f"/static/js/{CLIENT_FILE}": client_dist(app) / CLIENT_FILE}
    for name, folder in FILES.items():
        if not name.endswith(".map"):
            files[f"/vendor/{name}"] = node_modules(app) / folder / name
    return [url for url, path in files.items() if not path.is_file()]


def check_built(app: Flask, env: Mapping) -> None:
    """Refuse to start an app that would serve a blank payment page, unless told to."""
    allowed = flag(env, "PAYMENTAPP_ALLOW_MISSING_ASSETS")
    absent = missing(app)
    if absent and not allowed:
        raise ConfigError(
            f"the payment page's browser files are missing ({', '.join(absent)}): "
            "run `make install` (on a server: `make build`), or set "
            "PAYMENTAPP_ALLOW_MISSING_ASSETS=1 to start without them"
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
