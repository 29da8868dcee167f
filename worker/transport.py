"""kombu's Redis transport, with one hole closed: a message popped into a worker's socket.

The Redis transport consumes with ``BRPOP``: Redis removes the message from its list the moment
it answers. kombu records a message in its ``unacked`` hash (where a dead worker's message can
be found again, see :mod:`worker.restorer`) only once it has *read* that answer. When a worker
runs out of prefetch credit while a ``BRPOP`` is outstanding (an ETA or countdown message came
due, all pool slots busy), stock kombu *pauses* the socket with the answer unread, "until credit
returns", which may be the length of a slow API call. A worker SIGKILLed meanwhile takes that
message with it: it is in no list, not in ``unacked``, and no visibility timeout brings it back.
Measured: 1 submit in 40 lost this way in a chaos run (benchmarks/chaos.py, run 3).

Here the answer is read at once instead and the message delivered like any other: it is
recorded in ``unacked`` (and in the worker's held set) and waits in the worker for a free pool
slot, one message over the prefetch limit at most (no new ``BRPOP`` is sent without credit).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class _Poller(kombu_redis.MultiChannelPoller):  # type: ignore[misc]
    def _pause_brpop(self, channel: Any, fileno: int) -> None:
        """Never leave a popped message unread: read it when the socket is readable."""

    def on_readable(self, fileno: int) -> Any:
        chan_type = self._fd_to_chan.get(fileno)
        if chan_type is not None:
            chan, kind = chan_type
            if kind == "BRPOP" and chan._in_poll and not chan.qos.can_consume():
                # The answer of a BRPOP sent while there was credit: Redis has popped the
                # message already. Deliver it (it is held unacknowledged until a slot frees).
                return chan.handlers[kind]()
        return super().on_readable(fileno)


class _ClientReuse:
    """A channel that builds its synchronous Redis client once per connection pool.

    kombu builds a new ``redis.Redis`` object for every publish, task event and ack
    (``conn_or_acquire``), and each one copies its response callbacks: about 150 us of CPU each
    on this machine, 7% of a worker (benchmarks/README.md). The client object is only a handle
    on the pool (thread-safe: the task threads of ``--pool threads`` may share it), so one per
    pool does. kombu drops the pool after a fork and when the connection is lost
    (``_disconnect_pools``): the next call then builds a client on the new pool, never the old
    one (tests/worker/test_transport.py). Closing a client that was given its pool never
    disconnects that pool (redis-py's ``auto_close_connection_pool`` is off for it).
    """

    _sync_client: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # kombu checks a new channel with ``self.client.ping()``: its consuming (BRPOP) client,
        # on the channel's second pool. A channel that only publishes (a worker's producers, up
        # to broker_pool_limit per process) then held a connection that never sent anything
        # but that PING: ~1.8 KB of Redis memory and a socket each (benchmarks/README.md,
        # session 12). The check goes through the publishing client instead; the consuming
        # client connects when a consumer first uses it.
        self.__dict__["client"] = _PingThroughPublisher(self)
        try:
            super().__init__(*args, **kwargs)
        finally:
            if isinstance(self.__dict__.get("client"), _PingThroughPublisher):
                del self.__dict__["client"]

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # type: ignore[attr-defined]
        client = self._sync_client
        if client is None or client.connection_pool is not pool:
            client = self._sync_client = super()._create_client()  # type: ignore[misc]
        return client


class _PingThroughPublisher:
    """Stands in for a channel's consuming client while kombu builds the channel: its one use
    there, the connection check, goes through the publishing client."""

    def __init__(self, channel: _ClientReuse) -> None:
        self._channel = channel

    def ping(self) -> Any:
        return self._channel._create_client().ping()


class _Channel(_ClientReuse, kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel, reusing its client (:class:`_ClientReuse`)."""


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """The Redis transport with :class:`_Poller` and :class:`_Channel`."""

    Channel = _Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = _Poller()


# How long a channel closing after a failover keeps trying to put its messages back: longer
# than a failover takes (the sentinels' vote and the promotion).
RESTORE_PATIENCE = 30.0


class _FailoverQoS(kombu_redis.QoS):  # type: ignore[misc]
    """kombu's QoS, whose restore of the unacknowledged messages waits for the new master.

    A consumer whose connection broke (the master died) closes its channel, and kombu puts the
    messages it held (running, or waiting for their countdown) back on their queues at once,
    then forgets them. Against a dead master that restore fails, and the messages waited in the
    ``unacked`` hash for the visibility timeout (5 minutes): measured, a job whose acquire or
    start was among them started only when the reconciler re-drove it, past a short deadline.
    Retried until the sentinels name a new master, the restore succeeds (each message is put
    back at most once: its ``unacked`` entry is removed in the same transaction).
    """

    def restore_unacked(self, client: Any = None) -> Any:
        deadline = time.monotonic() + RESTORE_PATIENCE
        while True:
            try:
                return super().restore_unacked(client)
            except redis.ConnectionError:
                if client is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.25)


class _SentinelChannel(_ClientReuse, kombu_redis.SentinelChannel):  # type: ignore[misc]
    """kombu's Sentinel channel, able to put its unacknowledged messages back while its
    connection is being closed after a failover.

    Closing a channel rebuilds its connection pool to restore the messages it holds; the
    Sentinel channel builds that pool from its transport's ``client``, which kombu may have
    cleared by then (seen when the master died under a consuming worker): the
    ``AttributeError`` ended the worker ("Unrecoverable error"). The channel keeps what it was
    opened with and uses that instead.
    """

    QoS = _FailoverQoS

    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        self._conninfo = connection.client
        super().__init__(connection, *args, **kwargs)

    def _get_pool(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None and self._conninfo is not None:
            self.connection.client = self._conninfo
        return super()._get_pool(asynchronous)


class SentinelTransport(kombu_redis.SentinelTransport):  # type: ignore[misc]
    """kombu's Sentinel transport (a Redis transport whose channels find the master through
    Sentinel, ``sentinel://`` URLs) with the same :class:`_Poller`: the hole is the same."""

    Channel = _SentinelChannel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = _Poller()


TRANSPORT = f"{__name__}:Transport"
SENTINEL_TRANSPORT = f"{__name__}:SentinelTransport"


def transport_for(broker_url: str) -> str | None:
    """The transport for a broker URL: ours for Redis and Sentinel, kombu's choice otherwise."""
    if broker_url.startswith("redis://"):
        return TRANSPORT
    if broker_url.startswith("sentinel://"):
        return SENTINEL_TRANSPORT
    return None
