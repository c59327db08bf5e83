"""Log lines written by a real OS thread, so that logging never stalls a worker.

A gevent worker is one OS thread running thousands of greenlets. A log line written
straight to stderr waits whenever the pipe to journald (or the disk under a log file) is
slow, and while it waits, every connection on that worker waits with it. So a handler
here only formats the line (the caller's CPU, redaction included) and appends it to a
bounded queue; one writer thread per process, started with the *original*
`_thread.start_new_thread` that gevent's patching leaves alone, does the blocking writes.

- **Bounded**: at most `LOG_QUEUE_LINES` lines wait. A line that finds the queue full is
  dropped and counted (`paymentapp_log_lines_dropped_total` on `/metrics`); the writer
  then writes one line saying how many were dropped. A worker never waits for its log.
- **Flushed at exit**: `logging.shutdown` (run at interpreter exit, so also when gunicorn
  stops a worker with SIGTERM or SIGQUIT) flushes every handler, and `flush` waits, up to
  `FLUSH_WAIT_S`, for the writer to write what is queued.
- **A crash**: a process killed outright (SIGKILL, the OOM killer) loses the lines still
  queued: at most what was logged in the last few milliseconds, since the writer keeps up
  unless the stream itself is stuck. An exception's traceback is written like any line.
- **fork**: the queue and thread belong to a process; after a fork (gunicorn's workers)
  the first line logged starts the child's own writer.
"""

from __future__ import annotations

import collections
import logging
import os
import time

from gevent import monkey

# Real OS-thread primitives even in a gevent-patched process.
_start_thread = monkey.get_original("_thread", "start_new_thread")
_sleep = monkey.get_original("time", "sleep")
# Taken only to start a process's writer (its first line, or its first after a fork):
# handlers log without a lock, and two OS threads' first lines must start one writer.
_starting = monkey.get_original("_thread", "allocate_lock")()

QUEUE_LINES = 10_000  # default of LOG_QUEUE_LINES
FLUSH_WAIT_S = 5.0
POLL_S = 0.02  # how often the writer looks for lines when it found none
_BATCH = 256  # lines per write


def _count_drop(lines: int) -> None:
    """Replaced by metrics (`count_drops_with`); logging must not import prometheus."""


def count_drops_with(counter) -> None:
    """Count dropped lines on `counter` (a prometheus Counter) from now on."""
    global _count_drop
    _count_drop = counter.inc


class LineWriter:
    """One process's queue of (handler, text) and the OS thread that writes them."""

    def __init__(self, limit: int = QUEUE_LINES):
        self.limit = limit
        self._pid = None

    def _start(self) -> None:
        self.lines = collections.deque()
        self.dropped_total = 0  # counted by the putting thread only
        self._reported = 0  # of them, told in the log by the writer thread only
        self.queued = 0  # lines ever queued, and of them handled (written or failed)
        self.handled = 0
        _start_thread(self._run, ())
        self._pid = os.getpid()  # last: another thread's first line may now go straight in

    def put(self, handler: logging.StreamHandler, text: str) -> None:
        """Queue `text` for `handler.stream`, or drop and count it when the queue is full.
        Never blocks, and wakes nothing: the writer looks every `POLL_S`."""
        if self._pid != os.getpid():
            with _starting:
                if self._pid != os.getpid():
                    self._start()
        if len(self.lines) >= self.limit:
            self.dropped_total += 1
            _count_drop(1)
            return
        self.lines.append((handler, text))
        self.queued += 1

    def _run(self) -> None:
        # Polling, not a lock released per line: a line must not cost the worker a
        # thread wake-up and a GIL hand-over (three lines per payment at INFO); a few
        # milliseconds of delay on a log line cost nothing.
        while True:
            if self.lines:
                self._write_queued()
            else:
                _sleep(POLL_S)

    def _write_queued(self) -> None:
        while self.lines:
            batch: dict[logging.StreamHandler, list[str]] = {}
            count = min(_BATCH, len(self.lines))
            for _ in range(count):
                handler, text = self.lines.popleft()
                batch.setdefault(handler, []).append(text)
            dropped = self.dropped_total - self._reported
            if dropped:
                self._reported += dropped
                text = f"paymentapp: {dropped} log lines dropped (log queue full)\n"
                batch[next(iter(batch))].append(text)
            for handler, texts in batch.items():
                _write(handler, "".join(texts))
            self.handled += count

    def flush(self, wait_s: float = FLUSH_WAIT_S) -> None:
        """Wait until what is queued now has been written (at most `wait_s`)."""
        if self._pid != os.getpid():
            return
        target, deadline = self.queued, time.monotonic() + wait_s
        while self.handled < target and time.monotonic() < deadline:
            _sleep(0.001)


def _write(handler: logging.StreamHandler, text: str) -> None:
    stream = handler.stream
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # a closed or broken stream: nothing left to tell
        pass


WRITER = LineWriter()


class ThreadedStreamHandler(logging.StreamHandler):
    """A StreamHandler whose writes happen on the process's writer thread."""

    def __init__(self, stream=None, writer: LineWriter = WRITER):
        super().__init__(stream)
        self.writer = writer

    def handle(self, record: logging.LogRecord):
        """`Handler.handle` without the handler's lock, which guards a stream's writes:
        here `emit` only formats the record and queues the line (the queue takes lines
        from any thread), and the writer thread does the writing."""
        passed = self.filter(record)
        if passed:
            self.emit(passed if isinstance(passed, logging.LogRecord) else record)
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - as logging does: report, never raise
            self.handleError(record)
            return
        self.writer.put(self, text)

    def flush(self) -> None:
        self.writer.flush()
        super().flush()


class Threaded(logging.Handler):
    """Wraps a handler made by someone else (gunicorn's error and access logs): its own
    filters and formatter, its stream, written on the writer thread."""

    def __init__(self, target: logging.StreamHandler, writer: LineWriter = WRITER):
        super().__init__(target.level)
        self.target = target
        self.writer = writer

    @property
    def stream(self):
        return self.target.stream

    def emit(self, record: logging.LogRecord) -> None:
        if not self.target.filter(record):
            return
        try:
            text = self.target.format(record) + self.target.terminator
        except Exception:  # noqa: BLE001
            self.handleError(record)
            return
        self.writer.put(self.target, text)

    def flush(self) -> None:
        self.writer.flush()
        self.target.flush()

    def close(self) -> None:
        self.flush()
        super().close()


def reopen_files(*logger_names: str) -> None:
    """gunicorn's USR1 (log rotation) for the files behind `Threaded` handlers: gunicorn
    reopens only the FileHandlers it finds on its loggers, and these are wrapped."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            target = getattr(handler, "target", None)
            if isinstance(target, logging.FileHandler) and target.stream:
                target.acquire()
                try:
                    target.close()
                    target.stream = target._open()
                finally:
                    target.release()


def thread_writes(*logger_names: str) -> None:
    """Put every plain stream handler of these loggers behind the writer thread."""
    for name in logger_names:
        logger = logging.getLogger(name)
        for index, handler in enumerate(list(logger.handlers)):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, ThreadedStreamHandler
            ):
                logger.handlers[index] = Threaded(handler)
