"""Plain, immutable inputs and outputs of the compositor (no pydantic, no worker imports).

The emulator service converts its API models into these; `api_config` converts raw API JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class VideoSource:
    """What a simulated user publishes as video: exactly one of `color` or `file` is set.

    `color` ("#RRGGBB") is a synthetic pattern: the solid colour with a small moving marker.
    `file` is any media file PyAV can read; it loops.
    """

    color: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class AudioSource:
    """What a simulated user publishes as audio: a sine `tone` in Hz, or a looping `file`."""

    tone: float | None = None
    file: str | None = None


@dataclass(frozen=True)
class UserSnapshot:
    """One subscribed user at a given instant; lists of snapshots are in join order.

    `video`/`audio` are None when the user does not publish that stream right now (muted,
    unpublished, or not subscribed by the recording).
    """

    uid: str
    video: VideoSource | None
    audio: AudioSource | None


@dataclass(frozen=True)
class LayoutRegionSpec:
    """One `layoutConfig` entry (layout 3). Geometry is in fractions of the canvas, [0, 1]."""

    x: float
    y: float
    width: float
    height: float
    uid: str | None = None
    alpha: float = 1.0
    render_mode: int = 0  # 0 crop, 1 fit


@dataclass(frozen=True)
class BackgroundImageSpec:
    """One `backgroundConfig` entry: the image shown in `uid`'s region once its video stopped."""

    uid: str
    image: str
    render_mode: int = 0  # 0 crop, 1 fit


@dataclass(frozen=True)
class LayoutSpec:
    """The layout part of transcodingConfig / updateLayout
    (docs/service/api-contract.md#transcodingconfig, docs/service/api-contract.md#updatelayout)."""

    mixed_video_layout: int = 0  # 0 floating, 1 best fit, 2 vertical, 3 custom
    background_color: str = "#000000"
    max_resolution_uid: str | None = None
    regions: tuple[LayoutRegionSpec, ...] = ()
    background_image: str | None = None  # path or http(s) URL
    default_user_background_image: str | None = None
    user_backgrounds: tuple[BackgroundImageSpec, ...] = ()


@dataclass(frozen=True)
class MediaConfig:
    """Everything the compositor needs to know about one recording's output."""

    width: int = 360
    height: int = 640
    fps: int = 15
    bitrate_kbps: int = 500
    stream_types: int = 2  # 0 audio only, 1 video only, 2 both
    audio_profile: int = 0  # 0: 48 kHz mono 48 kbps; 1: mono 128 kbps; 2: stereo 192 kbps
    layout: LayoutSpec = field(default_factory=LayoutSpec)
    av_file_types: tuple[str, ...] = ("hls",)  # ("hls",) or ("hls", "mp4")
    # HLS slice length (docs/service/files.md#slicing: about 15 s); tests shrink it.
    slice_seconds: float = 15.0
    # MP4 rollover (docs/service/files.md#mp4: about 2 h or about 2 GB). A new MP4 starts at the
    # first slice boundary at or past either limit, so a file exceeds them by less than one slice.
    mp4_max_seconds: float = 7200.0
    mp4_max_bytes: int = 2_000_000_000

    @property
    def has_video(self) -> bool:
        return self.stream_types in (1, 2)

    @property
    def has_audio(self) -> bool:
        return self.stream_types in (0, 2)

    @property
    def track_type(self) -> str:
        """The `trackType` the service reports for files of this recording."""
        if self.has_video and self.has_audio:
            return "audio_and_video"
        return "video" if self.has_video else "audio"


@dataclass(frozen=True)
class OutputFile:
    """A completed (or, for the M3U8, rewritten) output file."""

    name: str  # bare file name, e.g. "<sid>_<cname>_0.mp4"
    path: Path  # where it is on disk now
    kind: str  # "m3u8" | "ts" | "mp4"
    track_type: str  # "audio" | "video" | "audio_and_video"
    slice_start_ms: int  # epoch ms of the file's first media
