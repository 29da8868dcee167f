"""Agora's notifications (NCS) for Cloud Recording (docs/service/ncs.md): what the service posts and
how it signs it. The emulator sends these; the worker's receiver checks and reads them.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import IntEnum, IntFlag

PRODUCT_CLOUD_RECORDING = 3  # the envelope's productId (docs/service/ncs.md#envelope)

SIGNATURE_V1 = "Agora-Signature"  # HMAC-SHA1 of the raw body, hex
SIGNATURE_V2 = "Agora-Signature-V2"  # HMAC-SHA256 of the raw body, hex


def signatures(body: bytes, secret: str) -> dict[str, str]:
    """The two signature headers NCS sends with a raw body (docs/service/ncs.md#transport)."""
    key = secret.encode()
    return {
        SIGNATURE_V1: hmac.new(key, body, hashlib.sha1).hexdigest(),
        SIGNATURE_V2: hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


class ServiceType(IntEnum):
    """The envelope's ``payload.serviceType`` (docs/service/ncs.md#event-types): which part of the
    service speaks."""

    CLOUD_RECORDING = 0
    RECORDER = 1
    UPLOADER = 2


class EventType(IntEnum):
    """The envelope's ``eventType`` (docs/service/ncs.md#event-types), composite mode."""

    ERROR = 1
    WARNING = 2
    STATUS_UPDATE = 3
    FILE_INFOS = 4
    SESSION_EXIT = 11
    SESSION_FAILOVER = 12
    UPLOADER_STARTED = 30
    UPLOADED = 31
    BACKUPED = 32  # as UPLOADED, and at least one file went to Agora's backup storage
    UPLOADING_PROGRESS = 33
    RECORDER_STARTED = 40
    RECORDER_LEAVE = 41
    RECORDER_SLICE_START = 42
    RECORDER_AUDIO_STREAM_STATE_CHANGED = 43
    RECORDER_VIDEO_STREAM_STATE_CHANGED = 44


# eventType -> (serviceType, msgName), 11.3.
EVENTS: dict[EventType, tuple[ServiceType, str]] = {
    EventType.ERROR: (ServiceType.CLOUD_RECORDING, "cloud_recording_error"),
    EventType.WARNING: (ServiceType.CLOUD_RECORDING, "cloud_recording_warning"),
    EventType.STATUS_UPDATE: (ServiceType.CLOUD_RECORDING, "cloud_recording_status_update"),
    EventType.FILE_INFOS: (ServiceType.CLOUD_RECORDING, "cloud_recording_file_infos"),
    EventType.SESSION_EXIT: (ServiceType.CLOUD_RECORDING, "session_exit"),
    EventType.SESSION_FAILOVER: (ServiceType.CLOUD_RECORDING, "session_failover"),
    EventType.UPLOADER_STARTED: (ServiceType.UPLOADER, "uploader_started"),
    EventType.UPLOADED: (ServiceType.UPLOADER, "uploaded"),
    EventType.BACKUPED: (ServiceType.UPLOADER, "backuped"),
    EventType.UPLOADING_PROGRESS: (ServiceType.UPLOADER, "uploading_progress"),
    EventType.RECORDER_STARTED: (ServiceType.RECORDER, "recorder_started"),
    EventType.RECORDER_LEAVE: (ServiceType.RECORDER, "recorder_leave"),
    EventType.RECORDER_SLICE_START: (ServiceType.RECORDER, "recorder_slice_start"),
    EventType.RECORDER_AUDIO_STREAM_STATE_CHANGED: (
        ServiceType.RECORDER,
        "recorder_audio_stream_state_changed",
    ),
    EventType.RECORDER_VIDEO_STREAM_STATE_CHANGED: (
        ServiceType.RECORDER,
        "recorder_video_stream_state_changed",
    ),
}


class LeaveCode(IntFlag):
    """Event 41's ``leaveCode`` bits (docs/service/behaviour.md#maxidletime): why the recorder left
    the channel."""

    INIT_FAILURE = 0  # no bit set: the recorder could not join
    SIGINT = 2  # the service shut the recorder down
    NO_USERS = 4  # nobody in the channel for maxIdleTime: the idle exit
    CALLED = 16  # stop was called
