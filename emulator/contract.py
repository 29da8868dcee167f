"""The REST contract the emulator shares with the worker: request and response models, the
rules for channel names and uids, and how a validation error is described.

The one module of the emulator that imports the worker's ``worker.api_models``; the rest of
the emulator imports these names from here, so that moving the contract into a package of
its own changes this file only.
"""

from __future__ import annotations

from worker.api_models import (
    STS_VENDORS,
    VENDOR_S3_COMPATIBLE,
    AcquireClientRequest,
    AcquireResponse,
    ApiRequest,
    Color,
    ErrorBody,
    LayoutUpdate,
    QueryResponse,
    RecordingConfig,
    StartClientRequest,
    StartResponse,
    StopClientRequest,
    StopResponse,
    StorageConfig,
    StreamSubscribe,
    UpdateClientRequest,
    UpdateResponse,
    channel_name_problem,
    describe_validation_error,
    uid_problem,
)

__all__ = [
    "STS_VENDORS",
    "VENDOR_S3_COMPATIBLE",
    "AcquireClientRequest",
    "AcquireResponse",
    "ApiRequest",
    "Color",
    "ErrorBody",
    "LayoutUpdate",
    "QueryResponse",
    "RecordingConfig",
    "StartClientRequest",
    "StartResponse",
    "StopClientRequest",
    "StopResponse",
    "StorageConfig",
    "StreamSubscribe",
    "UpdateClientRequest",
    "UpdateResponse",
    "channel_name_problem",
    "describe_validation_error",
    "uid_problem",
]
