"""cloudrec-client: submit and follow cloudrec recording jobs from a Python service.

Talks to cloudrec's workers through their public tasks on the intake queue (``cloudrec``)
with a Celery app of its own; imports nothing of cloudrec.
"""

from cloudrec_client._client import INTAKE_QUEUE, CloudrecClient
from cloudrec_client._errors import (
    CloudrecError,
    JobNotFound,
    JobSpecError,
    NoAnswer,
    TaskFailed,
    WaitTimeout,
)
from cloudrec_client._seal import SEALED_PREFIX, generate_vault_key, is_sealed, seal_token
from cloudrec_client._types import TERMINAL_STATES, FileInfo, HistoryEntry, JobStatus

__version__ = "0.1.0"

__all__ = [
    "INTAKE_QUEUE",
    "SEALED_PREFIX",
    "TERMINAL_STATES",
    "CloudrecClient",
    "CloudrecError",
    "FileInfo",
    "HistoryEntry",
    "JobNotFound",
    "JobSpecError",
    "JobStatus",
    "NoAnswer",
    "TaskFailed",
    "WaitTimeout",
    "generate_vault_key",
    "is_sealed",
    "seal_token",
]
