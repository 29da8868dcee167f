"""Raw start/updateLayout JSON (docs/service/api-contract.md#recordingconfig,
docs/service/api-contract.md#transcodingconfig, docs/service/api-contract.md#recordingfileconfig,
docs/service/api-contract.md#updatelayout) to the compositor's dataclasses.

Input is assumed validated already (the service validates with contract.models; the offline
render takes a scenario file as written). Omitted fields take the spec defaults, and so do
``null``, ``""`` and ``[]``: what real clients send for a value nobody set means "not given",
as on the real service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contract.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_AUDIO_PROFILE,
    DEFAULT_BACKGROUND_COLOR,
    DEFAULT_BITRATE_KBPS,
    DEFAULT_FILE_TYPES,
    DEFAULT_FPS,
    DEFAULT_HEIGHT,
    DEFAULT_LAYOUT,
    DEFAULT_RENDER_MODE,
    DEFAULT_STREAM_TYPES,
    DEFAULT_WIDTH,
    SUPPORTED_FPS,
)
from emulator.media.models import BackgroundImageSpec, LayoutRegionSpec, LayoutSpec, MediaConfig


def media_config_from_api(
    recording_config: Mapping[str, Any], file_config: Mapping[str, Any] | None = None
) -> MediaConfig:
    """MediaConfig from the start API's `recordingConfig` and `recordingFileConfig`."""
    transcoding = _given(recording_config, "transcodingConfig", {})
    fps = int(_given(transcoding, "fps", DEFAULT_FPS))
    av_file_types = _given(file_config or {}, "avFileType", DEFAULT_FILE_TYPES)
    return MediaConfig(
        width=int(_given(transcoding, "width", DEFAULT_WIDTH)),
        height=int(_given(transcoding, "height", DEFAULT_HEIGHT)),
        fps=fps if fps in SUPPORTED_FPS else DEFAULT_FPS,
        bitrate_kbps=int(_given(transcoding, "bitrate", DEFAULT_BITRATE_KBPS)),
        stream_types=int(_given(recording_config, "streamTypes", DEFAULT_STREAM_TYPES)),
        audio_profile=int(_given(recording_config, "audioProfile", DEFAULT_AUDIO_PROFILE)),
        layout=layout_spec_from_api(transcoding),
        av_file_types=tuple(str(kind) for kind in av_file_types),
    )


def layout_spec_from_api(d: Mapping[str, Any]) -> LayoutSpec:
    """LayoutSpec from a transcodingConfig or an updateLayout clientRequest.

    Every omitted field falls back to its default (updateLayout replaces the whole layout).
    """
    return LayoutSpec(
        mixed_video_layout=int(_given(d, "mixedVideoLayout", DEFAULT_LAYOUT)),
        background_color=str(_given(d, "backgroundColor", DEFAULT_BACKGROUND_COLOR)),
        max_resolution_uid=_optional_str(d.get("maxResolutionUid")),
        regions=tuple(_region(entry) for entry in _given(d, "layoutConfig", ())),
        background_image=_optional_str(d.get("backgroundImage")),
        default_user_background_image=_optional_str(d.get("defaultUserBackgroundImage")),
        user_backgrounds=tuple(
            _user_background(entry) for entry in _given(d, "backgroundConfig", ())
        ),
    )


def _region(entry: Mapping[str, Any]) -> LayoutRegionSpec:
    return LayoutRegionSpec(
        x=float(_given(entry, "x_axis", 0.0)),
        y=float(_given(entry, "y_axis", 0.0)),
        width=float(_given(entry, "width", 0.0)),
        height=float(_given(entry, "height", 0.0)),
        uid=_optional_str(entry.get("uid")),  # the Go client sends "" for "in join order"
        alpha=float(_given(entry, "alpha", DEFAULT_ALPHA)),
        render_mode=int(_given(entry, "render_mode", DEFAULT_RENDER_MODE)),
    )


def _user_background(entry: Mapping[str, Any]) -> BackgroundImageSpec:
    return BackgroundImageSpec(
        uid=str(entry["uid"]),
        image=str(entry["image_url"]),
        render_mode=int(_given(entry, "render_mode", DEFAULT_RENDER_MODE)),
    )


def _given(mapping: Mapping[str, Any], key: str, default: Any) -> Any:
    """``mapping[key]``, or ``default`` when it is missing, ``null``, ``""`` or ``[]``."""
    value = mapping.get(key)
    return default if value is None or value == "" or value == [] else value


def _optional_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
