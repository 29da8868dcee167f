"""Raw start/updateLayout JSON (spec 3.2-3.4, 6) to the compositor's dataclasses.

Input is assumed validated already; omitted fields take the spec defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.media.models import BackgroundImageSpec, LayoutRegionSpec, LayoutSpec, MediaConfig

# Spec 3.3: any other fps is silently replaced by 15.
SUPPORTED_FPS = frozenset({1, 7, 10, 15, 24, 30, 60})
DEFAULT_FPS = 15


def media_config_from_api(
    recording_config: Mapping[str, Any], file_config: Mapping[str, Any] | None = None
) -> MediaConfig:
    """MediaConfig from the start API's `recordingConfig` and `recordingFileConfig`."""
    transcoding = recording_config.get("transcodingConfig") or {}
    fps = int(transcoding.get("fps", DEFAULT_FPS))
    av_file_types = (file_config or {}).get("avFileType") or ["hls"]
    return MediaConfig(
        width=int(transcoding.get("width", 360)),
        height=int(transcoding.get("height", 640)),
        fps=fps if fps in SUPPORTED_FPS else DEFAULT_FPS,
        bitrate_kbps=int(transcoding.get("bitrate", 500)),
        stream_types=int(recording_config.get("streamTypes", 2)),
        audio_profile=int(recording_config.get("audioProfile", 0)),
        layout=layout_spec_from_api(transcoding),
        av_file_types=tuple(str(kind) for kind in av_file_types),
    )


def layout_spec_from_api(d: Mapping[str, Any]) -> LayoutSpec:
    """LayoutSpec from a transcodingConfig or an updateLayout clientRequest.

    Every omitted field falls back to its default (updateLayout replaces the whole layout).
    """
    max_uid = d.get("maxResolutionUid")
    return LayoutSpec(
        mixed_video_layout=int(d.get("mixedVideoLayout", 0)),
        background_color=str(d.get("backgroundColor") or "#000000"),
        max_resolution_uid=str(max_uid) if max_uid not in (None, "") else None,
        regions=tuple(_region(entry) for entry in d.get("layoutConfig") or ()),
        background_image=_optional_str(d.get("backgroundImage")),
        default_user_background_image=_optional_str(d.get("defaultUserBackgroundImage")),
        user_backgrounds=tuple(
            _user_background(entry) for entry in d.get("backgroundConfig") or ()
        ),
    )


def _region(entry: Mapping[str, Any]) -> LayoutRegionSpec:
    uid = entry.get("uid")
    return LayoutRegionSpec(
        x=float(entry.get("x_axis", 0.0)),
        y=float(entry.get("y_axis", 0.0)),
        width=float(entry.get("width", 0.0)),
        height=float(entry.get("height", 0.0)),
        uid=str(uid) if uid not in (None, "") else None,
        alpha=float(entry.get("alpha", 1.0)),
        render_mode=int(entry.get("render_mode", 0)),
    )


def _user_background(entry: Mapping[str, Any]) -> BackgroundImageSpec:
    return BackgroundImageSpec(
        uid=str(entry["uid"]),
        image=str(entry["image_url"]),
        render_mode=int(entry.get("render_mode", 0)),
    )


def _optional_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
