"""Media for the compositor tests: run a CompositeRecorder over a scripted timeline, and write
source files (solid-colour videos, images, tones, clips)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from emulator.media import CompositeRecorder, LayoutSpec, MediaConfig, OutputFile, UserSnapshot

SID = "0123456789abcdef0123456789abcdef"
START_MS = 1_700_000_000_000

Step = tuple[float, Sequence[UserSnapshot]]


@dataclass
class Recording:
    files: list[OutputFile]
    callbacks: list[OutputFile] = field(default_factory=list)
    recorder: CompositeRecorder | None = None

    def of_kind(self, kind: str) -> list[OutputFile]:
        return [f for f in self.files if f.kind == kind]

    @property
    def playlist(self) -> OutputFile:
        (playlist,) = self.of_kind("m3u8")
        return playlist

    @property
    def mp4(self) -> OutputFile:
        return self.of_kind("mp4")[0]


Record = Callable[..., Recording]


def record_timeline(
    out_dir: Path,
    config: MediaConfig,
    steps: Sequence[Step],
    duration: float,
    *,
    cname: str = "room",
    layouts: dict[float, LayoutSpec] | None = None,
    on_file: Callable[[OutputFile], None] | None = None,
) -> Recording:
    """Record ``steps`` ([(t, users), ...]) for ``duration`` seconds into ``out_dir``.

    Each step's users hold from its t until the next step; the recording ends at `duration`
    (exactly duration * fps frames). Layout images (paths or URLs) are loaded before the
    first frame. `on_file` replaces the default callback, which collects the files in
    `Recording.callbacks`.
    """
    callbacks: list[OutputFile] = []
    recorder = CompositeRecorder(
        config,
        sid=SID,
        cname=cname,
        out_dir=out_dir,
        start_epoch_ms=START_MS,
        on_file=callbacks.append if on_file is None else on_file,
    )
    recorder.wait_for_images(timeout=10)  # URL images: make the timeline deterministic
    changes = sorted({t for t, _ in steps} | set(layouts or {}) | {duration})
    users: Sequence[UserSnapshot] = []
    for t in changes:
        if t > 0:
            recorder.advance_to(t - 1e-9, users)
        users = next((u for at, u in reversed(steps) if at <= t), users)
        if layouts and t in layouts:
            recorder.set_layout(layouts[t])
    files = recorder.finish()
    return Recording(files, callbacks, recorder)


def write_color_video(path: Path, rgb: tuple[int, int, int], size: tuple[int, int]) -> Path:
    """A 1 s, 10 fps H.264 MP4 of one solid colour."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[...] = rgb
        for index in range(10):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_image(path: Path, rgb: tuple[int, int, int], size: tuple[int, int]) -> Path:
    """A PNG or JPEG (by suffix) of one solid colour."""
    width, height = size
    codec = "png" if path.suffix == ".png" else "mjpeg"
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[...] = rgb
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec, rate=1)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
        container.mux(stream.encode(frame.reformat(format=stream.pix_fmt)))
        container.mux(stream.encode(None))
    return path


def write_tone_wav(path: Path, frequency: float, seconds: float = 0.5) -> Path:
    """A 44.1 kHz mono WAV tone (the recorder must resample it to 48 kHz)."""
    rate = 44_100
    samples = (0.3 * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)).astype(
        np.float32
    )
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_split_image(
    path: Path, left: tuple[int, int, int], right: tuple[int, int, int], size: tuple[int, int]
) -> Path:
    """A PNG whose left half is `left` and right half `right` (to tell crop from fit)."""
    width, height = size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 2] = left
    image[:, width // 2 :] = right
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_av_clip(
    path: Path,
    rgb: tuple[int, int, int],
    frequency: float,
    codecs: tuple[str, str],
    size: tuple[int, int] = (96, 64),
    seconds: float = 1.0,
    audio_rate: int = 44_100,
) -> Path:
    """A clip with one solid-colour video stream and one stereo tone at `audio_rate`, in
    the container the suffix names, encoded with `codecs` (video codec, audio codec)."""
    width, height = size
    video_codec, audio_codec = codecs
    rate, fps = audio_rate, 10
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream(audio_codec, rate=rate, layout="stereo")
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[...] = rgb
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        wave = 0.3 * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate)
        samples = np.tile(wave.astype(np.float32), (2, 1))
        resampler = av.AudioResampler(format=audio.format.name, layout="stereo", rate=rate)
        source = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        source.sample_rate = rate
        source.pts = 0
        for chunk in resampler.resample(source):
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
    return path


def write_grey_sequence(path: Path, levels: Sequence[int], fps: int, size: tuple[int, int]) -> Path:
    """An H.264 MP4 whose frame i is a flat grey of `levels[i]` (frame-exact timing checks)."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qp": "0"}  # lossless: each level decodes back exactly
        for index, level in enumerate(levels):
            image = np.full((height, width, 3), level, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
