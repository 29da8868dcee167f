"""Raw start/updateLayout JSON (docs/service/api-contract.md#recordingconfig,
docs/service/api-contract.md#transcodingconfig, docs/service/api-contract.md#recordingfileconfig,
docs/service/api-contract.md#updatelayout) to the compositor's dataclasses.

Input is assumed validated already (the service validates with worker.api_models; the offline
render takes a scenario file as written). Omitted fields take the spec defaults, and so do
``null``, ``""`` and ``[]``: what real clients send for a value nobody set means "not given",
as on the real service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.media.models import BackgroundImageSpec, LayoutRegionSpec, LayoutSpec, MediaConfig

# docs/service/api-contract.md#transcodingconfig: any other fps is silently replaced by 15.
SUPPORTED_FPS = frozenset({1, 7, 10, 15, 24, 30, 60})
DEFAULT_FPS = 15


def media_config_from_api(
    recording_config: Mapping[str, Any], file_config: Mapping[str, Any] | None = None
) -> MediaConfig:
    """MediaConfig from the start API's `recordingConfig` and `recordingFileConfig`."""
    transcoding = _given(recording_config, "transcodingConfig", {})
    fps = int(_given(transcoding, "fps", DEFAULT_FPS))
    av_file_types = _given(file_config or {}, "avFileType", ["hls"])
    return MediaConfig(
        width=int(_given(transcoding, "width", 360)),
        height=int(_given(transcoding, "height", 640)),
        fps=fps if fps in SUPPORTED_FPS else DEFAULT_FPS,
        bitrate_kbps=int(_given(transcoding, "bitrate", 500)),
        stream_types=int(_given(recording_config, "streamTypes", 2)),
        audio_profile=int(_given(recording_config, "audioProfile", 0)),
        layout=layout_spec_from_api(transcoding),
        av_file_types=tuple(str(kind) for kind in av_file_types),
    )


def layout_spec_from_api(d: Mapping[str, Any]) -> LayoutSpec:
    """LayoutSpec from a transcodingConfig or an updateLayout clientRequest.

    Every omitted field falls back to its default (updateLayout replaces the whole layout).
    """
    return LayoutSpec(
        mixed_video_layout=int(_given(d, "mixedVideoLayout", 0)),
        background_color=str(_given(d, "backgroundColor", "#000000")),
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
        alpha=float(_given(entry, "alpha", 1.0)),
        render_mode=int(_given(entry, "render_mode", 0)),
    )


def _user_background(entry: Mapping[str, Any]) -> BackgroundImageSpec:
    return BackgroundImageSpec(
        uid=str(entry["uid"]),
        image=str(entry["image_url"]),
        render_mode=int(_given(entry, "render_mode", 0)),
    )


def _given(mapping: Mapping[str, Any], key: str, default: Any) -> Any:
    """``mapping[key]``, or ``default`` when it is missing, ``null``, ``""`` or ``[]``."""
    value = mapping.get(key)
    return default if value is None or value == "" or value == [] else value


def _optional_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
