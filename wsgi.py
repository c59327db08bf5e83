"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, `flask --app wsgi ...`, and
`python wsgi.py` (one process, at HOST:PORT; settings from the environment over `.env`).

gevent must patch the standard library before anything imports ssl, socket or redis;
gunicorn's gevent worker patches before it loads this module (no preload_app), and for
`flask --app wsgi` and plain `python wsgi.py` we patch here, first thing.
"""

from gevent import monkey

if not monkey.is_module_patched("socket"):
    monkey.patch_all()

import gc  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from paymentapp import create_app  # noqa: E402
from paymentapp.config import ConfigError  # noqa: E402
from paymentapp.environment import listen_address  # noqa: E402

try:
    app = create_app()
    host, port = listen_address(os.environ)  # where `python wsgi.py` serves (`.env` read)
except ConfigError as exc:
    sys.exit(f"paymentapp: configuration error: {exc}")

# Everything loaded so far (modules, the app, SQLAlchemy's mappers) lives as long as the
# process: keep it out of the collector's sweeps, and sweep the youngest objects less
# often (a request makes thousands of short-lived ones). docs/performance.md measures it.
gc.freeze()
gc.set_threshold(7000, 20, 20)

if __name__ == "__main__":
    from paymentapp.extensions import socketio

    socketio.run(app, host=host, port=port)
