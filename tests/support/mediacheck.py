"""Inspect real media output in tests: stream facts, colours on screen, tones in the audio."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class MediaFacts:
    width: int | None
    height: int | None
    fps: float | None
    duration: float
    video_codec: str | None
    audio_codec: str | None
    sample_rate: int | None
    channels: int | None
    video_frames: int


def probe(path: Path) -> MediaFacts:
    """Decode-free facts plus a counted frame total (what a player would see)."""
    with av.open(str(path)) as container:
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        frames = 0
        first = last = None
        if video is not None:
            for packet in container.demux(video):
                if packet.pts is None:
                    continue
                frames += 1
                ts = float(packet.pts * video.time_base)
                first = ts if first is None else min(first, ts)
                last = ts if last is None else max(last, ts)
        fps = float(video.average_rate) if video is not None and video.average_rate else None
        if first is not None and last is not None and fps:
            duration = last - first + 1 / fps
        else:
            duration = float(container.duration or 0) / av.time_base
        return MediaFacts(
            width=video.codec_context.width if video else None,
            height=video.codec_context.height if video else None,
            fps=fps,
            duration=duration,
            video_codec=video.codec_context.name if video else None,
            audio_codec=audio.codec_context.name if audio else None,
            sample_rate=audio.codec_context.sample_rate if audio else None,
            channels=audio.codec_context.channels if audio else None,
            video_frames=frames,
        )


def frame_at(path: Path, seconds: float) -> np.ndarray:
    """The decoded RGB frame shown at ``seconds`` into the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        chosen = None
        for frame in container.decode(stream):
            chosen = frame
            if frame.pts is not None and float(frame.pts * stream.time_base) >= seconds:
                break
        assert chosen is not None, f"no video frames in {path}"
        return chosen.to_ndarray(format="rgb24")


def color_at(frame: np.ndarray, fx: float, fy: float, box: float = 0.04) -> tuple[int, int, int]:
    """Median RGB of a small box centred at fractions (fx, fy) of the frame."""
    h, w, _ = frame.shape
    x0, x1 = int(w * (fx - box)), int(w * (fx + box))
    y0, y1 = int(h * (fy - box)), int(h * (fy + box))
    patch = frame[max(y0, 0) : y1, max(x0, 0) : x1].reshape(-1, 3)
    r, g, b = np.median(patch, axis=0)
    return int(r), int(g), int(b)


def hex_rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def close_to(actual: tuple[int, int, int], expected: str, tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, hex_rgb(expected), strict=True))


def audio_samples(path: Path) -> tuple[np.ndarray, int]:
    """All audio of a file as mono float samples, and the sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = []
        for frame in container.decode(stream):
            data = frame.to_ndarray().astype(np.float64)
            if data.ndim == 2 and not frame.format.is_planar:
                data = data.reshape(-1, frame.layout.nb_channels).T
            chunks.append(data.mean(axis=0) if data.ndim == 2 else data)
        return np.concatenate(chunks), stream.codec_context.sample_rate


def tone_levels(path: Path, frequencies: list[float]) -> dict[float, float]:
    """Spectral magnitude at each frequency, relative to the strongest peak (1.0)."""
    samples, rate = audio_samples(path)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    peak = spectrum.max() or 1.0
    out = {}
    for f in frequencies:
        band = (freqs > f - 5) & (freqs < f + 5)
        out[f] = float(spectrum[band].max() / peak)
    return out


TS_NAME = re.compile(r"^(?P<sid>[0-9a-f]{32})_(?P<cname>.+)_(?P<utc>\d{17})\.ts$")


def playlist_entries(path: Path) -> tuple[list[tuple[float, str]], str]:
    """(EXTINF seconds, uri) for each slice of an M3U8, and the raw text."""
    text = path.read_text()
    entries = []
    pending: float | None = None
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            pending = float(line[len("#EXTINF:") :].split(",")[0])
        elif line and not line.startswith("#"):
            assert pending is not None, f"slice without EXTINF in {path}"
            entries.append((pending, line))
            pending = None
    return entries, text


__all__ = [
    "MediaFacts",
    "audio_samples",
    "close_to",
    "color_at",
    "frame_at",
    "hex_rgb",
    "playlist_entries",
    "probe",
    "tone_levels",
]
