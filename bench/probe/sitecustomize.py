"""The callback benchmark's GC probe: every full (generation 2) collection of this process,
written to $BENCH_GC_DIR/gc-<pid>.json at exit. bench/callbacks.py puts this directory on
PYTHONPATH for the Python servers only (Python imports `sitecustomize` at start), so the
app is measured without a change to it.

Nothing here may import threading, socket or ssl: this runs before gevent patches the
standard library (gunicorn's worker patches at its start, wsgi.py before the app).
gunicorn workers are forked from the master: each child starts with an empty list, and
writes its own file when it exits after SIGTERM (gunicorn exits through sys.exit, so
atexit handlers run; a SIGKILLed worker leaves no file, which the bench reports).

File: {"pid": …, "full": [[wall-clock seconds at the start, duration in ms], …]}
"""

import atexit
import gc
import json
import os
import time

_DIR = os.environ.get("BENCH_GC_DIR")
_full: list = []
_began = [0.0, 0.0]  # wall clock and perf_counter at the start of the running collection


def _on_gc(phase: str, info: dict) -> None:
    if info.get("generation") != 2:
        return
    if phase == "start":
        _began[0], _began[1] = time.time(), time.perf_counter()
    else:
        _full.append([_began[0], round((time.perf_counter() - _began[1]) * 1000, 3)])


def _write() -> None:
    path = os.path.join(_DIR, f"gc-{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump({"pid": os.getpid(), "full": _full}, out)


if _DIR:
    gc.callbacks.append(_on_gc)
    atexit.register(_write)
    os.register_at_fork(after_in_child=_full.clear)
