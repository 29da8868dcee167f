"""The one Settings object: the only place in cloudrec that reads the environment.

Every entry point (CLI command, Celery worker, beat, tests) builds a ``Settings`` once and passes
it down. Names and defaults are fixed by docs/design.md#fixed-interfaces; the defaults point at the
local emulator so that ``cloudrec demo`` needs no configuration at all.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_STORAGE_PROFILE = "default"
DEFAULT_APP = "default"  # the app built from CLOUDREC_APP_ID, CLOUDREC_CUSTOMER_ID, ...
REDACTED = "***"
# Settings that are URLs and may carry a password in their userinfo (redis://:pw@host/0): kept
# as plain strings because every client library takes them as such, so repr redacts them here.
_URL_SETTINGS = frozenset({"redis_url", "api_base_url", "endpoint"})


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo replaced by ``***`` (unchanged without one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED  # unparseable: it may be anything, show nothing of it
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def url_password(url: str | None) -> str | None:
    """The password in a URL's userinfo (decoded), for the log redaction; None without one."""
    try:
        password = urlsplit(url or "").password
    except ValueError:
        return None
    return unquote(password) if password else None


def _redacted_repr_args(args: Iterator[tuple[str | None, Any]]) -> Iterator[tuple[str | None, Any]]:
    for name, value in args:
        if name in _URL_SETTINGS and isinstance(value, str):
            value = redact_url(value)
        yield name, value


def _certificate_or_none(value: SecretStr | None) -> SecretStr | None:
    """An App Certificate setting: empty is none; anything else must be 32 hex characters."""
    if value is not None and not value.get_secret_value():
        return None  # CLOUDREC_APP_CERTIFICATE= (empty): none
    if value is not None and not _is_hex32(value.get_secret_value()):
        raise ValueError("must be the project's App Certificate: 32 hexadecimal characters")
    return value


def _is_hex32(value: str) -> bool:
    """An Agora App ID or App Certificate: 32 hexadecimal characters."""
    return len(value) == 32 and all(c in "0123456789abcdefABCDEF" for c in value)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
WEBHOOK_SECRET_PREFIX = "whsec_"
MIN_WEBHOOK_KEY_BYTES = 24  # the Standard Webhooks specification: 24 to 64 random bytes


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>``.

    Raises ValueError naming CLOUDREC_WEBHOOK_SECRET (never echoing it) if it has another form.
    """
    rule = (
        f"CLOUDREC_WEBHOOK_SECRET must be {WEBHOOK_SECRET_PREFIX!r} followed by the base64 of "
        f"at least {MIN_WEBHOOK_KEY_BYTES} random bytes (Standard Webhooks; see the README)"
    )
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(rule)
    encoded = secret[len(WEBHOOK_SECRET_PREFIX) :]
    encoded += "=" * (-len(encoded) % 4)  # unpadded base64 is common (and accepted by receivers)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(rule) from None
    if len(key) < MIN_WEBHOOK_KEY_BYTES:
        raise ValueError(rule)
    return key


def parse_networks(value: Any) -> tuple[IPNetwork, ...]:
    """CLOUDREC_WEBHOOK_ALLOW: comma-separated addresses or networks (``127.0.0.1/32,::1``)."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ValueError(
                f"CLOUDREC_WEBHOOK_ALLOW: {text!r} is not an IP address or network ({exc}); "
                "give comma-separated addresses or networks such as 127.0.0.1/32,10.0.0.0/8"
            ) from None
    return tuple(networks)


def parse_sentinels(value: Any) -> tuple[str, ...]:
    """CLOUDREC_REDIS_SENTINELS: comma-separated ``host:port`` (``[::1]:26379`` for IPv6)."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    sentinels = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        host, _, port = text.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"CLOUDREC_REDIS_SENTINELS: {text!r} is not host:port; give comma-separated "
                "sentinel addresses such as 10.0.0.1:26379,10.0.0.2:26379"
            )
        sentinels.append(f"{host}:{int(port)}")
    return tuple(sentinels)


def sentinel_address(text: str) -> tuple[str, int]:
    """One ``host:port`` of :func:`parse_sentinels` as (host, port), IPv6 brackets removed."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class StorageProfile(BaseModel):
    """Credentials and location of one bucket. Jobs name a profile; they never carry keys."""

    vendor: int = 1
    region: int = 0
    bucket: str = "recordings"
    access_key: SecretStr = SecretStr("demo-access-key")
    secret_key: SecretStr = SecretStr("demo-secret-key")
    endpoint: str | None = None  # required by vendor 11 (S3-compatible)
    # Where the worker reads and writes this profile's files to merge a job's recording
    # (worker.merge_storage): a directory holding <bucket>/<key> (the emulator's --storage-dir,
    # its local back-end), instead of the bucket over S3 (endpoint, or Amazon S3 by region).
    local_dir: str | None = None

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        return _redacted_repr_args(iter(super().__repr_args__()))


# -- app profiles (several Agora projects) --------------------------------------------------------
APP_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # a job's "app", a metrics label, an env var part


class AppProfile(BaseModel):
    """One Agora project: the App ID in every REST path, the Basic-auth credentials of its
    customer, its own share of the service's rate limit (per App ID), its NCS secret.

    The app "default" is built from the top-level settings (``CLOUDREC_APP_ID``, ...); the
    others come from ``CLOUDREC_APPS__<NAME>__APP_ID / __CUSTOMER_ID / __CUSTOMER_SECRET /
    __API_RATE_LIMIT / __NCS_SECRET / __APP_CERTIFICATE``. With its App Certificate, the worker
    mints the recorder's tokens of that app's jobs with that app's App ID and certificate
    (worker.tokens).
    """

    model_config = {"extra": "forbid"}

    app_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    customer_secret: SecretStr
    api_rate_limit: float = Field(default=10.0, gt=0)
    ncs_secret: SecretStr | None = None
    app_certificate: SecretStr | None = None

    @field_validator("customer_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("app_certificate")
    @classmethod
    def _certificate_form(cls, value: SecretStr | None) -> SecretStr | None:
        return _certificate_or_none(value)

    @model_validator(mode="after")
    def _minting_needs_a_real_app_id(self) -> AppProfile:
        if self.app_certificate is not None and not _is_hex32(self.app_id):
            raise ValueError(
                "app_id: with APP_CERTIFICATE set, APP_ID must be the project's App ID, "
                f"32 hexadecimal characters (got {self.app_id!r})"
            )
        return self


class Settings(BaseSettings):
    """cloudrec's configuration (environment variables ``CLOUDREC_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="CLOUDREC_",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="ignore",
        # A refused value may be a secret: errors name the variable and the rule, never echo it.
        hide_input_in_errors=True,
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    api_base_url: str = "http://127.0.0.1:8700"
    app_id: str = "demo-app"
    customer_id: str = "demo"
    customer_secret: SecretStr = SecretStr("demo-secret")
    api_rate_limit: float = Field(default=10.0, gt=0)
    max_duration: int = Field(default=14400, ge=1)
    # Bounds on the times a job gives (worker.jobs): a start_at further ahead than this is a
    # mistake (a wrong year or time zone), not a plan; recurring recordings are schedules.
    max_start_ahead: int = Field(default=30 * 86400, ge=60)
    # How long an ended job (its record and its place in the listing) is kept, seconds.
    job_retention: int = Field(default=30 * 86400, ge=60)
    storage: dict[str, StorageProfile] = Field(
        default_factory=lambda: {DEFAULT_STORAGE_PROFILE: StorageProfile()}
    )
    # Further Agora projects, by name (the app "default" is the settings above; see
    # AppProfile). A job names its app ("app" in the spec); each App ID has its own budget.
    apps: dict[str, AppProfile] = Field(default_factory=dict)

    # Beyond the fixed names: tuning knobs with safe defaults.
    recorder_uid_min: int = Field(default=900_000_000, ge=1)
    recorder_uid_max: int = Field(default=999_999_999, le=2**32 - 1)
    api_connect_timeout: float = 3.05
    api_read_timeout: float = 10.0
    # A synchronous stop waits for the uploads; the service aims for 20 s, so give it room.
    api_stop_read_timeout: float = 45.0
    # docs/service/behaviour.md#monitoring: not status 4/5 after ~90 s = failed start
    start_confirm_timeout: float = 90.0
    # docs/service/errors.md#not-found: a 404 this soon after start may be HA migration
    failover_window: float = 90.0
    max_deliveries: int = Field(default=5, ge=1)  # redeliveries of one job step before failing it
    vault_key: SecretStr | None = None  # Fernet key for RTC tokens at rest; derived if unset
    log_json: bool = False

    # Deadlines (worker.recording, tasks.recording.dispatch). The dispatcher claims deadlines due
    # within the lookahead and sends each stop to arrive at its second; a claimed deadline comes
    # back this long after it was due unless its stop is in flight (a stop in flight renews
    # the lease on a heartbeat, worker.leases): a worker killed holding a stop costs a lease.
    dispatch_lookahead: float = Field(default=3.0, ge=0, le=10)
    stop_lease: float = Field(default=5.0, ge=1, le=60)

    # Stops planned against the API budget (worker.planner): a job's ``stop_early_max`` (how
    # early its stop may go when the budget is short) may be at most this, seconds.
    stop_early_cap: float = Field(default=3600.0, ge=0)

    # Completion callbacks (worker.callbacks): webhooks are signed per Standard Webhooks with
    # this ``whsec_<base64>`` secret (a spec with a webhook is refused while it is unset),
    # retried with backoff until delivered or until this many seconds after the job ended.
    webhook_secret: SecretStr | None = None
    callback_give_up_after: float = Field(default=3600.0, gt=0)
    # One delivery's whole wall-clock budget: resolve, connect, TLS, send, read the status line.
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)
    # Webhook targets must be public addresses; these may be targeted anyway (an internal
    # receiver). Comma-separated addresses or networks.
    webhook_allow: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    # Deliveries one worker runs at once (the rest wait, holding no slot); None: a quarter of
    # the worker's pool, at least one.
    callback_slots: int | None = Field(default=None, ge=1)
    callback_queue: str = "celery"  # where callback tasks go: the caller's workers consume it

    # One merged MP4 per job (worker.merge): jobs merge unless their spec says "merge": false
    # when this is on. A job's completion callback waits for its merge, at most this long after
    # the job ended (then it is delivered without it); a worker merges this many jobs at once.
    merge_default: bool = False
    merge_callback_wait: float = Field(default=3600.0, ge=0)
    merge_slots: int = Field(default=1, ge=1)

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
    # The emulator's dev API token (`cloudrec emulator --dev-token`, required when it listens
    # beyond loopback); sent as "Authorization: Bearer" by every dev API client.
    dev_token: SecretStr | None = None

    # Redis through Sentinel (worker.redis_conn): with sentinels, every client (job store,
    # broker, result backend, schedules, exporter, CLI) asks them for the master of the service
    # named ``redis_master``; ``redis_url`` then gives only the db number and the password. A
    # submit is acknowledged only once ``redis_wait_replicas`` replicas hold it (Redis WAIT,
    # at most ``redis_wait_timeout`` s): None means 1 with sentinels, 0 (no WAIT) without.
    redis_sentinels: Annotated[tuple[str, ...], NoDecode] = ()
    redis_master: str | None = None
    redis_wait_replicas: int | None = Field(default=None, ge=0)
    redis_wait_timeout: float = Field(default=2.0, gt=0, le=60)

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _sentinel_list(cls, value: Any) -> tuple[str, ...]:
        return parse_sentinels(value)

    @model_validator(mode="after")
    def _sentinels_name_their_master(self) -> Settings:
        if bool(self.redis_sentinels) != bool(self.redis_master):
            raise ValueError(
                "CLOUDREC_REDIS_SENTINELS and CLOUDREC_REDIS_MASTER go together: the sentinels' "
                "addresses (host:port,host:port) and the name of the master they watch"
            )
        return self

    @property
    def wait_replicas(self) -> int:
        """Replicas a submit waits for (Redis WAIT) before it is acknowledged; 0: none."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis_sentinels else 0

    @field_validator("webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            webhook_key(value.get_secret_value())  # refuse a bad form at load, not at delivery
        return value

    @field_validator("webhook_allow", mode="before")
    @classmethod
    def _allow_list(cls, value: Any) -> tuple[IPNetwork, ...]:
        return parse_networks(value)

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

    # RTC tokens minted by the worker (worker.tokens). With the project's App Certificate the
    # worker builds the recorder's AccessToken2 itself at every start (and every restart),
    # valid from then until the job's deadline plus token_margin seconds. A job's own token,
    # when it has one, is used instead. The certificate is a secret: redacted everywhere.
    app_certificate: SecretStr | None = None
    token_margin: int = Field(default=900, ge=0, le=6 * 3600)

    @field_validator("app_certificate")
    @classmethod
    def _certificate_form(cls, value: SecretStr | None) -> SecretStr | None:
        return _certificate_or_none(value)

    @model_validator(mode="after")
    def _minting_needs_a_real_app_id(self) -> Settings:
        if self.app_certificate is not None and not _is_hex32(self.app_id):
            raise ValueError(
                "app_id: with CLOUDREC_APP_CERTIFICATE set, CLOUDREC_APP_ID must be the "
                f"project's App ID, 32 hexadecimal characters (got {self.app_id!r})"
            )
        return self

    # `cloudrec web` (worker.web): HTTP basic auth for the page. Without a password the page is
    # open and listens on loopback only (it refuses any other address).
    web_user: str = Field(default="cloudrec", min_length=1)
    web_password: SecretStr | None = None
    # Where the page reads recordings of profiles without an endpoint: the emulator's local
    # storage (`cloudrec emulator --storage-dir`, ./recordings by default).
    web_storage_dir: Path = Path("recordings")

    @field_validator("storage")
    @classmethod
    def _keep_default_profile(
        cls, profiles: dict[str, StorageProfile]
    ) -> dict[str, StorageProfile]:
        # Setting one CLOUDREC_STORAGE__X__... variable must not silently drop "default".
        return {DEFAULT_STORAGE_PROFILE: StorageProfile(), **profiles}

    @field_validator("apps", mode="before")
    @classmethod
    def _app_names(cls, apps: Any) -> Any:
        if not isinstance(apps, dict):
            return apps
        named: dict[str, Any] = {}
        for name, profile in apps.items():
            key = str(name).lower()
            if key == DEFAULT_APP:
                raise ValueError(
                    "the app 'default' is CLOUDREC_APP_ID, CLOUDREC_CUSTOMER_ID, "
                    "CLOUDREC_CUSTOMER_SECRET, CLOUDREC_API_RATE_LIMIT and CLOUDREC_NCS_SECRET; "
                    "give other apps another name (CLOUDREC_APPS__<NAME>__APP_ID)"
                )
            if not re.fullmatch(APP_NAME_RE, key):
                raise ValueError(
                    f"app name {key[:64]!r}: must be 1-64 characters of a-z 0-9 _ - "
                    "starting with a letter or digit"
                )
            named[key] = profile
        return named

    @model_validator(mode="after")
    def _one_profile_per_app_id(self) -> Settings:
        # Two profiles of one App ID would each think they own its budget: the service would
        # see the sum (and 429s). One App ID, one profile.
        owner: dict[str, str] = {}
        for name, profile in self.app_profiles().items():
            if profile.app_id in owner:
                raise ValueError(
                    f"apps.{name}.app_id: the App ID of app {owner[profile.app_id]!r} already; "
                    "each App ID must be configured once (it has one rate-limit budget)"
                )
            owner[profile.app_id] = name
        return self

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

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # redis_url may hold the Redis password (redis://:pw@host): never show it in a repr.
        return _redacted_repr_args(iter(super().__repr_args__()))

    @property
    def dev_token_value(self) -> str | None:
        return self.dev_token.get_secret_value() if self.dev_token is not None else None

    def storage_profile(self, name: str) -> StorageProfile:
        """The named profile; KeyError if it is not configured."""
        return self.storage[name.lower()]

    @property
    def default_app(self) -> AppProfile:
        """The app "default": today's single-app settings, under their names of always."""
        # Not validated again: these fields are checked (or not) as they always were.
        return AppProfile.model_construct(
            app_id=self.app_id,
            customer_id=self.customer_id,
            customer_secret=self.customer_secret,
            api_rate_limit=self.api_rate_limit,
            ncs_secret=self.ncs_secret,
            app_certificate=self.app_certificate,
        )

    def app_profiles(self) -> dict[str, AppProfile]:
        """Every configured app by name, "default" first."""
        return {DEFAULT_APP: self.default_app, **self.apps}

    def app_profile(self, name: str) -> AppProfile:
        """The named app (case-insensitive); KeyError if it is not configured."""
        key = name.lower()
        if key == DEFAULT_APP:
            return self.default_app
        return self.apps[key]
