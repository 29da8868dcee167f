"""Joining a recording's parts into one MP4 by remuxing (PyAV, no re-encode of what was recorded).

A *part* is one media file the service wrote (an MP4, or a TS slice of a playlist) with the wall
clock time of its media time 0. The merged file's timeline is the wall clock: part ``i`` starts at
``part.start - parts[0].start`` seconds, so a gap where the service recorded nothing (an HA
failover) stays a gap of the same length:

- video: the last frame before the gap is held by its timestamps (the next frame's decode time
  is after the gap, so an MP4 sample lasts the whole gap); no frame is made up;
- audio: the gap is filled with silent AAC frames. They are the only thing encoded: silence at the
  recording's own sample rate and channel layout, so the stream's decoder configuration stays
  valid. Without them the audio track would jump, and players drift out of sync after it.

Timestamps stay monotonic per stream: a part whose wall-clock start falls before the end of the
previous part's video (millisecond rounding of start times) is moved to that end, and an audio
packet that would overlap the previous one is dropped (21 ms, never a video frame).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from worker.errors import MergeError

log = logging.getLogger("cloudrec.merge")

VIDEO = "video"
AUDIO = "audio"
AAC_FRAME = 1024  # samples per AAC-LC frame
# A gap shorter than this is no gap: start times are known to the millisecond only.
GAP_TOLERANCE = Fraction(1, 100)


@dataclass(frozen=True)
class Part:
    """One file to join: where it is, its wall-clock start (epoch seconds, exact), its name."""

    path: Path
    start: Fraction | None  # None: right after the previous part (the same segment)
    name: str


@dataclass(frozen=True)
class Merged:
    """The merged file as verified: its duration (seconds), size (bytes), and the gaps filled
    ([start, end) in seconds of the merged timeline)."""

    duration: float
    size: int
    gaps: tuple[tuple[float, float], ...]


@dataclass
class _Track:
    """One output stream and where it has got to, in its own time base."""

    stream: Any
    time_base: Fraction
    next_dts: int | None = None  # the end of the last packet written (dts + duration)

    def end_seconds(self) -> Fraction | None:
        return None if self.next_dts is None else self.next_dts * self.time_base


def merge_parts(parts: Sequence[Part], out: Path) -> tuple[Fraction, list[tuple[float, float]]]:
    """Write ``parts`` (in recording order; the first has a start) to ``out`` as one MP4.
    Returns the expected duration (the span from the first part's start to the last part's end,
    in seconds) and the gaps. Raises :class:`MergeError` when the parts cannot be joined without
    re-encoding."""
    if not parts or parts[0].start is None:
        raise MergeError("nothing to merge: the job has no media files in its storage")
    ordered = list(parts)
    origin = parts[0].start
    gaps: list[tuple[float, float]] = []
    try:
        with av.open(str(out), "w", format="mp4") as output:
            tracks, templates = _open_tracks(output, ordered[0])
            silence = _SilentAac(templates[AUDIO]) if AUDIO in templates else None
            span = Fraction(0)
            for part in ordered:
                wall = None if part.start is None else part.start - origin
                offset = _placement(wall, tracks)
                gap = _fill_gap(tracks, silence, offset, output)
                if gap is not None:
                    gaps.append(gap)
                span = max(span, _copy_part(part, offset, tracks, templates))
    except (av.FFmpegError, OSError) as exc:
        raise MergeError(f"joining the parts failed: {exc}") from exc
    return span, gaps


def _open_tracks(output: Any, first: Part) -> tuple[dict[str, _Track], dict[str, Any]]:
    """The output's streams, copied from the first part's (codec parameters, no encoder)."""
    tracks: dict[str, _Track] = {}
    templates: dict[str, Any] = {}
    with av.open(str(first.path)) as source:
        for kind in (VIDEO, AUDIO):
            streams = [s for s in source.streams if s.type == kind]
            if streams:
                template = streams[0]
                templates[kind] = _codec_facts(template)
                stream = output.add_stream_from_template(template)
                tracks[kind] = _Track(stream, Fraction(template.time_base))
    if not tracks:
        raise MergeError(f"{first.name}: neither audio nor video")
    return tracks, templates


def _codec_facts(stream: Any) -> dict[str, Any]:
    """What must be the same in every part to join them without re-encoding."""
    ctx = stream.codec_context
    if stream.type == VIDEO:
        return {"codec": ctx.name, "width": ctx.width, "height": ctx.height}
    return {
        "codec": ctx.name,
        "sample_rate": ctx.sample_rate,
        "channels": ctx.channels,
        "layout": ctx.layout.name,
        # No decoder configuration: the frames carry ADTS headers (TS slices); the MP4 muxer
        # converts them, so the silent frames must carry one as well.
        "adts": not ctx.extradata,
    }


def _placement(wall: Fraction | None, tracks: dict[str, _Track]) -> Fraction:
    """Where a part starts in the merged timeline: its wall-clock offset (None: where the
    previous part ended), but never before the end of the reference track (video if any)
    written so far."""
    reference = tracks.get(VIDEO) or tracks[AUDIO]
    end = reference.end_seconds() or Fraction(0)
    return end if wall is None else max(wall, end)


def _fill_gap(
    tracks: dict[str, _Track], silence: _SilentAac | None, offset: Fraction, output: Any
) -> tuple[float, float] | None:
    """Silent audio from the end of the audio written so far up to ``offset``; the video needs
    nothing (its last frame is held). Returns the gap, if there is one."""
    reference = tracks.get(VIDEO) or tracks[AUDIO]
    end = reference.end_seconds()
    if end is None or offset - end <= GAP_TOLERANCE:
        return None
    audio = tracks.get(AUDIO)
    if audio is not None and silence is not None:
        silence.fill(audio, offset, output)
    return float(end), float(offset)


def _copy_part(
    part: Part, offset: Fraction, tracks: dict[str, _Track], templates: dict[str, Any]
) -> Fraction:
    """Remux every packet of ``part`` at ``offset``; returns where the part ends."""
    end = offset
    zero = _media_zero(part, list(tracks))
    with av.open(str(part.path)) as source:
        inputs = [_input_stream(source, kind, part, templates) for kind in tracks]
        for packet in source.demux(inputs):
            if packet.dts is None or packet.size == 0:
                continue  # the demuxer's flush packets
            track = tracks[packet.stream.type]
            shift = round((offset - zero) / track.time_base)
            packet_end = _write(packet, track, shift)
            if packet_end is not None:
                end = max(end, packet_end)
    return end


def _input_stream(source: Any, kind: str, part: Part, templates: dict[str, Any]) -> Any:
    streams = [s for s in source.streams if s.type == kind]
    if not streams:
        raise MergeError(f"{part.name}: has no {kind} stream, the first part has one")
    facts = _codec_facts(streams[0])
    if facts != templates[kind]:
        raise MergeError(
            f"{part.name}: {kind} {facts} differs from the first part's {templates[kind]}: "
            "the parts cannot be joined without re-encoding"
        )
    return streams[0]


def _media_zero(part: Part, kinds: list[str]) -> Fraction:
    """The media time (seconds) of the part's wall-clock start: its first video frame (a part
    starts on an IDR frame, at the start of a slice), else its first audio frame. (A pass of
    its own over the first packets: seeking back is not exact in every container.)"""
    kind = VIDEO if VIDEO in kinds else AUDIO
    with av.open(str(part.path)) as source:
        stream = next(s for s in source.streams if s.type == kind)
        for packet in source.demux(stream):
            if packet.pts is not None:
                zero = Fraction(packet.pts) * Fraction(stream.time_base)
                # An MP4's AAC priming sits before 0 (its edit list): 0 is the start there.
                return max(zero, Fraction(0)) if kind == AUDIO else zero
    raise MergeError(f"{part.name}: no {kind} packet")


def _write(packet: Any, track: _Track, shift: int) -> Fraction | None:
    """Mux one packet ``shift`` (in its track's time base) later; returns its end in seconds,
    or None if it was dropped (an audio packet overlapping the previous one)."""
    tb = Fraction(packet.time_base)
    if tb != track.time_base:
        raise MergeError(f"time base {tb} differs from the first part's {track.time_base}")
    dts = int(packet.dts) + shift
    pts = int(packet.pts if packet.pts is not None else packet.dts) + shift
    duration = int(packet.duration or 0)
    if track.next_dts is not None and dts < track.next_dts:
        if track.stream.type == AUDIO:
            return None
        raise MergeError("video timestamps of consecutive parts overlap")
    packet.pts, packet.dts = pts, dts
    packet.stream = track.stream
    packet.time_base = track.time_base
    track.stream.container.mux_one(packet)
    track.next_dts = dts + max(duration, 1)
    return (pts + duration) * tb


class _SilentAac:
    """Silent AAC-LC frames matching the recording's audio (rate, layout), encoded once."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self._rate = int(facts["sample_rate"])
        self._payload = _encode_silence(self._rate, str(facts["layout"]))
        if facts["adts"]:
            self._payload = adts_frame(self._payload, self._rate, int(facts["channels"]))

    def fill(self, track: _Track, until: Fraction, output: Any) -> None:
        """Append silent frames from the track's end while a whole frame fits before
        ``until``."""
        if track.next_dts is None:
            return
        frame = round(Fraction(AAC_FRAME, self._rate) / track.time_base)
        limit = round(until / track.time_base)
        while track.next_dts + frame <= limit:
            packet = av.Packet(self._payload)
            packet.pts = packet.dts = track.next_dts
            packet.duration = frame
            packet.time_base = track.time_base
            packet.stream = track.stream
            output.mux_one(packet)
            track.next_dts += frame


_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def adts_frame(payload: bytes, rate: int, channels: int) -> bytes:
    """``payload`` (one raw AAC-LC frame) behind a 7-byte ADTS header (ISO 14496-3 1.A.2)."""
    length = len(payload) + 7
    index = _ADTS_RATES.index(rate)
    header = bytes(
        [
            0xFF,
            0xF1,  # MPEG-4, layer 0, no CRC
            (1 << 6) | (index << 2) | (channels >> 2),  # profile LC (object type 2, minus 1)
            ((channels & 3) << 6) | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 7) << 5) | 0x1F,  # buffer fullness 0x7FF: variable rate
            0xFC,
        ]
    )
    return header + payload


def _encode_silence(rate: int, layout: str) -> bytes:
    """One AAC frame of digital silence (taken after the encoder's priming frame)."""
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate = rate
    encoder.layout = layout
    encoder.format = "fltp"
    encoder.time_base = Fraction(1, rate)
    encoder.open()
    channels = 2 if layout == "stereo" else 1
    packets: list[bytes] = []
    for index in range(4):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((channels, AAC_FRAME), dtype=np.float32), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        frame.pts = index * AAC_FRAME
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    if len(packets) < 2:
        raise MergeError("the AAC encoder gave no silent frame")
    return packets[1]


# -- verification ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamCheck:
    kind: str
    first: float
    end: float
    packets: int


def verify(path: Path, expected: Fraction, kinds: Sequence[str]) -> Merged:
    """Check the merged file: every expected stream present, timestamps strictly increasing,
    duration within a video frame (or an AAC frame) of ``expected``, and the first and last
    frames of each stream decode. Raises :class:`MergeError` naming what is wrong."""
    try:
        checks, frame_seconds = _scan(path)
        for kind in kinds:
            if kind not in checks:
                raise MergeError(f"merged file: no {kind} stream")
        duration = max(c.end for c in checks.values()) - min(c.first for c in checks.values())
        tolerance = max(frame_seconds, AAC_FRAME / 48_000) + 0.002
        if abs(duration - float(expected)) > tolerance:
            raise MergeError(
                f"merged file: lasts {duration:.3f} s, the parts span {float(expected):.3f} s"
            )
        _decode_ends(path, checks)
    except av.FFmpegError as exc:
        raise MergeError(f"merged file does not decode: {exc}") from exc
    return Merged(duration=round(duration, 3), size=path.stat().st_size, gaps=())


def _scan(path: Path) -> tuple[dict[str, StreamCheck], float]:
    """Per stream, in one pass: first pts, end, packet count; checks dts strictly increase."""
    frame_seconds = 0.0
    with av.open(str(path)) as source:
        streams = [s for s in source.streams if s.type in (VIDEO, AUDIO)]
        for stream in streams:
            if stream.type == VIDEO and stream.average_rate:
                frame_seconds = float(1 / stream.average_rate)
        seen = {s.type: _StreamScan(s.type, Fraction(s.time_base)) for s in streams}
        for packet in source.demux(streams):
            if packet.dts is not None and packet.size:
                seen[packet.stream.type].add(packet)
    return {kind: scan.result() for kind, scan in seen.items()}, frame_seconds


@dataclass
class _StreamScan:
    kind: str
    time_base: Fraction
    first: int | None = None
    end: int = 0
    last_dts: int | None = None
    count: int = 0

    def add(self, packet: Any) -> None:
        if self.last_dts is not None and packet.dts <= self.last_dts:
            raise MergeError(f"merged file: {self.kind} timestamps are not monotonic")
        self.last_dts = int(packet.dts)
        pts = int(packet.pts if packet.pts is not None else packet.dts)
        self.first = pts if self.first is None else min(self.first, pts)
        self.end = max(self.end, pts + int(packet.duration or 0))
        self.count += 1

    def result(self) -> StreamCheck:
        if self.first is None:
            raise MergeError(f"merged file: the {self.kind} stream is empty")
        tb = self.time_base
        return StreamCheck(
            self.kind, float(max(self.first, 0) * tb), float(self.end * tb), self.count
        )


def _decode_ends(path: Path, checks: dict[str, StreamCheck]) -> None:
    """Decode the start and the last second of each stream (a full decode of hours of video
    would cost minutes of CPU; the packets were all read above)."""
    with av.open(str(path)) as source:
        for kind, check in checks.items():
            stream = next(s for s in source.streams if s.type == kind)
            for at in (0.0, max(0.0, check.end - 1.0)):
                source.seek(round(at / Fraction(stream.time_base)), stream=stream, backward=True)
                if next(iter(source.decode(stream)), None) is None:
                    raise MergeError(f"merged file: no {kind} frame decodes at {at:.1f} s")
