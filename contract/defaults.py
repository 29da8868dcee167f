"""The service's defaults for values a start request may leave out
(docs/service/api-contract.md#recordingconfig, docs/service/api-contract.md#transcodingconfig,
docs/service/api-contract.md#recordingfileconfig).

The request models (:mod:`contract.models`) apply them when validating; the emulator's
compositor applies them again to raw JSON (an offline render scenario is not validated).
"""

from __future__ import annotations

from typing import Literal

# transcodingConfig (docs/service/api-contract.md#transcodingconfig). Any fps outside SUPPORTED_FPS
# is silently replaced by DEFAULT_FPS.
SUPPORTED_FPS = frozenset({1, 7, 10, 15, 24, 30, 60})
DEFAULT_FPS = 15
DEFAULT_WIDTH = 360
DEFAULT_HEIGHT = 640
DEFAULT_BITRATE_KBPS = 500
DEFAULT_LAYOUT = 0  # mixedVideoLayout: 0 floating
DEFAULT_BACKGROUND_COLOR = "#000000"
DEFAULT_ALPHA = 1.0  # layoutConfig[].alpha
DEFAULT_RENDER_MODE = 0  # layoutConfig[].render_mode, backgroundConfig[].render_mode

# recordingConfig (docs/service/api-contract.md#recordingconfig)
DEFAULT_STREAM_TYPES = 2  # 0 audio, 1 video, 2 both
DEFAULT_AUDIO_PROFILE = 0

# recordingFileConfig (docs/service/api-contract.md#recordingfileconfig)
DEFAULT_FILE_TYPES: tuple[Literal["hls", "mp4"], ...] = ("hls",)
