"""The one Settings object: the only place in cloudrec that reads the environment.

Every entry point (CLI command, Celery worker, beat, tests) builds a ``Settings`` once and passes
it down. Names and defaults are fixed by design.md section 8; the defaults point at the local
emulator so that ``cloudrec demo`` needs no configuration at all.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STORAGE_PROFILE = "default"


class StorageProfile(BaseModel):
    """Credentials and location of one bucket. Jobs name a profile; they never carry keys."""

    vendor: int = 1
    region: int = 0
    bucket: str = "recordings"
    access_key: SecretStr = SecretStr("demo-access-key")
    secret_key: SecretStr = SecretStr("demo-secret-key")
    endpoint: str | None = None  # required by vendor 11 (S3-compatible)


class Settings(BaseSettings):
    """cloudrec's configuration (environment variables ``CLOUDREC_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="CLOUDREC_",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="ignore",
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    api_base_url: str = "http://127.0.0.1:8700"
    app_id: str = "demo-app"
    customer_id: str = "demo"
    customer_secret: SecretStr = SecretStr("demo-secret")
    api_rate_limit: float = Field(default=10.0, gt=0)
    max_duration: int = Field(default=14400, ge=1)
    storage: dict[str, StorageProfile] = Field(
        default_factory=lambda: {DEFAULT_STORAGE_PROFILE: StorageProfile()}
    )

    # Beyond the fixed names: tuning knobs with safe defaults.
    recorder_uid_min: int = Field(default=900_000_000, ge=1)
    recorder_uid_max: int = Field(default=999_999_999, le=2**32 - 1)
    api_connect_timeout: float = 3.05
    api_read_timeout: float = 10.0
    # A synchronous stop waits for the uploads; the service aims for 20 s, so give it room.
    api_stop_read_timeout: float = 45.0
    start_confirm_timeout: float = 90.0  # spec 10.5: not status 4/5 after ~90 s = failed start
    failover_window: float = 90.0  # spec 4.3: a 404 this soon after start may be HA migration
    max_deliveries: int = Field(default=5, ge=1)  # redeliveries of one job step before failing it
    vault_key: SecretStr | None = None  # Fernet key for RTC tokens at rest; derived if unset
    log_json: bool = False

    # Deadlines (worker.recording, tasks.recording.dispatch). The dispatcher claims deadlines due
    # within the lookahead and sends each stop to arrive at its second; a claimed deadline comes
    # back this long after it was due unless its stop is in flight (a stop in flight renews
    # the lease on a heartbeat, worker.leases): a worker killed holding a stop costs a lease.
    dispatch_lookahead: float = Field(default=3.0, ge=0, le=10)
    stop_lease: float = Field(default=5.0, ge=1, le=60)

    # Completion callbacks (worker.callbacks): webhooks are signed with HMAC-SHA256 under this
    # key (a spec with a webhook is refused while it is unset), retried with backoff until
    # delivered or until this many seconds after the job ended.
    webhook_secret: SecretStr | None = None
    callback_give_up_after: float = Field(default=3600.0, gt=0)
    webhook_timeout: float = Field(default=10.0, gt=0)
    callback_queue: str = "celery"  # where callback tasks go: the caller's workers consume it

    # The public intake (worker.celery_app): the one queue callers send recording.submit,
    # status, cancel and stop_now to. Internal steps keep their own queues.
    intake_queue: str = Field(default="cloudrec", min_length=1, pattern=r"^[^\s,]+$")
    # Also serve Celery's default queue "celery" as intake, for callers that forget the queue.
    # Only on a broker that is cloudrec's alone: on a shared one, a cloudrec worker would take
    # the other apps' tasks from "celery" and drop them (unregistered here).
    intake_default_queue: bool = False

    # The reconciler (worker.reconcile, beat every 30 s).
    reconcile_stuck_after: float = Field(default=60.0, gt=0)  # no progress this long: re-drive
    reconcile_query_budget: int = Field(default=60, ge=0)  # API queries per round, at most
    reconcile_check_interval: float = Field(default=300.0, gt=0)  # re-query a live one after
    orphan_grace: float = Field(default=60.0, ge=0)  # a live recording no job owns, this old
    orphan_scan_interval: float = Field(default=300.0, ge=0)  # list the service's recordings
    # The emulator's dev API lists every recording, which finds ones whose job lost track.
    # None: use it when the API base URL answers GET /dev/recordings (the emulator does, the
    # real service does not).
    dev_api: bool | None = None

    # NCS notifications (worker.ncs, ``cloudrec ncs``): the receiver refuses to start without
    # the secret (the HMAC key of Agora-Signature / Agora-Signature-V2, set in Agora's console).
    # What it learns per recording is kept this long in Redis.
    ncs_secret: SecretStr | None = None
    ncs_ttl: float = Field(default=3 * 24 * 3600.0, ge=60)
    ncs_max_body: int = Field(default=256 * 1024, ge=1024)  # bytes; a larger post is refused
    # A start that may have reached the service but whose sid is unknown (its answer was lost):
    # how long the job keeps looking for the sid (NCS events, repeated starts on its resource)
    # before it ends failed, "sid unknown" (worker.recording.SID_UNKNOWN).
    sid_unknown_window: float = Field(default=60.0, gt=0)

    @field_validator("storage")
    @classmethod
    def _keep_default_profile(
        cls, profiles: dict[str, StorageProfile]
    ) -> dict[str, StorageProfile]:
        # Setting one CLOUDREC_STORAGE__X__... variable must not silently drop "default".
        return {DEFAULT_STORAGE_PROFILE: StorageProfile(), **profiles}

    @field_validator("intake_queue")
    @classmethod
    def _intake_not_internal(cls, name: str) -> str:
        # The internal queues (cloudrec.control, cloudrec.recording, ...) serve steps only.
        if name.startswith("cloudrec."):
            raise ValueError("the prefix 'cloudrec.' is reserved for cloudrec's internal queues")
        return name

    @model_validator(mode="after")
    def _callbacks_not_on_the_intake(self) -> Settings:
        # A callback task sent to a queue cloudrec's workers serve would be taken by them and
        # dropped (it is the caller's task, unknown here).
        if self.callback_queue == self.intake_queue or (
            self.intake_default_queue and self.callback_queue == "celery"
        ):
            raise ValueError(
                f"callback_queue: callback tasks must go to a queue the caller's workers serve, "
                f"not one cloudrec serves as intake (got {self.callback_queue!r}); set "
                f"CLOUDREC_CALLBACK_QUEUE to your workers' queue"
            )
        return self

    @model_validator(mode="after")
    def _uid_range_not_empty(self) -> Settings:
        if self.recorder_uid_min > self.recorder_uid_max:
            raise ValueError("recorder_uid_min must not exceed recorder_uid_max")
        return self

    def storage_profile(self, name: str) -> StorageProfile:
        """The named profile; KeyError if it is not configured."""
        return self.storage[name.lower()]
