"""The per-process bundle of dependencies the recording logic needs.

Built once from a :class:`Settings` at the edge (a worker process, the CLI, a test) and passed
to every step function; nothing below reads the environment or holds globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
import requests
import requests.adapters

from config import Settings
from worker.client import RecordingApiClient
from worker.devapi import locator_for
from worker.keys import plan_behind_key
from worker.leases import LeaseKeeper
from worker.limiter import ApiRateLimiter
from worker.locator import RecordingLocator, sid_of_resource
from worker.metrics import Metrics
from worker.ncs import NcsLedger
from worker.planner import StopPlan, budget_key
from worker.redis_conn import redis_client
from worker.store import JobStore
from worker.vault import TokenVault

# HTTP connections kept per host: a threads worker runs up to this many API calls at once
# (requests' default of 10 makes a busier worker open and drop a connection per call).
HTTP_POOL_SIZE = 64


def _pooled_session() -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=HTTP_POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    vault: TokenVault
    limiter: ApiRateLimiter
    metrics: Metrics
    leases: LeaseKeeper
    ncs: NcsLedger  # what NCS notifications said per recording (worker.ncs)
    client: RecordingApiClient = field(repr=False)
    # None: not decided yet (see Settings.dev_api); decided on first use.
    _locator: RecordingLocator | None = field(default=None, repr=False)
    _locator_decided: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        client = redis_client(settings)
        limiter = ApiRateLimiter(
            client,
            settings.api_rate_limit,
            stops_behind_key=plan_behind_key(budget_key(settings.app_id)),
        )
        metrics = Metrics(client)
        return cls(
            settings=settings,
            redis=client,
            store=JobStore(client, retention=settings.job_retention),
            vault=TokenVault(client, settings),
            limiter=limiter,
            metrics=metrics,
            leases=LeaseKeeper(client, settings.stop_lease),
            ncs=NcsLedger(client, settings.ncs_ttl, receiving=settings.ncs_secret is not None),
            client=RecordingApiClient(
                settings,
                acquire_slot=limiter.acquire,
                refund_slot=limiter.refund,
                on_api_call=metrics.api_call,
                session=_pooled_session(),
            ),
        )

    @property
    def locator(self) -> RecordingLocator | None:
        """The recording lister, when the service offers one (decided once per process)."""
        if not self._locator_decided:
            self._locator = locator_for(self.settings)
            self._locator_decided = True
        return self._locator

    def locate_sid(self, resource_id: str) -> str | None:
        """The sid a resource started, if the service can tell (None otherwise)."""
        locator = self.locator
        return None if locator is None else sid_of_resource(locator, resource_id)

    def stop_plan(self) -> StopPlan:
        """The stop plan of the API budget this process's calls spend (worker.planner)."""
        return StopPlan(self.redis, budget_key(self.settings.app_id), self.settings.api_rate_limit)

    def close(self) -> None:
        self.client.close()
        self.redis.close()
