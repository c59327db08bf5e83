"""Test-only fault points: pause or fail at a named place, to test crashes for real.

Off unless `PAYMENTAPP_FAULTS` is set, and refused outside simulator mode (config.py).
The value is a comma-separated list of `point=action`:

- `pause`: the first process to reach the point (across all processes sharing
  `PAYMENTAPP_FAULT_DIR`) writes its pid to `<dir>/<point>.pid` and sleeps there for good,
  so a test can SIGKILL it at exactly that place; later arrivals pass through.
- `raise:<key>`: raise `InjectedFault` whenever the point is reached with that key.
- `sleep:<seconds>`: sleep that long every time the point is reached, whatever the key
  (under gevent the sleep yields, so other requests run meanwhile). At `order.locked`
  it widens a race window on purpose: whoever takes an order's lock first holds it that
  long, and every other request for the order queues behind it
  (`tests/test_concurrency_e2e.py`).

Points: `callback.after_store` (raw body committed, not yet applied),
`callback.after_commit` (transition committed, not yet emitted), `callback.apply`
(keyed by CheckoutRequestID: applying it fails), `order.locked` (an order's row lock
was just taken; for `sleep:`, every order).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import current_app


class InjectedFault(RuntimeError):
    """Raised by a `raise:` fault point; never seen outside tests."""


def parse_faults(raw: str | None) -> dict[str, str]:
    """`point=action,...` as a dict (empty when unset)."""
    faults = {}
    for item in (raw or "").split(","):
        point, _, action = item.strip().partition("=")
        if point:
            faults[point] = action or "pause"
            if action.startswith("sleep:"):
                _seconds(point, action)  # a typo fails at start-up, not mid-test
    return faults


def _seconds(point: str, action: str) -> float:
    try:
        seconds = float(action[len("sleep:") :])
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 60:
        raise ValueError(f"PAYMENTAPP_FAULTS: {point}={action}: seconds must be 0 to 60")
    return seconds


_armed = False  # some app in this process was made with fault points


def arm_faults() -> None:
    """An app with fault points was made: from now on `fault_point` looks at the current
    app's. Until then it returns at once (five fault points on a paid callback's path:
    no request context lookups for nothing)."""
    global _armed
    _armed = True


def fault_point(point: str, key: str | None = None) -> None:
    """Pause or fail here when a test asked for it; a no-op otherwise."""
    if not _armed:
        return
    faults = current_app.config.get("FAULTS")
    if not faults or point not in faults:
        return
    action = faults[point]
    if action.startswith("raise:") and key == action[len("raise:") :]:
        raise InjectedFault(f"fault injected at {point}")
    if action.startswith("sleep:"):
        time.sleep(_seconds(point, action))
        return
    if action == "pause":
        folder = Path(current_app.config.get("FAULT_DIR") or "instance")
        try:
            fd = os.open(folder / f"{point}.pid", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # another process already paused here: pass through
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        while True:  # held until the test kills this process
            time.sleep(1)
