"""The app's one Redis client for `REDIS_URL`, shared by the Daraja token cache
(`mpesa/`) and `/healthz`."""

import redis
from flask import current_app


def redis_client() -> redis.Redis | None:
    """A Redis client for `REDIS_URL` (short timeouts), or None when unset."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    client = current_app.extensions.get("paymentapp_redis")
    if client is None:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        current_app.extensions["paymentapp_redis"] = client
    return client
