"""Where the deployment's one Daraja access token is kept, and the spike-arrest pause.

Each token request invalidates the previous token, so every process shares ONE token:
in Redis when configured (refreshed under a Redis lock, so one process fetches it), else
in this process. `transport.py` fetches it when `get()` has none.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager, suppress

import redis

log = logging.getLogger(__name__)

TOKEN_REFRESH_MARGIN_S = 120  # refresh this long before Daraja's expiry


class TokenCache:
    """One token for the whole deployment: shared in Redis (refreshed under a Redis lock),
    else in this process. If Redis is down, payments keep working on the process copy
    (at worst a few processes fetch their own token until Redis is back)."""

    _local: dict[str, tuple[str, float]] = {}
    _local_lock = threading.Lock()

    def __init__(self, redis_client, key: str):
        self.redis = redis_client
        self.key = key

    @classmethod
    def forget_local(cls) -> None:
        """Drop this process's copies (tests: a new simulator knows none of them)."""
        cls._local.clear()

    def _shared(self, operation, default=None):
        """Run a Redis operation; None (and a warning) when Redis is unreachable."""
        try:
            return operation(self.redis)
        except redis.RedisError as exc:
            log.warning(
                "token cache: Redis unavailable (%s); using this process's copy",
                exc.__class__.__name__,
            )
            return default

    def get(self) -> str | None:
        if self.redis is not None:
            raw = self._shared(lambda r: r.get(self.key), default=False)
            if raw is not False:  # Redis answered: it is the source of truth
                if raw:
                    data = json.loads(raw)
                    if data["expires_at"] - TOKEN_REFRESH_MARGIN_S > time.time():
                        return data["token"]
                return None
        cached = self._local.get(self.key)
        if cached and cached[1] - TOKEN_REFRESH_MARGIN_S > time.time():
            return cached[0]
        return None

    def put(self, token: str, expires_in: int) -> None:
        expires_at = time.time() + expires_in
        self._local[self.key] = (token, expires_at)
        if self.redis is not None:
            value = json.dumps({"token": token, "expires_at": expires_at})
            self._shared(lambda r: r.set(self.key, value, ex=max(expires_in, 1)))

    def drop(self, token: str) -> None:
        """Forget `token` unless another process already replaced it."""
        if self._local.get(self.key, ("",))[0] == token:
            self._local.pop(self.key, None)
        if self.redis is not None:
            raw = self._shared(lambda r: r.get(self.key))
            if raw and json.loads(raw)["token"] == token:
                self._shared(lambda r: r.delete(self.key))

    def pause(self, seconds: float) -> None:
        """Daraja asked us to slow down: no process sends a push for `seconds`."""
        until = time.time() + seconds
        self._local[self.key + ":busy"] = ("", until)
        if self.redis is not None:
            self._shared(lambda r: r.set(self.key + ":busy", str(until), px=int(seconds * 1000)))

    def paused_for(self) -> float:
        """Seconds left of a spike-arrest pause (shared through Redis when configured)."""
        until = self._local.get(self.key + ":busy", ("", 0.0))[1]
        if self.redis is not None:
            raw = self._shared(lambda r: r.get(self.key + ":busy"))
            until = max(until, float(raw)) if raw else until
        return max(0.0, until - time.time())

    @contextmanager
    def lock(self):
        """Only one process refreshes: a Redis lock, or this process's lock without Redis."""
        if self.redis is None:
            with self._local_lock:
                yield
            return
        shared = self.redis.lock(self.key + ":lock", timeout=15, blocking_timeout=20)
        try:
            acquired = shared.acquire()
        except redis.RedisError:
            acquired = None
        if not acquired:
            with self._local_lock:
                yield
            return
        try:
            yield
        finally:
            with suppress(redis.RedisError):
                shared.release()
