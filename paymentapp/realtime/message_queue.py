"""The Redis message queue between processes, bounded so Redis trouble never stalls a request.

python-socketio's stock `RedisManager` uses redis-py's defaults. Measured with redis-py
8.1 and a frozen Redis (`kill -STOP`): one emit held its caller for 10 s (a 5 s socket
timeout, tried twice); an order update then was two emits, so a callback waited 20 s
(now one publish carries both, `emit_many`). After Redis restarts, its listener backs
off up to 60 s (missing every message meanwhile), and redis-py may silently resubscribe,
so nobody learns that messages were lost. `BoundedRedisManager` changes three things:

- publishing uses its own client with 1 s timeouts and one immediate retry on a broken
  connection (the first publish after a Redis restart meets a stale pooled socket);
  after a failure it skips publishing for a few seconds instead of waiting on Redis
  again for every emit. Clients on this process still get the event (python-socketio
  delivers locally before publishing);
- the listener reconnects itself (no hidden redis-py retries), after at most 2 s;
- after the listener has recovered from a failure it calls `on_resubscribe` (the app
  re-sends current snapshots to the rooms on this process), because the messages
  published while it was away are gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import metrics
from .rooms import RoomIndex

log = logging.getLogger(__name__)

BATCH = "paymentapp_emit_many"  # a published message holding several emits


class BoundedRedisManager(RoomIndex, socketio.RedisManager):
    """A `socketio.RedisManager` whose emits cost at most about `publish_timeout`."""

    name = "redis"

    def __init__(
        self,
        url: str,
        channel: str,
        *,
        write_only: bool = False,
        publish_timeout: float = 1.0,
        skip_after_failure: float = 3.0,
        listen_retry_max: float = 2.0,
        on_resubscribe: Callable[[], None] | None = None,
    ):
        super().__init__(url, channel=channel, write_only=write_only, logger=log)
        self.publish_timeout = publish_timeout
        self.skip_after_failure = skip_after_failure
        self.listen_retry_max = listen_retry_max
        self.on_resubscribe = on_resubscribe
        self._publisher: redis.Redis | None = None
        self._skip_until = 0.0
        self._skipped = 0
        self._failing = False
        self._lock = threading.Lock()
        # Set once Redis has confirmed the listener's first subscription (`events.subscribe`).
        self.listening = threading.Event()
        self._closed = threading.Event()

    def _publisher_client(self) -> redis.Redis:
        if self._publisher is None:
            self._publisher = redis.Redis.from_url(
                self.redis_url,
                socket_connect_timeout=self.publish_timeout,
                socket_timeout=self.publish_timeout,
                # Retry once, at once, on a broken connection only; never on a timeout.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        return self._publisher

    def _publish(self, data) -> None:
        """Publish once, bounded; on failure log and skip publishing for a moment."""
        with self._lock:
            if time.monotonic() < self._skip_until:
                self._skipped += 1
                metrics.count_publish_failure("skipped")
                return
        try:
            self._publisher_client().publish(self.channel, self.json.dumps(data))
        except redis.RedisError as exc:
            metrics.count_publish_failure("error")
            with self._lock:
                self._skip_until = time.monotonic() + self.skip_after_failure
                self._skipped += 1
                first = not self._failing
                self._failing = True
            if first:  # once per outage, not once per emit
                log.error(
                    "socket.io: cannot publish to Redis (%s: %s); other processes miss "
                    "emits until it is back, their clients resync from snapshots",
                    exc.__class__.__name__,
                    exc,
                )
            return
        with self._lock:
            if self._failing:
                log.warning(
                    "socket.io: publishing to Redis again (%d emits were not published)",
                    self._skipped,
                )
            self._failing = False
            self._skipped = 0

    def emit_many(self, emits: list[tuple[str, dict, str, str | None]]) -> None:
        """Several emits `(event, data, namespace, room)` delivered to this process's
        clients, then published to the others as ONE Redis message (a `payment_update`
        goes to its order's room and to the admin dashboards: one publish, not two)."""
        messages = []
        for event, data, namespace, room in emits:
            message = {
                "method": "emit",
                "event": event,
                "data": [data],
                "binary": False,
                "namespace": namespace,
                "room": room,
                "skip_sid": None,
                "callback": None,
                "host_id": self.host_id,
            }
            self._handle_emit(message)  # this process's clients
            messages.append(message)
        self._publish({"method": BATCH, "messages": messages, "host_id": self.host_id})

    def _listen(self):
        """python-socketio's listener loop reads one message at a time: unpack batches."""
        for data in super()._listen():
            message = data
            if isinstance(data, (bytes, str)) and BATCH.encode() in (
                data if isinstance(data, bytes) else data.encode()
            ):
                try:
                    message = self.json.loads(data)
                except ValueError:
                    message = data
            if isinstance(message, dict) and message.get("method") == BATCH:
                yield from message.get("messages") or ()
            else:
                yield data

    def _listener_client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.redis_url,
            socket_connect_timeout=self.publish_timeout * 2,
            socket_keepalive=True,
            # No redis-py retries: a lost subscription must surface here, so that
            # `on_resubscribe` runs once it is back.
            retry=Retry(NoBackoff(), 0),
        )

    def _redis_listen_with_retries(self):
        """Yield pub/sub messages forever, reconnecting quickly after Redis trouble."""
        retry_sleep = 0.25
        subscribed = False
        recovering = False
        while True:
            try:
                if not subscribed:
                    self.redis = self._listener_client()
                    self.pubsub = self.redis.pubsub()
                    self.pubsub.subscribe(self.channel)
                    subscribed = True
                    retry_sleep = 0.25
                    if recovering:
                        recovering = False
                        self._resubscribed()
                for message in self.pubsub.listen():
                    if message["type"] == "subscribe":
                        # Redis confirmed the subscription: from now on every publish
                        # reaches this process (sent is not enough: a publish on another
                        # connection could still come first)
                        self.listening.set()
                    yield message  # python-socketio keeps the messages alone
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect and carry on
                if self._closed.is_set():
                    # Park instead of returning: python-socketio treats a listener that
                    # ends as an error and restarts it.
                    threading.Event().wait()
                if not recovering:
                    log.error(
                        "socket.io: lost the Redis subscription (%s); retrying",
                        exc.__class__.__name__,
                    )
                subscribed = False
                recovering = True
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, self.listen_retry_max)

    def close(self) -> None:
        """Stop listening (tests that build many apps; a worker simply exits)."""
        self._closed.set()
        if self.pubsub is not None:
            self.pubsub.close()

    def _resubscribed(self) -> None:
        """Redis is back: publish again at once, and let the app resync local rooms."""
        log.warning("socket.io: Redis subscription restored; resyncing local rooms")
        with self._lock:
            self._skip_until = 0.0
        if self.on_resubscribe is not None:
            self.server.start_background_task(self._run_on_resubscribe)

    def _run_on_resubscribe(self) -> None:
        try:
            self.on_resubscribe()
        except Exception:  # noqa: BLE001 - a background task must log, not die silently
            log.exception("socket.io: resync after Redis recovery failed")
