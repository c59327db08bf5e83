"""Processes of the callback benchmark: /proc readers, a quiet machine, servers whose
output is drained through a pipe, the noisy neighbour, and the GC probe's files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
NOISE = ROOT / "bench" / "load" / "noise.py"
GUNICORN_WORKERS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")
# What marks a line of a server's log as an error (the "server error lines" problem).
ERROR_MARKERS = ("Traceback", "[ERROR]", " ERROR ", "error:", "failed:")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- /proc -------------------------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine (all cores) has been busy, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def wait_quiet(limit_s: float, threshold_pct: float = 30.0) -> float:
    """Wait (at most `limit_s`) until the machine is nearly idle for a second: other work
    on the 2 shared cores (someone's tests) skews every figure. Returns the last busy %
    (100 = one core) seen, which each run records as `background_pct`."""
    deadline = time.monotonic() + limit_s
    while True:
        before = machine_busy_s()
        time.sleep(1.0)
        busy = (machine_busy_s() - before) * 100
        if busy <= threshold_pct or time.monotonic() >= deadline:
            return round(busy, 1)


def stop_group(proc: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM the process group we started (its leader's pid), then SIGKILL it."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):  # stragglers (workers) of the group
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# -- servers -----------------------------------------------------------------------------


class Server:
    """A server process in its own session (so it and its workers can be stopped as one
    process group). Its stdout and stderr go to a pipe that a separate reader (`cat`, the
    drain) copies to the run's log file, as journald would: a server that logs faster
    than the reader drains waits on its writes. `measured` says whose RSS and CPU count:
    the gunicorn master's children (its workers) or the process itself (node)."""

    def __init__(self, name: str, cmd: list[str], env: dict, port: int, logdir: Path, measured):
        self.name, self.cmd, self.env, self.port = name, cmd, env, port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = logdir / f"{name}-{port}.log"
        self.measured = measured  # "children" or "self"
        self.proc: subprocess.Popen | None = None
        self.drain: subprocess.Popen | None = None

    def start(self) -> Server:
        read_end, write_end = os.pipe()
        try:
            with self.log_path.open("ab") as out:
                self.drain = subprocess.Popen(
                    ["cat"], stdin=read_end, stdout=out, start_new_session=True
                )
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=write_end,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:  # the two processes hold the ends now; the drain ends when the server does
            os.close(read_end)
            os.close(write_end)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the drain's last lines
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer /healthz:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        if self.measured == "children":  # every worker booted, not only the first
            deadline = time.monotonic() + 30
            while len(children(self.proc.pid)) < GUNICORN_WORKERS:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: workers did not start")
                time.sleep(0.1)

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return children(self.proc.pid) if self.measured == "children" else [self.proc.pid]

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids())

    def cpu_s(self) -> float:
        return sum(cpu_s(pid) for pid in self.pids())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def error_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if any(m in line for m in ERROR_MARKERS)]

    def stop(self) -> None:
        stop_group(self.proc, grace=20)
        if self.drain is not None:  # EOF once the server's group is gone: it ends by itself
            try:
                self.drain.wait(10)
            except subprocess.TimeoutExpired:
                stop_group(self.drain, 2)


# -- the noisy neighbour -----------------------------------------------------------------


class Neighbour:
    """bench/load/noise.py's disk writer and CPU burner, started and stopped around the
    callback phase of a noisy run."""

    def __init__(self, workdir: Path):
        self.path = workdir / "noise.bin"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        for args in (["disk", str(self.path)], ["cpu"]):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, str(NOISE), *args],
                    stdout=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    start_new_session=True,
                )
            )

    def stop(self) -> dict:
        """Stop both; what the disk writer reports (fsyncs, their latency)."""
        report: dict = {}
        for proc in self.procs:
            stop_group(proc, 5)
            out = proc.stdout.read() if proc.stdout else ""
            for line in out.splitlines():
                if line.startswith("NOISE "):
                    report.update(json.loads(line[6:]))
        self.procs = []
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        return report


# -- the GC probe ------------------------------------------------------------------------


def gc_report(probe_dir: Path, pids: list[int], window: tuple[float, float]) -> dict | None:
    """Full (generation 2) collections of the server processes `pids`, from the files
    bench/probe/sitecustomize.py wrote at their exit: in the measured window (connect +
    callbacks, wall-clock seconds) and over the process's whole life. None when a
    process left no file (killed, or no probe)."""
    start, end = window
    count = whole = 0
    total = longest = 0.0
    for pid in pids:
        path = probe_dir / f"gc-{pid}.json"
        try:
            events = json.loads(path.read_text())["full"]
        except (OSError, ValueError, KeyError):
            return None
        whole += len(events)
        inside = [ms for at, ms in events if start <= at <= end]
        count += len(inside)
        total += sum(inside)
        longest = max([longest, *inside])
    return {
        "full_gcs": count,
        "full_gc_total_ms": round(total, 1),
        "full_gc_max_ms": round(longest, 1),
        "full_gcs_process_life": whole,
    }
