"""paymentapp: self-hosted M-Pesa checkout. `create_app` is the only factory.

The features (blueprints, Socket.IO handlers, the CLI, the simulator) are imported inside
the `register_*` functions, not at the top: this module runs first whenever any part of
the package is imported (`import paymentapp.models` runs it), and a migration, a test of
one module or a CLI helper must not load the whole app to do so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flask import Flask
from sqlalchemy.orm import configure_mappers
from werkzeug.middleware.proxy_fix import ProxyFix

from . import vendor
from .config import load_config
from .cors import register_cors
from .database import ping_idle_connections, tune_connections
from .errors import register_errorhandlers
from .extensions import csrf, db, limiter, migrate, socketio
from .faults import arm_faults
from .logs import configure_logging, install_redaction, remember_secrets
from .logwriter import thread_writes


def create_app(config: Mapping | None = None, env: Mapping | None = None) -> Flask:
    """Build the app from the environment (or `env`), with `config` overriding keys."""
    settings = load_config(env)
    configure_logging(settings["LOG_LEVEL"], settings["LOG_QUEUE_LINES"])
    app = Flask(__name__)
    # `/api/orders//status` is a 404 in the error shape, not a 308 with an HTML body to a
    # path that means something else (set before any route is added)
    app.url_map.merge_slashes = False
    app.config.update(settings)
    if config:
        app.config.update(config)
    if app.config.get("FAULTS"):
        arm_faults()  # tests only (config.py refuses them outside the simulator)
    # a checkout without the JS build would serve a blank payment page: refuse, naming it
    vendor.check_built(app, os.environ if env is None else env)
    app.json.sort_keys = False
    remember_secrets(
        *app.config.get("MPESA_CALLBACK_TOKENS", ()),
        app.config.get("MPESA_CALLBACK_TOKEN"),
        app.config.get("SECRET_KEY"),
        app.config.get("MPESA_CONSUMER_SECRET"),
        app.config.get("MPESA_PASSKEY"),
        app.config.get("MPESA_SECURITY_CREDENTIAL"),
        app.config.get("MPESA_INITIATOR_PASSWORD"),
        app.config.get("METRICS_TOKEN"),
        *app.config.get("ENCRYPTION_KEYS", ()),
    )
    if app.config["MPESA_ENV"] == "production" and not app.config["MPESA_CALLBACK_ALLOWED_IPS"]:
        logging.getLogger(__name__).warning(
            "MPESA_CALLBACK_ALLOWED_IPS=any: callbacks from every address are trusted as proof "
            "of payment (docs/deployment.md)",
            extra={"event": "config.callback_allowlist_off"},
        )
    # gunicorn's own error and access logs print request paths too
    install_redaction("gunicorn.error", "gunicorn.access")
    thread_writes("gunicorn.error", "gunicorn.access")  # never block a worker either
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    register_cors(app)
    register_proxy_fix(app)
    # Now, in every worker as it starts: SQLAlchemy otherwise configures every mapper when
    # the first ORM object is made, which is a worker's first paid callback (a subscribe
    # makes none): about 70 ms of CPU while its first callbacks queue behind it.
    configure_mappers()
    return app


def register_proxy_fix(app: Flask) -> None:
    """Behind `TRUSTED_PROXY_HOPS` reverse proxies, believe that many `X-Forwarded-For`
    and `X-Forwarded-Proto` entries, once, for everything: rate limits, login lockout,
    the callback IP allowlist and the logs all see the real client address."""
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    with app.app_context():
        ping_idle_connections(db.engine)
        tune_connections(db.engine)
    migrate.init_app(app, db, directory=app.config.get("MIGRATIONS_DIR", "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    from .realtime.server import init_socketio

    init_socketio(app, socketio)


def register_blueprints(app: Flask) -> None:
    from . import admin, favicon, health
    from .api import routes as api
    from .callbacks import routes as callbacks
    from .metrics import routes as metrics
    from .orders import routes as orders
    from .payments import routes as payments
    from .realtime import events  # noqa: F401  (Socket.IO handlers register on import)
    from .realtime import routes as realtime
    from .shop import routes as shop
    from .webhooks import routes as webhooks

    for blueprint in (
        api.bp,
        health.bp,
        orders.bp,
        payments.bp,
        callbacks.bp,
        admin.bp,
        shop.bp,
        vendor.bp,
        favicon.bp,
        webhooks.bp,
        metrics.bp,
        realtime.bp,
    ):
        app.register_blueprint(blueprint)
    if app.config["MPESA_ENV"] == "simulator":
        from . import simulator
        from .simulator.keys import ensure_initiator_keys

        app.register_blueprint(simulator.bp)
        ensure_initiator_keys(app.config)


def register_commands(app: Flask) -> None:
    from . import settings_audit  # noqa: F401  (a reconciler step: it registers on import)
    from .commands import register_commands as install

    install(app)
