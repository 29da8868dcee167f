"""A Redis Sentinel deployment of our own on loopback: one master, one replica, three sentinels,
each a ``redis-server`` process that a test (or a benchmark) can SIGKILL and start again.

The nodes keep nothing on disk (no RDB, no AOF), as replicas of a Sentinel group often run:
what survives a master's death is what reached the replica. A killed node started again on its
port comes back empty, as a master, and the sentinels turn it into a replica of the new master.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.support.ports import free_port

MASTER_NAME = "cloudrec"
PASSWORD = "sentinel-test-pw"  # the nodes' requirepass: CLOUDREC_REDIS_URL's password applies
DB = 3  # and so does its db number
DEFAULT_REPLICA_PRIORITY = 100  # redis.conf's


@dataclass
class Node:
    """One redis-server (data node or sentinel) on a fixed loopback port."""

    name: str
    port: int
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        self.proc = subprocess.Popen(
            ["redis-server", *self.argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class SentinelGroup:
    """Master, replica and three sentinels (quorum 2), with a fast failure detection."""

    directory: Path
    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000
    nodes: list[Node] = field(default_factory=list)  # the two data nodes
    sentinels: list[Node] = field(default_factory=list)

    # -- addresses, as the settings spell them -------------------------------------------------
    @property
    def sentinel_list(self) -> str:
        """CLOUDREC_REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    @property
    def redis_url(self) -> str:
        """CLOUDREC_REDIS_URL with sentinels: only its password and db number are used (the
        host is a name that resolves nowhere, to show it)."""
        return f"redis://:{PASSWORD}@not-used.invalid:6379/{DB}"

    def settings(self) -> dict[str, Any]:
        return {
            "redis_url": self.redis_url,
            "redis_sentinels": self.sentinel_list,
            "redis_master": MASTER_NAME,
        }

    def env(self) -> dict[str, str]:
        return {
            "CLOUDREC_REDIS_URL": self.redis_url,
            "CLOUDREC_REDIS_SENTINELS": self.sentinel_list,
            "CLOUDREC_REDIS_MASTER": MASTER_NAME,
        }

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> SentinelGroup:
        self.directory.mkdir(parents=True, exist_ok=True)
        master = self._data_node("redis-a", replica_of=None)
        replica = self._data_node("redis-b", replica_of=master.port)
        self.nodes = [master.start(), replica.start()]
        self._wait(lambda: self._replica_linked(replica), timeout, "the replica to sync")
        self.sentinels = [self._sentinel(i, master.port).start() for i in range(3)]
        self._wait(self._sentinels_agree, timeout, "the sentinels to find each other")
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.kill()

    def _data_node(self, name: str, replica_of: int | None) -> Node:
        port = free_port()
        argv = [
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--save", "", "--appendonly", "no", "--requirepass", PASSWORD,
            "--masterauth", PASSWORD, "--logfile", str(self.directory / f"{name}.log"),
            "--dbfilename", f"{name}.rdb",
        ]  # fmt: skip
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        return Node(name, port, argv, self.directory / f"{name}.log")

    def _sentinel(self, index: int, master_port: int) -> Node:
        port = free_port()
        conf = self.directory / f"sentinel-{index}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"logfile {self.directory / f'sentinel-{index}.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
            f"sentinel auth-pass {MASTER_NAME} {PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        return Node(f"sentinel-{index}", port, [str(conf), "--sentinel"], conf)

    # -- what the sentinels say ----------------------------------------------------------------
    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers gives it."""
        for sentinel in self.sentinels:
            if not sentinel.alive():
                continue
            client = redis.Redis(port=sentinel.port, socket_timeout=1)
            try:
                host_port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if host_port:
                return int(host_port[1])
        return None

    def master(self) -> Node:
        port = self.master_port()
        return next(n for n in self.nodes if n.port == port)

    def kill_master(self) -> Node:
        """SIGKILL the current master; returns its node (to start it again later)."""
        node = self.master()
        node.kill()
        return node

    def wait_failover(self, old: Node, timeout: float = 30.0) -> float:
        """Wait until every sentinel names another master; returns when (monotonic)."""

        def moved() -> bool:
            ports = set()
            for sentinel in self.sentinels:
                client = redis.Redis(port=sentinel.port, socket_timeout=1)
                with contextlib.suppress(redis.RedisError):
                    ports.add(int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1]))
                client.close()
            return len(ports) == 1 and old.port not in ports

        self._wait(moved, timeout, "the sentinels to promote the replica")
        return time.monotonic()

    def restart_as_replica(self, node: Node, timeout: float = 40.0) -> None:
        """Start a killed node again, empty, as a replica of the new master (what an operator
        or an orchestrator does; left alone, the sentinels would convert it too, within about
        ten seconds of seeing it); wait until it is in sync, then make it promotable."""
        self.start_unpromotable_replica(node)
        self.wait_in_sync_then_promotable(node, timeout)

    def start_unpromotable_replica(self, node: Node) -> None:
        """Start a killed node, empty, as a replica with replica-priority 0: until it is in
        sync, a sentinel that takes the new master for down (a second failure; on a loaded
        machine, a master busy for down-after-ms) must not promote it and have the master
        resync from it, empty. A CI run saw exactly that before nodes started this way."""
        master = self.master()
        argv = [a for a in node.argv]
        for option, width in (("--replicaof", 3), ("--replica-priority", 2)):
            if option in argv:
                del argv[argv.index(option) : argv.index(option) + width]
        node.argv = [*argv, "--replicaof", "127.0.0.1", str(master.port), "--replica-priority", "0"]
        node.start()

    def wait_in_sync_then_promotable(self, node: Node, timeout: float = 40.0) -> None:
        """Wait until the node is a replica in sync; then give it the default priority back."""

        def linked() -> bool:
            if not node.alive():  # e.g. its port was taken meanwhile: the log says, try again
                time.sleep(0.5)
                node.start()
                return False
            return self._replica_linked(node)

        self._wait(linked, timeout, f"{node.name} to rejoin", lambda: self._explain(node))
        client = redis.Redis(port=node.port, password=PASSWORD, socket_timeout=5)
        try:
            client.config_set("replica-priority", DEFAULT_REPLICA_PRIORITY)
        finally:
            client.close()

    def _explain(self, node: Node) -> str:
        """What a test prints when a node did not come back: its replication state as it and
        the master see it, and its log's tail."""
        lines = [f"{node.name} alive: {node.alive()}"]
        for who in (node, self.master()):
            client = redis.Redis(port=who.port, password=PASSWORD, socket_timeout=1)
            try:
                lines.append(f"{who.name} replication: {client.info('replication')}")
            except redis.RedisError as exc:
                lines.append(f"{who.name}: {exc!r}")
            finally:
                client.close()
        log = node.log.read_text(errors="replace") if node.log.exists() else "(no log)"
        return "\n".join([*lines, f"{node.name} log (tail):", log[-4000:]])

    def _replica_linked(self, node: Node) -> bool:
        client = redis.Redis(port=node.port, password=PASSWORD, socket_timeout=1)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, socket_timeout=1)
            try:
                state = client.sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                return False
        return True

    @staticmethod
    def _wait(probe: Any, timeout: float, what: str, explain: Any = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return
            time.sleep(0.1)
        detail = f"\n{explain()}" if explain is not None else ""
        raise TimeoutError(f"timed out waiting for {what}{detail}")
