"""The per-process bundle of dependencies the recording logic needs.

Built once from a :class:`Settings` at the edge (a worker process, the CLI, a test) and passed
to every step function; nothing below reads the environment or holds globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import redis

from config import DEFAULT_APP, Settings
from worker import keys
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
    client: RecordingApiClient = field(repr=False)  # the default app's
    # Every app's client and limiter by name (each App ID has its own budget); "default" is
    # ``client`` and ``limiter``.
    clients: dict[str, RecordingApiClient] = field(default_factory=dict, repr=False)
    limiters: dict[str, ApiRateLimiter] = field(default_factory=dict, repr=False)
    # None: not decided yet (see Settings.dev_api); decided on first use.
    _locator: RecordingLocator | None = field(default=None, repr=False)
    _locator_decided: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, metrics_flush: float | None = None) -> Runtime:
        """``metrics_flush``: seconds between metric writes (worker.metrics.Metrics; None:
        every count written at once)."""
        client = redis_client(settings)
        metrics = Metrics(client, flush_every=metrics_flush)
        limiters = {name: app_limiter(client, settings, name) for name in settings.app_profiles()}
        clients = {
            name: RecordingApiClient(
                settings,
                app=name,
                acquire_slot=limiter.acquire,
                refund_slot=limiter.refund,
                on_api_call=partial(metrics.api_call, app=name),
            )
            for name, limiter in limiters.items()
        }
        return cls(
            settings=settings,
            redis=client,
            store=JobStore(client, retention=settings.job_retention),
            vault=TokenVault(client, settings),
            limiter=limiters[DEFAULT_APP],
            metrics=metrics,
            leases=LeaseKeeper(client, settings.stop_lease),
            ncs=NcsLedger(client, settings.ncs_ttl, receiving=receives_ncs(settings)),
            client=clients[DEFAULT_APP],
            clients=clients,
            limiters=limiters,
        )

    def client_for(self, app: str) -> RecordingApiClient:
        """The API client of a job's app. KeyError naming it if it is no longer configured
        (an app must stay configured while it has active jobs)."""
        if app == DEFAULT_APP:
            return self.client
        try:
            return self.clients[app]
        except KeyError:
            raise KeyError(f"app {app!r} is not configured (CLOUDREC_APPS__...)") from None

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

    def stop_plan(self, app: str = DEFAULT_APP) -> StopPlan:
        """The stop plan of an app's API budget (worker.planner): its App ID's, at its rate.
        KeyError if the app is not configured."""
        profile = self.settings.app_profile(app)
        return StopPlan(self.redis, budget_key(profile.app_id), profile.api_rate_limit)

    def stop_plans(self) -> dict[str, StopPlan]:
        """Every configured app's stop plan by app name (each App ID is planned on its own)."""
        return {name: self.stop_plan(name) for name in self.settings.app_profiles()}

    def close(self) -> None:
        self.metrics.close()
        for client in {id(c): c for c in (self.client, *self.clients.values())}.values():
            client.close()
        self.redis.close()


def app_limiter(client: redis.Redis, settings: Settings, app: str) -> ApiRateLimiter:
    """The shared limiter of one app's App ID, at that app's rate."""
    profile = settings.app_profile(app)
    key = keys.limiter_key(profile.app_id, settings.app_id)
    return ApiRateLimiter(
        client,
        profile.api_rate_limit,
        key=key,
        app=app,
        stops_behind_key=plan_behind_key(budget_key(profile.app_id)),
    )


def receives_ncs(settings: Settings) -> bool:
    """Whether some app has an NCS secret (then `cloudrec ncs` may be feeding the ledger)."""
    return any(p.ncs_secret is not None for p in settings.app_profiles().values())
