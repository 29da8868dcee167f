"""The single H.264 and AAC encoders of a recording (encode once, mux twice)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av

from emulator.media.audio_sources import SAMPLE_RATE
from emulator.media.models import MediaConfig

AAC_FRAME_SAMPLES = 1024
# Up to 720p, one x264 thread per recording: x264's sliced threads cost 10% more CPU
# (360x640, 15 fps: 0.95 s instead of 0.87 s per minute of video), the compositor, the AAC
# encoder and the emulator's other recordings keep the other cores busy anyway. A 60 s
# render on a quiet machine was no faster with them (within the run-to-run noise), but on a
# busy one much less slow (benchmarks/bench_render.py: 1.7-1.8x FFmpeg's time instead of
# 4.5x at load 8-20), so `render_scenario` asks for them (threads=0).
_ONE_THREAD_MAX_PIXELS = 1280 * 720


@dataclass(frozen=True)
class AudioFormat:
    """The audio encoding of an audioProfile (docs/service/api-contract.md#recordingconfig): 48 kHz
    AAC-LC, `channels`, `bit_rate`.

    `coder` is FFmpeg's AAC quantiser search. FFmpeg's native encoder has no CBR mode: it
    spends what the coder finds useful, up to the target. Measured on four mixed tones
    (60 s; `bit_rate` reached / encoder CPU): at 48 kbps mono "fast" gives 48.6 kbps in
    0.21 s and "twoloop" 49.0 kbps in 0.82 s; at 128 kbps mono "fast" only reaches 72 kbps
    (0.93 s) where "twoloop" gives 128 kbps (0.48 s); at 192 kbps stereo "fast" gives 86
    kbps (2.2 s), "twoloop" 186 kbps (1.9 s). So each profile uses the coder that reaches
    its bitrate for less CPU.
    """

    channels: int
    bit_rate: int
    coder: str = "twoloop"

    @property
    def layout(self) -> str:
        return "stereo" if self.channels == 2 else "mono"


_AUDIO_PROFILES = {
    0: AudioFormat(channels=1, bit_rate=48_000, coder="fast"),
    1: AudioFormat(channels=1, bit_rate=128_000),
    2: AudioFormat(channels=2, bit_rate=192_000),
}


def audio_format(profile: int) -> AudioFormat:
    """audioProfile 0/1/2 -> 48 kHz mono 48 kbps / mono 128 kbps / stereo 192 kbps."""
    return _AUDIO_PROFILES.get(profile, _AUDIO_PROFILES[0])


def open_video_encoder(
    config: MediaConfig, keyint: int, threads: int | None = None, *, continuing: bool = False
) -> av.VideoCodecContext:
    """libx264, veryfast, zerolatency, yuv420p, constant bitrate with HRD filler.

    `threads` None (live recordings, many at once): one encoder thread up to 1280x720, x264's
    own (sliced) threading above that. 0: x264's own threading whatever the size (an offline
    render, alone on the machine, as FFmpeg's CLI does by default); n: n threads.

    `tune=zerolatency` (no lookahead, no B-frames) makes x264 return each frame's packet
    immediately, so a slice closes as soon as its last frame is rendered even at fps 1,
    and it is faster than the default tuning; compression efficiency does not matter here.

    No global header: SPS/PPS travel in-band before every IDR, which an MPEG-TS slice needs
    to decode on its own; the MP4 muxer gets its avcC from the first packet (PyAV extracts
    it for global-header formats) and converts the Annex-B packets to length-prefixed ones.
    `nal-hrd=cbr` with maxrate = bitrate makes x264 pad with filler NAL units, so even flat
    synthetic content is recorded at the requested bitrate, as a real recorder's is.

    `continuing`: an encoder for a later GOP of a stream another encoder began (GOP-parallel
    renders, `ChunkedEncoder`). x264 starts its VBV buffer 90% full, so a fresh encoder's
    first GOP comes out 0.1 x bufsize short (1 s of 300 kbps GOPs: 33,768 bytes instead of
    37,519); starting it full gives exactly what one encoder gives from its second GOP on.
    """
    kbps = config.bitrate_kbps
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width = config.width
    encoder.height = config.height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, config.fps)
    encoder.framerate = Fraction(config.fps)
    encoder.bit_rate = kbps * 1000
    encoder.gop_size = keyint
    if threads is not None:
        encoder.thread_count = threads
    elif config.width * config.height <= _ONE_THREAD_MAX_PIXELS:
        encoder.thread_count = 1
    encoder.options = {
        "preset": "veryfast",
        "tune": "zerolatency",
        "nal-hrd": "cbr",
        "maxrate": f"{kbps}k",
        "minrate": f"{kbps}k",
        "bufsize": f"{kbps}k",
        "forced-idr": "1",
    }
    if continuing:
        encoder.options = {**encoder.options, "x264-params": "vbv-init=1.0"}
    encoder.open()
    return encoder


def open_audio_encoder(fmt: AudioFormat) -> av.AudioCodecContext:
    """FFmpeg's native AAC-LC encoder at 48 kHz (frames of 1024 samples), `fmt.coder`."""
    encoder = av.CodecContext.create("aac", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = fmt.layout
    encoder.format = "fltp"
    encoder.bit_rate = fmt.bit_rate
    encoder.time_base = Fraction(1, SAMPLE_RATE)
    encoder.options = {"aac_coder": fmt.coder}
    encoder.open()
    return encoder
