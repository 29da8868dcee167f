"""The test Redis: REDIS_URL, a dedicated db index that the fixtures flush."""

from __future__ import annotations

import os

# Tests never touch db 0, where a developer's own cloudrec may live.
TEST_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def every_value(url: str) -> list[bytes]:
    """Every key and every value in the database at ``url``, whatever the type (to search for a
    secret: ``DUMP`` would compress long strings and hide it)."""
    import redis

    client = redis.Redis.from_url(url)
    out: list[bytes] = []
    try:
        for key in client.scan_iter(count=1000):
            out.append(key)
            try:
                out.extend(_values(client, key))
            except redis.ResponseError:  # the key changed type or vanished meanwhile
                continue
    finally:
        client.close()
    return out


def _values(client: object, key: bytes) -> list[bytes]:
    import redis

    assert isinstance(client, redis.Redis)
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return [k + b"=" + v for k, v in client.hgetall(key).items()]
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"zset":
        return [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
    return []
