"""The noisy neighbour of the callback benchmark (bench/callbacks.py --noisy starts one of
each during the callback phase and stops them with SIGTERM). Both are bounded:

- `disk PATH`: writes 64 KiB and fsyncs, at most 50 times a second, to PATH on the same
  disk as the databases and the logs (rewinding at 64 MiB; PATH is deleted at the end).
  Prints `NOISE {"fsyncs": n, "fsync_ms": {p50, p99, max}}` when stopped.
- `cpu`: keeps about half of one core busy (spin 10 ms, sleep 10 ms).

    .venv/bin/python bench/load/noise.py disk /tmp/noise.bin
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

BLOCK = 64 * 1024
FSYNCS_PER_S = 50
MAX_FILE = 64 * 1024 * 1024
SPIN_S = SLEEP_S = 0.010


def _stop(signum, frame):
    raise SystemExit(0)  # through `finally`: the file is removed, the report printed


def disk(path: str) -> None:
    block = os.urandom(BLOCK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    took: list[float] = []
    try:
        while True:
            started = time.perf_counter()
            if os.lseek(fd, 0, os.SEEK_CUR) >= MAX_FILE:
                os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, block)
            os.fsync(fd)
            took.append((time.perf_counter() - started) * 1000)
            time.sleep(max(0.0, 1 / FSYNCS_PER_S - (time.perf_counter() - started)))
    finally:
        os.close(fd)
        os.unlink(path)
        took.sort()
        ms = {"p50": _at(took, 0.5), "p99": _at(took, 0.99), "max": _at(took, 1)}
        print("NOISE " + json.dumps({"fsyncs": len(took), "fsync_ms": ms}), flush=True)


def _at(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


def cpu() -> None:
    while True:
        until = time.perf_counter() + SPIN_S
        while time.perf_counter() < until:
            pass
        time.sleep(SLEEP_S)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if sys.argv[1:2] == ["disk"] and len(sys.argv) == 3:
        disk(sys.argv[2])
    elif sys.argv[1:] == ["cpu"]:
        cpu()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
