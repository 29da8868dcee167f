"""The job spec: what a caller submits (docs/design.md#the-job, docs/design.md#fixed-interfaces).

``recordingConfig`` and ``recordingFileConfig`` are exactly the start API's objects, validated by
the same models the API contract uses (:mod:`contract.models`), so a spec that passes here is a
start request the service accepts. Storage credentials are not part of a job: it names a storage
profile from the settings. Validation errors become one :class:`JobSpecError` whose message names
every bad field and its rule; this module is the one boundary where pydantic errors of a spec are
translated.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config import DEFAULT_APP, Settings
from contract.models import (
    MAX_PREFIX_CHARS,
    ChannelName,
    PrefixPart,
    RecordingConfig,
    RecordingFileConfig,
    UidStr,
    describe_validation_error,
)
from worker.errors import JobSpecError, WebhookRefused
from worker.webhook_http import literal_address, parse_target, refusal

_JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# ':' is reserved for the job ids cloudrec mints itself (schedule firings, ``<name>:<slot>``):
# a caller who could submit one could take a firing's place before beat sends it.
MINTED_ID_SEPARATOR = ":"
MINTED = "minted"  # validation context flag: the spec comes from cloudrec, not from a caller
_TASK_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,199}")
# Every size a caller controls is bounded: the job record is read on every step and listing, and
# 10,000 active jobs pay for every byte (a 20 MB label made a 25 MB record).
MAX_SPEC_BYTES = 64 * 1024  # the spec as compact JSON
MAX_SPEC_DEPTH = 16  # nesting of objects and arrays; the deepest real spec field is 5
MAX_LABELS = 32
MAX_LABEL_KEY = 64
MAX_LABEL_VALUE = 256
LabelKey = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_KEY)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE)]


class Callback(BaseModel):
    """Where to report the job's end: a Celery task name and/or a webhook URL."""

    model_config = ConfigDict(extra="forbid")

    task: str | None = None
    webhook: AnyHttpUrl | None = None

    @field_validator("task")
    @classmethod
    def _task_name(cls, value: str | None) -> str | None:
        if value is not None and not _TASK_NAME_RE.fullmatch(value):
            raise ValueError(
                "must be a Celery task name like 'app.on_recording', at most 200 characters"
                f" (got {value[:40]!r}{'...' if len(value) > 40 else ''})"
            )
        return value

    @field_validator("webhook")
    @classmethod
    def _no_credentials(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        # They would be stored on the job and sent in the clear; receivers authenticate
        # deliveries by their Standard Webhooks signature instead.
        if value is not None and (value.username is not None or value.password is not None):
            raise ValueError(
                "must not carry credentials (user:password@); receivers verify the "
                "webhook-signature header instead"
            )
        return value


class JobSpec(BaseModel):
    """A recording job as submitted. Field names are fixed by docs/design.md#fixed-interfaces."""

    model_config = ConfigDict(extra="forbid")

    job_id: str | None = None
    cname: ChannelName
    uid: UidStr | None = None
    token: SecretStr | None = None
    recordingConfig: RecordingConfig = Field(default_factory=RecordingConfig)
    recordingFileConfig: RecordingFileConfig = Field(default_factory=RecordingFileConfig)
    storage: str = "default"
    app: str = "default"  # the app profile (Agora project) to record with
    fileNamePrefix: list[PrefixPart] | None = None
    start_at: datetime | None = None
    duration: Annotated[int, Field(ge=1)] | None = None
    stop_at: datetime | None = None
    # How early the stop may go when the API budget is short (worker.planner), seconds.
    stop_early_max: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    callback: Callback | None = None
    # One merged MP4 of the whole recording (worker.merge); None: CLOUDREC_MERGE_DEFAULT.
    merge: bool | None = None

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        # An empty token is no token (a channel without App Certificate), as for the service
        # (docs/service/api-contract.md#start); the start request then carries no token field at
        # all.
        return None if value == "" else value

    @field_validator("job_id")
    @classmethod
    def _job_id_shape(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not _JOB_ID_RE.fullmatch(value):
            raise ValueError(
                "must be 1-128 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"
            )
        if MINTED_ID_SEPARATOR in value and not (info.context or {}).get(MINTED):
            raise ValueError(
                "must not contain ':' (reserved for the ids cloudrec gives schedule firings)"
            )
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _label_count(cls, value: Any) -> Any:
        if isinstance(value, dict) and len(value) > MAX_LABELS:
            raise ValueError(f"must have at most {MAX_LABELS} labels (got {len(value)})")
        return value

    @field_validator("fileNamePrefix")
    @classmethod
    def _prefix_length(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len("/".join(value)) > MAX_PREFIX_CHARS:
            raise ValueError(f"must be at most {MAX_PREFIX_CHARS} characters joined with '/'")
        return value

    @field_validator("start_at", "stop_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A naive time is ambiguous across machines; read it as UTC, as the status output is.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _one_end(self) -> JobSpec:
        if self.duration is not None and self.stop_at is not None:
            raise ValueError("give either duration or stop_at, not both")
        return self

    def wire(self) -> dict[str, Any]:
        """The spec as stored on the job record: JSON, the token left out (and the app, a
        field of the record itself), and only what differs from the defaults (validating it
        again restores them; 10,000 active jobs pay for every stored byte)."""
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            exclude_defaults=True,
            exclude={"token", "app"},
        )

    @property
    def has_callback(self) -> bool:
        return self.callback is not None and bool(self.callback.task or self.callback.webhook)


class StoredCallback(BaseModel):
    """A stored spec's callback (validated at submit; read back as plain strings)."""

    task: str | None = None
    webhook: str | None = None


class StoredSpec(BaseModel):
    """A job's spec as its record keeps it (:meth:`JobSpec.wire`), typed for the steps.

    Read back without the caller-facing checks (they passed at submit, against the settings of
    that moment); what ``wire`` left out as a default comes back as that default.
    """

    model_config = ConfigDict(extra="ignore")

    recordingConfig: RecordingConfig = Field(default_factory=RecordingConfig)
    recordingFileConfig: RecordingFileConfig = Field(default_factory=RecordingFileConfig)
    fileNamePrefix: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    callback: StoredCallback | None = None


class JobTimes(BaseModel):
    start_at: float | None
    stop_at: float
    stop_early_max: float = 0.0


def parse_job_spec(data: Any, settings: Settings, *, minted: bool = False) -> JobSpec:
    """Validate ``data`` as a job spec against the contract and the settings.

    ``minted``: the spec is cloudrec's own (a schedule firing), whose job id may use the
    reserved ':'; every spec from a caller is parsed without it. Raises :class:`JobSpecError`
    naming every bad field and its rule (all of them, not only the first); never calls the API.
    """
    if not isinstance(data, dict):
        raise JobSpecError(f"job spec: must be a JSON object (got {type(data).__name__})")
    _check_size(data)
    problems = _settings_problems(data, settings)
    try:
        spec = JobSpec.model_validate(data, context={MINTED: minted})
    except ValidationError as exc:
        raise JobSpecError("; ".join([describe_validation_error(exc), *problems])) from None
    problems += _webhook_target_problems(spec, settings)
    if problems:
        raise JobSpecError("; ".join(problems))
    return spec


def _check_size(data: dict[str, Any]) -> None:
    """Refuse a spec nested deeper than MAX_SPEC_DEPTH or larger than MAX_SPEC_BYTES, before
    anything recurses into it (a spec nested 200,000 deep would overflow the stack)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_SPEC_DEPTH:
            raise JobSpecError(f"job spec: nested deeper than {MAX_SPEC_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict | list | tuple):
            stack.extend((child, depth + 1) for child in children)
    try:
        size = len(json.dumps(data, separators=(",", ":"), default=str).encode())
    except (TypeError, ValueError):
        return  # not JSON at all: the model's validation names the bad field
    if size > MAX_SPEC_BYTES:
        raise JobSpecError(
            f"job spec: must be at most {MAX_SPEC_BYTES} bytes as JSON (got {size} bytes)"
        )


def _settings_problems(data: dict[str, Any], settings: Settings) -> list[str]:
    """What the settings refuse in a spec: an unknown storage profile or app, a webhook
    unsigned."""
    problems = []
    app = data.get("app", DEFAULT_APP)
    if not isinstance(app, str):
        problems.append(f"app: must be a string naming a configured app (got {type(app).__name__})")
    elif app.lower() not in settings.app_profiles():
        known = ", ".join(sorted(settings.app_profiles()))
        problems.append(
            f"app: must name a configured app ({known}; CLOUDREC_APPS__<NAME>__APP_ID ...); "
            f"got {app[:64]!r}"
        )
    storage = data.get("storage", "default")
    if isinstance(storage, str) and storage.lower() not in settings.storage:
        known = ", ".join(sorted(settings.storage))
        problems.append(
            f"storage: must name a configured storage profile ({known}); got {storage!r}"
        )
    callback = data.get("callback")
    if isinstance(callback, dict) and callback.get("webhook") and settings.webhook_secret is None:
        problems.append(
            "callback.webhook: needs CLOUDREC_WEBHOOK_SECRET (the Standard Webhooks "
            "whsec_ secret its signature is made with); none is configured"
        )
    return problems


def _webhook_target_problems(spec: JobSpec, settings: Settings) -> list[str]:
    """A webhook to a literal address that is not public is refused now (a host name is
    resolved and checked at each delivery, :mod:`worker.webhook_http`)."""
    url = spec.callback.webhook if spec.callback else None
    if url is None:
        return []
    try:
        address = literal_address(parse_target(str(url)).host)
    except WebhookRefused as exc:
        return [f"callback.webhook: {exc.rule}"]
    why = refusal(address, settings.webhook_allow) if address is not None else None
    if why is None:
        return []
    return [
        f"callback.webhook: must target a public address; {why} (list an internal receiver "
        "in CLOUDREC_WEBHOOK_ALLOW)"
    ]


def resolve_times(spec: JobSpec, settings: Settings, now: float) -> JobTimes:
    """When the job starts (None: now) and must stop, within the documented bounds:

    - ``start_at`` at most ``CLOUDREC_MAX_START_AHEAD`` seconds ahead, and at most
      ``CLOUDREC_MAX_DURATION`` in the past (later than that, the whole recording would be over:
      a wrong date or time zone, not a late submit);
    - ``duration`` 1 to ``CLOUDREC_MAX_DURATION`` seconds;
    - ``stop_at`` after the start (and now), at most ``CLOUDREC_MAX_DURATION`` after it.

    With neither ``duration`` nor ``stop_at`` the recording runs to the hard cap: a recording
    without a deadline is exactly the orphan this product exists to prevent. Every time stored
    is therefore within days of now, so nothing that formats one can overflow.
    """
    start = _epoch(spec.start_at, "start_at")
    if start is not None:
        _check_start(start, settings, now)
    begin = max(start or now, now)
    if spec.duration is not None and spec.duration > settings.max_duration:
        raise JobSpecError(_over_cap("duration", settings, f"{spec.duration} s"))
    stop = _epoch(spec.stop_at, "stop_at")
    if stop is not None:
        if stop <= begin:
            raise JobSpecError("stop_at: must be later than start_at and than now")
        if stop - begin > settings.max_duration:
            raise JobSpecError(_over_cap("stop_at", settings, f"{stop - begin:.0f} s"))
    else:
        stop = begin + (spec.duration or settings.max_duration)
    _check_stop_early(spec.stop_early_max, stop - begin, settings)
    return JobTimes(
        start_at=start if start and start > now else None,
        stop_at=stop,
        stop_early_max=spec.stop_early_max,
    )


def _check_stop_early(early: float, length: float, settings: Settings) -> None:
    """``stop_early_max`` at most the recording's length (an earlier stop would come before it
    starts) and at most ``CLOUDREC_STOP_EARLY_CAP``."""
    cap = settings.stop_early_cap
    if early > cap:
        raise JobSpecError(
            f"stop_early_max: must be at most CLOUDREC_STOP_EARLY_CAP = {cap:g} s (got {early:g})"
        )
    if early > 0 and early >= length:
        raise JobSpecError(
            "stop_early_max: must be less than the recording's length "
            f"({length:.0f} s from its start to stop_at or duration; got {early:g})"
        )


def _epoch(moment: datetime | None, field: str) -> float | None:
    if moment is None:
        return None
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        raise JobSpecError(f"{field}: must be a time between the years 1 and 9999") from None


def _check_start(start: float, settings: Settings, now: float) -> None:
    ahead = settings.max_start_ahead
    if start > now + ahead:
        raise JobSpecError(
            f"start_at: must be at most CLOUDREC_MAX_START_AHEAD = {ahead} s "
            f"({ahead / 86400:g} days) from now (got {(start - now) / 86400:.1f} days ahead); "
            "recurring recordings are schedules (cloudrec schedule add)"
        )
    if start < now - settings.max_duration:
        raise JobSpecError(
            f"start_at: must not be more than CLOUDREC_MAX_DURATION = {settings.max_duration} s "
            f"in the past (got {now - start:.0f} s ago)"
        )


def _over_cap(field: str, settings: Settings, got: str) -> str:
    return (
        f"{field}: the recording may last at most CLOUDREC_MAX_DURATION = "
        f"{settings.max_duration} s (got {got})"
    )
