"""Decode recorder output with PyAV and measure what is on screen and in the audio."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from emulator.media import AudioSource, Region, UserSnapshot, VideoSource

RGB = tuple[int, int, int]
SLICE_RE = re.compile(r"^(?P<sid>[0-9a-z]+)_(?P<cname>[^_]+)_(?P<utc>\d{17})\.ts$")

RED: RGB = (255, 0, 0)
GREEN: RGB = (0, 255, 0)
BLUE: RGB = (0, 0, 255)
YELLOW: RGB = (255, 255, 0)
MAGENTA: RGB = (255, 0, 255)
CYAN: RGB = (0, 255, 255)
WHITE: RGB = (255, 255, 255)
GREY: RGB = (128, 128, 128)


def hex_of(rgb: RGB) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def user(uid: str, rgb: RGB | None = None, tone: float | None = None) -> UserSnapshot:
    return UserSnapshot(
        uid,
        VideoSource(color=hex_of(rgb)) if rgb is not None else None,
        AudioSource(tone=tone) if tone is not None else None,
    )


@dataclass
class DecodedVideo:
    width: int
    height: int
    codec: str
    rate: float
    times: list[float]
    frames: list[npt.NDArray[np.uint8]]  # rgb24

    @property
    def duration(self) -> float:
        return float(self.times[-1] - self.times[0] + 1 / self.rate)

    def frame_at(self, t: float) -> npt.NDArray[np.uint8]:
        """The frame showing at media time t (relative to the first frame)."""
        start = self.times[0]
        index = max(i for i, time in enumerate(self.times) if time - start <= t + 1e-6)
        return self.frames[index]


def decode_video(path: Path) -> DecodedVideo:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        times, frames = [], []
        for frame in container.decode(stream):
            times.append(float(frame.time))
            frames.append(frame.to_ndarray(format="rgb24"))
        return DecodedVideo(stream.width, stream.height, codec, rate, times, frames)


@dataclass
class DecodedAudio:
    codec: str
    sample_rate: int
    channels: int
    samples: npt.NDArray[np.float32]  # (channels, n)

    @property
    def duration(self) -> float:
        return float(self.samples.shape[1]) / self.sample_rate


def decode_audio(path: Path) -> DecodedAudio:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
        rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
    return DecodedAudio(codec, rate, channels, np.concatenate(chunks, axis=1).astype(np.float32))


def stream_types(path: Path) -> set[str]:
    with av.open(str(path)) as container:
        return {stream.type for stream in container.streams}


def region_color(frame: npt.NDArray[np.uint8], region: Region) -> RGB:
    """Median colour of the central half of a region (away from edges and the marker)."""
    x0 = region.x + region.width // 4
    y0 = region.y + region.height // 4
    patch = frame[y0 : y0 + max(1, region.height // 2), x0 : x0 + max(1, region.width // 2)]
    median = np.median(patch.reshape(-1, 3), axis=0)
    return int(median[0]), int(median[1]), int(median[2])


def rect_color(frame: npt.NDArray[np.uint8], x: int, y: int, w: int, h: int) -> RGB:
    patch = frame[y : y + h, x : x + w]
    median = np.median(patch.reshape(-1, 3), axis=0)
    return int(median[0]), int(median[1]), int(median[2])


def close_to(actual: RGB, expected: RGB, tolerance: int = 24) -> bool:
    return all(abs(int(a) - int(e)) <= tolerance for a, e in zip(actual, expected, strict=True))


def tone_levels(
    samples: npt.NDArray[np.float32], rate: int, frequencies: list[float]
) -> dict[float, float]:
    """Spectral magnitude at each frequency relative to the strongest bin (0..1)."""
    mono = samples.mean(axis=0)
    window = np.hanning(mono.size)
    spectrum = np.abs(np.fft.rfft(mono * window))
    freqs = np.fft.rfftfreq(mono.size, 1 / rate)
    peak = float(spectrum.max()) or 1.0
    levels = {}
    for frequency in frequencies:
        band = (freqs > frequency - 8) & (freqs < frequency + 8)
        levels[frequency] = float(spectrum[band].max()) / peak
    return levels


def parse_playlist(path: Path) -> tuple[list[str], list[tuple[float, str]]]:
    """(all lines, [(extinf seconds, slice name)])."""
    lines = path.read_text().splitlines()
    entries = []
    for index, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            entries.append((float(line[len("#EXTINF:") :].rstrip(",")), lines[index + 1]))
    return lines, entries
