"""Logging setup: one line per state transition and API call, plain or JSON.

Records carry structured fields (:data:`STRUCTURED_FIELDS`: job id, cname, sid, transition,
operation, HTTP status, API code, request id). They come from two places:

- ``extra=`` on the log call (the client's API-call line, the store's transition line);
- the *log context*: fields bound for a stretch of work (:func:`log_context`), most importantly
  by :func:`install_task_log_context`, which binds the job id, cname and sid of the job a Celery
  task works on for as long as the task runs. Every line the task emits carries them, without the
  recording logic passing them around.

Secrets: nothing cloudrec logs holds one by construction (the client logs operation and status,
models mask secrets in every repr). As a second line of defence, :func:`setup_logging` takes the
configured secrets and replaces any that still reaches a line with ``***``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from config import Settings
from config.settings import url_password

STRUCTURED_FIELDS = (
    "job_id",
    "cname",
    "sid",
    "from_state",
    "to_state",
    "operation",
    "status",
    "api_code",
    "request_id",
    "schedule",
    "task",
)
REDACTED = "***"
_RTC_TOKEN = re.compile(r"007eJ[A-Za-z0-9+/]{16,}={0,2}")
# Secrets shorter than this are not redacted: replacing "a" everywhere would garble every line.
_MIN_SECRET_LENGTH = 6

_context: ContextVar[Mapping[str, str]] = ContextVar(
    "cloudrec_log_context", default=MappingProxyType({})
)

JobLookup = Callable[[str], Mapping[str, str | None]]


# -- the log context ----------------------------------------------------------------------------
def bind_log_fields(**fields: object) -> Token[Mapping[str, str]]:
    """Add fields to the current context; undo with :func:`reset_log_fields` (None is skipped)."""
    merged = {**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    return _context.set(merged)


def reset_log_fields(token: Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every line logged inside the block carries ``fields`` (unless the call sets its own)."""
    token = bind_log_fields(**fields)
    try:
        yield
    finally:
        reset_log_fields(token)


def current_log_fields() -> dict[str, str]:
    return dict(_context.get())


class DeferredJobFields:
    """A task's job fields (cname, sid), read from the job store only when a line needs them.

    Most of a task's lines name the job's cname and sid themselves (the store's transition
    line, the API call line): reading them when every task starts cost a Redis round trip per
    task for lines that rarely use it. Read once, then kept for the task's other lines; and
    not read at all when the task's step read its job anyway (:func:`offer_job_fields`: the
    line Celery logs when a task succeeded lacks them, and looking them up cost a round trip
    per task).
    """

    def __init__(self, lookup: JobLookup, job_id: str) -> None:
        self._lookup = lookup
        self._job_id = job_id
        self._fields: Mapping[str, str | None] | None = None

    def fields(self) -> Mapping[str, str | None]:
        if self._fields is None:
            self._fields = _safe_lookup(self._lookup, self._job_id)
        return self._fields

    def offer(self, job_id: str, fields: Mapping[str, str | None]) -> None:
        """The job's fields as just read by the task itself (the latest read wins: a sid the
        task learnt is in it)."""
        if job_id == self._job_id:
            self._fields = fields


def offer_job_fields(job_id: str, cname: str | None, sid: str | None) -> None:
    """Tell the running task's log context its job's cname and sid, read anyway (the job
    store calls this when it reads one job): its lines need not look them up."""
    deferred = _deferred.get()
    if deferred is not None:
        deferred.offer(job_id, {"cname": cname, "sid": sid})


_deferred: ContextVar[DeferredJobFields | None] = ContextVar("cloudrec_log_job", default=None)


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record; fields given with ``extra=`` win. A line
    without a cname gets the task's job's cname and sid (:class:`DeferredJobFields`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        deferred = _deferred.get()
        if deferred is not None and getattr(record, "cname", None) is None:
            for field, known in deferred.fields().items():
                if known is not None and getattr(record, field, None) is None:
                    setattr(record, field, known)
        return True


class TaskChatter(logging.Filter):
    """Drops Celery's "Task ... succeeded" line (at INFO): a second line per task message, when
    the job's own lines already say what the task did (one per state change, one per API
    call). Retries, expected errors and failures are still logged by Celery."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery.app.trace import LOG_SUCCESS

        return record.msg is not LOG_SUCCESS


# -- formatters ---------------------------------------------------------------------------------
def _structured(record: logging.LogRecord) -> dict[str, str]:
    out = {}
    for name in STRUCTURED_FIELDS:
        value = getattr(record, name, None)
        if value is not None and value != "":
            out[name] = str(value)
    return out


class Redactor:
    """Replaces every configured secret value, and anything shaped like an RTC token, with
    ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is removed whole.
        self._secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        # RTC tokens are minted per start and so not in the list: redact anything shaped
        # like an AccessToken2 ("007" + base64 of zlib data, whose first bytes encode "eJ").
        return _RTC_TOKEN.sub(REDACTED, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the structured fields that are present."""

    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self._redact = redact or Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_structured(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return self._redact(json.dumps(out, separators=(",", ":")))


class PlainFormatter(logging.Formatter):
    """``time level logger: message  key=value ...`` for people reading a terminal."""

    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact or Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _structured(record)
        if fields:
            line += "  " + " ".join(f"{k}={v}" for k, v in fields.items())
        return self._redact(line)


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold: every app's customer secret, NCS secret and App
    Certificate, storage keys, vault key, webhook secret, URL passwords, the dev API token, the
    web page's password."""
    values = [settings.customer_secret.get_secret_value()]
    for app in settings.app_profiles().values():
        values.append(app.customer_secret.get_secret_value())
        if app.ncs_secret is not None:
            values.append(app.ncs_secret.get_secret_value())
        if app.app_certificate is not None:  # every app's App Certificate
            values.append(app.app_certificate.get_secret_value())
    for profile in settings.storage.values():
        values += [profile.access_key.get_secret_value(), profile.secret_key.get_secret_value()]
    if settings.vault_key is not None:
        values.append(settings.vault_key.get_secret_value())
    if settings.webhook_secret is not None:
        values.append(settings.webhook_secret.get_secret_value())
    values += [p for u in (settings.redis_url, settings.api_base_url) if (p := url_password(u))]
    if settings.dev_token is not None:
        values.append(settings.dev_token.get_secret_value())
    if settings.app_certificate is not None:
        values.append(settings.app_certificate.get_secret_value())
    if settings.web_password is not None:  # `cloudrec web`'s basic auth
        values.append(settings.web_password.get_secret_value())
    return values


def setup_logging(
    level: int | str = logging.INFO,
    *,
    json_lines: bool = False,
    secrets: Iterable[str] = (),
    logfile: str | None = None,
) -> None:
    """Send every logger's lines to stderr (or ``logfile``), one per line, with the bound
    context attached."""
    redact = Redactor(secrets)
    handler: logging.Handler = (
        logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter(redact) if json_lines else PlainFormatter(redact))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_task_lines(level)
    logging.captureWarnings(True)  # Python warnings become log lines too (JSON when asked)


# Celery's loggers of its two lines per task message: "Received task" (the only INFO line of
# the strategy logger) and "Task ... succeeded" (trace).
_RECEIVED_LOGGER = "celery.worker.strategy"
_TRACE_LOGGER = "celery.app.trace"
_TASK_CHATTER = TaskChatter()


def quiet_task_lines(level: int | str) -> None:
    """Above DEBUG, leave out Celery's "Received task" and "Task ... succeeded" lines: with the
    job's own lines they made 17 lines per recording, and formatting them was a sixth of a
    worker's CPU (benchmarks/README.md). ``-l DEBUG`` brings them back."""
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    debug = isinstance(numeric, int) and numeric <= logging.DEBUG
    trace = logging.getLogger(_TRACE_LOGGER)
    if debug:
        logging.getLogger(_RECEIVED_LOGGER).setLevel(logging.NOTSET)
        trace.removeFilter(_TASK_CHATTER)
        return
    # A level rather than a filter: the strategy then skips building the line at all.
    logging.getLogger(_RECEIVED_LOGGER).setLevel(logging.WARNING)
    trace.addFilter(_TASK_CHATTER)


# -- Celery tasks ---------------------------------------------------------------------------------
# Tasks whose first argument is not a job id.
_NOT_JOB_ARG = frozenset({"recording.submit", "recording.dispatch", "recording.reconcile"})
SCHEDULE_TASK = "recording.fire_schedule"
_task_tokens: dict[str, tuple[Token[Mapping[str, str]], Token[DeferredJobFields | None]]] = {}


def task_log_fields(task_name: str, args: Any) -> dict[str, object]:
    """The context a task's lines carry: its name, and its job id or schedule."""
    fields: dict[str, object] = {"task": task_name}
    job_id = task_job_id(task_name, args)
    if job_id is not None:
        fields["job_id"] = job_id
    elif task_name == SCHEDULE_TASK and args and isinstance(args[0], str):
        fields["schedule"] = args[0]
    return fields


def task_job_id(task_name: str, args: Any) -> str | None:
    """The job a task works on: its first argument, for the job steps."""
    first = args[0] if isinstance(args, list | tuple) and args else None
    if not isinstance(first, str) or task_name == SCHEDULE_TASK:
        return None
    if task_name.startswith("recording.") and task_name not in _NOT_JOB_ARG:
        return first
    return None


def _safe_lookup(lookup: JobLookup, job_id: str) -> Mapping[str, str | None]:
    try:
        return lookup(job_id)
    except Exception:  # the log context must never fail the task it describes
        return {}


def install_task_log_context(lookup: JobLookup | None = None) -> None:
    """Bind each Celery task's job fields to its log lines (call once per worker process).

    ``lookup(job_id)`` returns the job's ``cname`` and ``sid``, read the first time one of the
    task's lines lacks them (:class:`DeferredJobFields`).
    Connecting twice is harmless: the handlers are registered under fixed ids.
    """
    from celery.signals import task_postrun, task_prerun

    def _bind(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
        name = getattr(task, "name", "") or ""
        if task_id is None:
            return
        job_id = task_job_id(name, args)
        deferred = DeferredJobFields(lookup, job_id) if lookup and job_id else None
        _task_tokens[task_id] = (
            bind_log_fields(**task_log_fields(name, args)),
            _deferred.set(deferred),
        )

    def _unbind(task_id: str | None = None, **_: Any) -> None:
        tokens = _task_tokens.pop(task_id, None) if task_id is not None else None
        if tokens is not None:
            with contextlib.suppress(ValueError):  # set in another context: nothing to undo
                _deferred.reset(tokens[1])
            with contextlib.suppress(ValueError):
                reset_log_fields(tokens[0])

    task_prerun.connect(_bind, weak=False, dispatch_uid="cloudrec-log-context-bind")
    task_postrun.connect(_unbind, weak=False, dispatch_uid="cloudrec-log-context-unbind")


# -- every process Celery starts ------------------------------------------------------------------
def connect_celery_logging(
    settings: Callable[[], Settings], lookup: JobLookup | None = None
) -> None:
    """Make every process started from the Celery app log as ``cloudrec worker`` does.

    Connected where the app is defined, so ``celery -A worker.celery_app worker`` or ``beat``
    gets the same lines as ``cloudrec worker`` or ``beat``: plain or JSON
    (``CLOUDREC_LOG_JSON``), secrets redacted, each task's lines carrying its job's fields.
    Celery sends ``setup_logging`` from every worker and beat (and again in each prefork
    child); a receiver there replaces Celery's own set-up. ``settings`` is read when the
    signal comes, after the process's settings are configured; ``lookup`` finds a task's job
    (:func:`install_task_log_context`).
    """
    from celery.signals import celeryd_init
    from celery.signals import setup_logging as celery_setup_logging

    def _setup(loglevel: int | str | None = None, logfile: str | None = None, **_: Any) -> None:
        current = settings()
        setup_logging(
            loglevel or logging.INFO,
            json_lines=current.log_json,
            secrets=settings_secrets(current),
            logfile=logfile or None,
        )

    def _early(options: Mapping[str, Any] | None = None, **_: Any) -> None:
        # A worker warns (e.g. about running as root) before Celery sets logging up: set it up
        # first, so those lines are formatted (JSON) like the rest.
        options = options or {}
        _setup(options.get("loglevel"), options.get("logfile"))

    celery_setup_logging.connect(_setup, weak=False, dispatch_uid="cloudrec-setup-logging")
    celeryd_init.connect(_early, weak=False, dispatch_uid="cloudrec-setup-logging-early")
    install_task_log_context(lookup)
