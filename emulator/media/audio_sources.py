"""What a simulated user's microphone sends: a sine tone or a looping media file, at 48 kHz.

Readers return float32 blocks shaped (channels, count) in [-1, 1] (a tone returns one row
that broadcasts over the channels). Blocks may be read-only views: callers must not modify
them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt

from emulator.media.access import open_media
from emulator.media.models import AudioSource

log = logging.getLogger(__name__)

SAMPLE_RATE = 48_000
TONE_AMPLITUDE = 0.25  # four users' tones sum to full scale without clipping

Samples = npt.NDArray[np.float32]


class AudioReader(Protocol):
    def read(self, start_sample: int, count: int) -> Samples:
        """`count` samples starting at recording sample `start_sample`."""

    def close(self) -> None:
        """Release decoders and files."""


def make_reader(source: AudioSource, channels: int) -> AudioReader:
    """The reader for a source: a tone if `tone` is set, else a file (silence if neither)."""
    if source.tone is not None:
        return Tone(source.tone)
    if source.file is not None:
        return FileAudio(source.file, channels)
    return Tone(0.0)


class Tone:
    """A continuous sine wave whose phase is a function of the recording's sample clock.

    Being stateless in time, it is phase-continuous across calls, mutes and block sizes.
    The wave of a tone with a whole number of millihertz repeats every `period` samples, so
    one period (plus a block) is tabulated once and blocks are read-only views into it.
    """

    def __init__(self, frequency: float) -> None:
        self._frequency = frequency
        self._cycles_per_sample = frequency / SAMPLE_RATE
        self._period, self._table = _tabulate(frequency)

    def read(self, start_sample: int, count: int) -> Samples:
        if self._frequency <= 0:
            return np.zeros((1, count), dtype=np.float32)
        if self._table is not None and count <= _TABLE_BLOCK:
            offset = start_sample % self._period
            return self._table[offset : offset + count].reshape(1, count)
        return _sine(start_sample, count, self._cycles_per_sample).reshape(1, count)

    def close(self) -> None:
        pass


_TABLE_BLOCK = 4096  # longest block served from the table
_MAX_PERIOD = 4 * SAMPLE_RATE


def _tabulate(frequency: float) -> tuple[int, Samples | None]:
    """(period in samples, table of period + block samples) or (0, None) if impractical."""
    millihertz = round(frequency * 1000)
    if frequency <= 0 or abs(millihertz - frequency * 1000) > 1e-6:
        return 0, None
    period = SAMPLE_RATE * 1000 // math.gcd(millihertz, SAMPLE_RATE * 1000)
    if period > _MAX_PERIOD:
        return 0, None
    table = _sine(0, period + _TABLE_BLOCK, frequency / SAMPLE_RATE)
    table.flags.writeable = False
    return period, table


def _sine(start_sample: int, count: int, cycles_per_sample: float) -> Samples:
    start_phase = math.fmod(start_sample * cycles_per_sample, 1.0)
    phase = np.arange(count, dtype=np.float64)
    phase *= cycles_per_sample
    phase += start_phase
    phase *= 2 * math.pi
    wave = np.sin(phase)
    wave *= TONE_AMPLITUDE
    return wave.astype(np.float32)


class FileAudio:
    """A media file's audio resampled to 48 kHz, looping; sequential (ignores start_sample)."""

    def __init__(self, path: str, channels: int) -> None:
        self._path = path
        self._channels = channels
        self._chunks: Iterator[Samples] | None = None
        self._buffer: Samples = np.zeros((channels, 0), dtype=np.float32)
        self._broken = False

    def read(self, start_sample: int, count: int) -> Samples:
        if self._chunks is None:
            self._chunks = self._looping_chunks()
        parts = [self._buffer]
        have = self._buffer.shape[1]
        while have < count and not self._broken:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            parts.append(chunk)
            have += chunk.shape[1]
        if have < count:
            parts.append(np.zeros((self._channels, count - have), dtype=np.float32))
        joined = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        self._buffer = joined[:, count:]
        return joined[:, :count]

    def close(self) -> None:
        self._chunks = None

    def _looping_chunks(self) -> Iterator[Samples]:
        while True:
            count = 0
            try:
                for chunk in self._decode_once():
                    count += chunk.shape[1]
                    yield chunk
            except (av.FFmpegError, OSError, IndexError) as exc:
                log.warning("audio source %s unreadable: %s", self._path, exc)
            if count == 0:
                self._broken = True
                return

    def _decode_once(self) -> Iterator[Samples]:
        layout = "stereo" if self._channels == 2 else "mono"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
        with open_media(self._path) as container:  # allowed demuxers only
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().astype(np.float32, copy=False)
