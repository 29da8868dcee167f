"""The one way cloudrec reaches Redis: a plain URL, or the master of a Sentinel-watched group.

Every client (the job store and everything in :class:`worker.runtime.Runtime`, the CLI, the
exporter, the NCS receiver) comes from :func:`redis_client`; the Celery broker, its result
backend and redbeat's schedules take their URLs and options from :func:`celery_redis_config`.
Without ``CLOUDREC_REDIS_SENTINELS`` each is exactly ``CLOUDREC_REDIS_URL``, as always.

With sentinels (``CLOUDREC_REDIS_SENTINELS`` and ``CLOUDREC_REDIS_MASTER``):

- every connection is made to the address the sentinels give for the master, asked again each
  time a connection is (re)made; ``CLOUDREC_REDIS_URL`` still gives the db number and the
  password (its host and port are not used);
- a command that meets a dead master (connection refused or reset), no master yet
  (``MasterNotFoundError``) or a demoted one (``READONLY``: redis-py's sentinel connection turns
  it into a connection error and drops the connection) is retried with a short backoff for up
  to :data:`FAILOVER_RETRY_SECONDS`, longer than a failover takes, so a worker's steps ride
  through one instead of failing;
- a submit is acknowledged only once a replica holds it (:func:`confirm_replicated`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import ExponentialBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from config import Settings
from config.settings import sentinel_address
from worker.errors import NotDurable
from worker.keys import DURABLE_KEY

# A failover with Sentinel's usual settings takes a few seconds (down-after-milliseconds, the
# vote, the promotion): retry a command for longer than that, then give up and raise.
FAILOVER_RETRY_SECONDS = 30.0
_BACKOFF_CAP = 0.5
_BACKOFF_BASE = 0.05
# Talking to a sentinel is one quick question: a sentinel that does not answer within this is
# skipped for the next one.
SENTINEL_TIMEOUT = 2.0
# The broker's publishes (a task's next step, the dispatcher's stops) retried as long.
PUBLISH_RETRY_POLICY = {
    "max_retries": int(FAILOVER_RETRY_SECONDS / _BACKOFF_CAP),
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": _BACKOFF_CAP,
}


CELERY_PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0,
    "interval_max": 1,
    "interval_step": 0.2,
}


def uses_sentinel(settings: Settings) -> bool:
    return bool(settings.redis_sentinels)


def failover_retry() -> Retry:
    """The retry policy of a client through Sentinel: connection errors (a dead or demoted
    master, no master yet) and timeouts, with a short backoff, for about
    :data:`FAILOVER_RETRY_SECONDS`."""
    retries = int(FAILOVER_RETRY_SECONDS / _BACKOFF_CAP)
    return Retry(ExponentialBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE), retries)


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A client of cloudrec's Redis. ``options`` are redis-py's (timeouts, ``retry``)."""
    if not uses_sentinel(settings):
        return redis.Redis.from_url(settings.redis_url, **options)
    options.setdefault("retry", failover_retry())
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [sentinel_address(s) for s in settings.redis_sentinels],
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
        },
    )
    assert settings.redis_master is not None  # Settings requires it with sentinels
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.redis_master, **_credentials(settings), **options
    )
    return client


def _credentials(settings: Settings) -> dict[str, Any]:
    """db, username and password of CLOUDREC_REDIS_URL (the master's; never the sentinels')."""
    parsed = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    return {k: parsed[k] for k in ("db", "username", "password") if parsed.get(k) is not None}


# -- Celery: broker, result backend, redbeat ------------------------------------------------------
def celery_redis_config(settings: Settings, transport_options: dict[str, Any]) -> dict[str, Any]:
    """The Celery settings that say where Redis is: ``broker_url`` and its transport options
    (``transport_options`` plus, with sentinels, ``master_name``), the result backend, redbeat's
    URL and options, and how long a publish is retried."""
    if not uses_sentinel(settings):
        return {
            "broker_url": settings.redis_url,
            "broker_transport_options": transport_options,
            "result_backend": settings.redis_url,
            # Celery's defaults, set again: a process re-configured from Sentinel to a URL
            # (the tests) must not keep the Sentinel values.
            "result_backend_transport_options": {},
            "task_publish_retry_policy": CELERY_PUBLISH_RETRY_POLICY,
            "redbeat_redis_url": settings.redis_url,
            # Without this redbeat warns that it will stop reading broker_transport_options.
            "redbeat_redis_options": {},
        }
    url = sentinel_url(settings)
    master = {"master_name": settings.redis_master}
    creds = _credentials(settings)
    return {
        "broker_url": url,
        "broker_transport_options": {**transport_options, **master},
        "result_backend": url,
        "result_backend_transport_options": master,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        # redbeat's own Sentinel support: "redis-sentinel://" plus these options.
        "redbeat_redis_url": "redis-sentinel://",
        "redbeat_redis_options": {
            "sentinels": [sentinel_address(s) for s in settings.redis_sentinels],
            "service_name": settings.redis_master,
            "db": creds.get("db", 0),
            "password": creds.get("password"),
            "username": creds.get("username"),
            "socket_timeout": SENTINEL_TIMEOUT * 5,
            "sentinel_kwargs": {"socket_timeout": SENTINEL_TIMEOUT},
            # redbeat retries a command that meets no master for this long (its own retry).
            "retry_period": FAILOVER_RETRY_SECONDS,
        },
    }


def sentinel_url(settings: Settings) -> str:
    """kombu's and Celery's form: ``sentinel://[:password@]host:port/db`` per sentinel, joined
    by ``;`` (the password and db are the master's, from CLOUDREC_REDIS_URL)."""
    creds = _credentials(settings)
    user = quote(creds.get("username") or "", safe="")
    password = creds.get("password")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    db = creds.get("db", 0)
    return ";".join(
        f"sentinel://{auth}{_netloc(*sentinel_address(s))}/{db}" for s in settings.redis_sentinels
    )


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- durability ------------------------------------------------------------------------------
def confirm_replicated(
    client: redis.Redis, keys: Sequence[str], replicas: int, timeout: float
) -> None:
    """Return once ``replicas`` replicas hold every write this process made so far, and
    ``keys`` are on the master; raise :class:`NotDurable` otherwise. No-op for 0 replicas.

    ``WAIT`` waits for the replication offset of its connection's last write: a marker written
    on the same connection, after every earlier write of this process (which all returned
    already), makes it cover them whichever pooled connection made them. ``EXISTS`` first: a
    retry of this pipeline after a failover runs on the new master, where the keys may be
    missing (written to the old master, never replicated): then it is not durable either.
    """
    if replicas <= 0:
        return
    with client.pipeline(transaction=False) as pipe:
        pipe.exists(*keys)
        pipe.set(DURABLE_KEY, repr(time.time()), px=60_000)
        pipe.execute_command(  # type: ignore[no-untyped-call]
            "WAIT", replicas, max(1, int(timeout * 1000))
        )
        present, _, acked = pipe.execute()
    if int(present) < len(keys):
        raise NotDurable(
            "the submit was lost in a Redis failover (written to the old master, not "
            "replicated): it is not acknowledged; submit the same spec again"
        )
    if int(acked) < replicas:
        raise NotDurable(
            f"no acknowledgement from {replicas} Redis replica(s) within {timeout:g} s "
            f"(CLOUDREC_REDIS_WAIT_REPLICAS, CLOUDREC_REDIS_WAIT_TIMEOUT; {int(acked)} "
            "answered): the submit is not acknowledged; submit the same spec (same job_id) again"
        )
