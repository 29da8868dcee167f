"""Muxing: the encoded packets go, unchanged, into the current TS slice and the current MP4.

Slices are fixed spans of media time: slice k covers [k * L, (k + 1) * L) where L is a
whole number of video frames, and the recorder forces an IDR frame at every k * L, so a
packet's slice follows from its pts alone. Because the video encoder delays its output
(lookahead, B-frames) while audio is immediate, slice k + 1 may already receive audio while
slice k still waits for video: a slice is closed once every stream has moved past it.
MP4 files are runs of whole slices, rolling over at a slice boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from contract.naming import mp4_name, playlist_name, slice_name
from emulator.media.audio_sources import SAMPLE_RATE
from emulator.media.models import OutputFile
from emulator.media.playlist import PlaylistEntry, render_playlist, write_atomically

VIDEO = "video"
AUDIO = "audio"

# MPEG-TS timestamps are shifted by a whole number of seconds so the first packets (B-frame
# dts, AAC priming) are never negative; a per-slice shift by the muxer would break the
# continuity of timestamps across slices that HLS relies on.
_TS_OFFSET = Fraction(10)

FileCallback = Callable[[OutputFile], None]


@dataclass(frozen=True)
class StreamParams:
    """What the containers need to declare their streams."""

    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: int
    audio_layout: str
    audio_bit_rate: int


@dataclass(frozen=True)
class Timeline:
    """Slice arithmetic in exact fractions of a second."""

    slice_len: Fraction

    def slice_of(self, pts: int, time_base: Fraction) -> int:
        """The slice a packet with this pts belongs to (priming packets go to slice 0)."""
        # Integer arithmetic: this runs for every packet.
        numerator = pts * time_base.numerator * self.slice_len.denominator
        denominator = time_base.denominator * self.slice_len.numerator
        return max(0, numerator // denominator)

    def start_of(self, index: int) -> Fraction:
        return index * self.slice_len


@dataclass
class Chunk:
    """One encoded packet with its original timing (muxing rescales packets in place)."""

    packet: av.Packet
    kind: str
    pts: int
    dts: int
    duration: int
    time_base: Fraction
    slice_index: int


@dataclass(frozen=True)
class Naming:
    """Identity shared by all files of one recording."""

    out_dir: Path
    sid: str
    cname: str
    start_epoch_ms: int
    track_type: str
    # "bak<n>_" for a recorder started by an HA failover (docs/service/files.md#failover)
    prefix: str = ""

    def epoch_ms(self, media_time: Fraction) -> int:
        return self.start_epoch_ms + round(media_time * 1000)

    def output(self, name: str, kind: str, start: Fraction) -> OutputFile:
        return OutputFile(
            name=name,
            path=self.out_dir / name,
            kind=kind,
            track_type=self.track_type,
            slice_start_ms=self.epoch_ms(start),
        )


class MediaFile:
    """One open output container (a TS slice or an MP4) fed with pre-encoded packets."""

    def __init__(self, path: Path, fmt: str, params: StreamParams, offset: Fraction) -> None:
        self.path = path
        self.bytes_written = 0
        self._offset = offset
        # `offset` in each packet time base, keyed by (numerator, denominator): hashing a
        # Fraction for every packet cost more than the muxing it keys (cProfile, 60 s render)
        self._shifts: dict[tuple[int, int], int] = {}
        self._container = av.open(str(path), "w", format=fmt)
        self._streams: dict[str, av.stream.Stream] = {}
        if params.has_video:
            self._streams[VIDEO] = self._container.add_mux_stream(
                "h264", rate=params.fps, width=params.width, height=params.height
            )
        if params.has_audio:
            # A stream with its own (never used) AAC context: opening it fills in the
            # AudioSpecificConfig both muxers need, identical to the real encoder's.
            audio = self._container.add_stream("aac", rate=SAMPLE_RATE, layout=params.audio_layout)
            audio.bit_rate = params.audio_bit_rate
            self._streams[AUDIO] = audio

    def write(self, chunk: Chunk) -> None:
        time_base = chunk.time_base
        key = (time_base.numerator, time_base.denominator)
        shift = self._shifts.get(key)
        if shift is None:
            shift = self._shifts[key] = round(self._offset / time_base)
        packet = chunk.packet
        packet.time_base = time_base
        packet.pts = chunk.pts + shift
        packet.dts = chunk.dts + shift
        packet.duration = chunk.duration
        packet.stream = self._streams[chunk.kind]
        self._container.mux_one(packet)
        self.bytes_written += packet.size

    def close(self) -> None:
        self._container.close()


class HlsWriter:
    """TS slices named by their start time, and the M3U8 rewritten after each slice."""

    def __init__(
        self, naming: Naming, params: StreamParams, timeline: Timeline, emit: FileCallback
    ) -> None:
        self._naming = naming
        self._params = params
        self._timeline = timeline
        self._emit = emit
        self._open: dict[int, tuple[str, MediaFile]] = {}
        self._entries: list[PlaylistEntry] = []
        self.completed: list[OutputFile] = []
        self.playlist: OutputFile | None = None

    def write(self, chunk: Chunk) -> None:
        self._slice(chunk.slice_index).write(chunk)

    def close_before(self, slice_index: int) -> None:
        """Close every open slice before `slice_index` (all streams have moved past it)."""
        done = sorted(index for index in self._open if index < slice_index)
        for index in done:
            self._close_slice(index, float(self._timeline.slice_len))
        if done:
            self._write_playlist(ended=False)

    def finish(self, media_end: Fraction) -> None:
        """Close the remaining slices (the last one ends at `media_end`), end the playlist."""
        for index in sorted(self._open):
            end = min(media_end, self._timeline.start_of(index + 1))
            self._close_slice(index, float(end - self._timeline.start_of(index)))
        if self._entries:
            self._write_playlist(ended=True)

    def _slice(self, index: int) -> MediaFile:
        if index not in self._open:
            start = self._timeline.start_of(index)
            naming = self._naming
            name = slice_name(naming.sid, naming.cname, naming.epoch_ms(start), naming.prefix)
            path = self._naming.out_dir / name
            self._open[index] = (name, MediaFile(path, "mpegts", self._params, _TS_OFFSET))
        return self._open[index][1]

    def _close_slice(self, index: int, seconds: float) -> None:
        name, media = self._open.pop(index)
        media.close()
        self._entries.append(PlaylistEntry(name, seconds))
        output = self._naming.output(name, "ts", self._timeline.start_of(index))
        self.completed.append(output)
        self._emit(output)

    def _write_playlist(self, *, ended: bool) -> None:
        name = playlist_name(self._naming.sid, self._naming.cname, self._naming.prefix)
        tracks = [
            kind
            for kind, on in (("VIDEO", self._params.has_video), ("AUDIO", self._params.has_audio))
            if on
        ]
        text = render_playlist(
            self._entries,
            target_seconds=float(self._timeline.slice_len),
            track_types=tracks,
            start_epoch_ms=self._naming.start_epoch_ms,
            ended=ended,
        )
        write_atomically(self._naming.out_dir / name, text)
        self.playlist = self._naming.output(name, "m3u8", Fraction(0))
        self._emit(self.playlist)


@dataclass
class _Mp4:
    index: int
    first_slice: int
    name: str
    media: MediaFile


class Mp4Writer:
    """`<sid>_<cname>_<n>.mp4` files, each starting at a slice boundary (an IDR frame)."""

    def __init__(
        self,
        naming: Naming,
        params: StreamParams,
        timeline: Timeline,
        limits: tuple[float, int],
        emit: FileCallback,
    ) -> None:
        """`limits` is (max seconds, max bytes) of one file, checked at slice boundaries."""
        self._naming = naming
        self._params = params
        self._timeline = timeline
        self._max_seconds = Fraction(limits[0])
        self._max_bytes = limits[1]
        self._emit = emit
        self._files: list[_Mp4] = []  # open files, oldest first
        self._slice_to_file: dict[int, _Mp4] = {}
        self._next_index = 0
        self.completed: list[OutputFile] = []

    def write(self, chunk: Chunk) -> None:
        self._file_for(chunk.slice_index).media.write(chunk)

    def close_before(self, slice_index: int) -> None:
        """Close files all of whose slices are before `slice_index`."""
        while len(self._files) > 1 and self._files[1].first_slice <= slice_index:
            self._close(self._files.pop(0))
        for index in [i for i in self._slice_to_file if i < slice_index - 1]:
            del self._slice_to_file[index]

    def finish(self, media_end: Fraction) -> None:
        while self._files:
            self._close(self._files.pop(0))

    def _file_for(self, slice_index: int) -> _Mp4:
        known = self._slice_to_file.get(slice_index)
        if known is not None:
            return known
        current = self._files[-1] if self._files else None
        if current is None or self._should_roll(current, slice_index):
            current = self._open(slice_index)
        self._slice_to_file[slice_index] = current
        return current

    def _should_roll(self, current: _Mp4, slice_index: int) -> bool:
        span = self._timeline.start_of(slice_index) - self._timeline.start_of(current.first_slice)
        return span >= self._max_seconds or current.media.bytes_written >= self._max_bytes

    def _open(self, slice_index: int) -> _Mp4:
        name = mp4_name(self._naming.sid, self._naming.cname, self._next_index, self._naming.prefix)
        self._next_index += 1
        # Each file's timestamps start at 0, except the first keeps the encoder's own
        # timestamps (also 0-based) so the AAC priming stays in place.
        offset = -self._timeline.start_of(slice_index)
        media = MediaFile(self._naming.out_dir / name, "mp4", self._params, offset)
        mp4 = _Mp4(self._next_index - 1, slice_index, name, media)
        self._files.append(mp4)
        return mp4

    def _close(self, mp4: _Mp4) -> None:
        mp4.media.close()
        output = self._naming.output(mp4.name, "mp4", self._timeline.start_of(mp4.first_slice))
        self.completed.append(output)
        self._emit(output)
