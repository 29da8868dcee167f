"""Tier 1/2: joining parts (worker.merge_media) and finding them (worker.merge), on real files the
emulator's compositor writes: MP4s that roll over, TS slices of an HLS-only recording, a bak0_
segment after a gap; and the storage back-ends (local directory, and S3 on a real S3-protocol
server: moto in server mode)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import boto3  # type: ignore[import-untyped]
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from config.settings import Settings, StorageProfile
from emulator.media import CompositeRecorder
from emulator.media.models import AudioSource, MediaConfig, UserSnapshot, VideoSource
from tests.support.mediadecode import close_to, decode_audio, decode_video, tone_levels
from worker.errors import MergeError
from worker.merge import merge_job, segment_start, segments_of
from worker.merge_media import Part, adts_frame, merge_parts, verify
from worker.merge_storage import LocalStorage, S3Storage, storage_for
from worker.store import JobRecord

T0 = 1_700_000_000_000  # the recording's first media, epoch ms
GAP = 1.5  # seconds between the original segment's end and bak0_'s start
FPS = 15


def _record(
    out: Path,
    files: tuple[str, ...],
    *,
    start_ms: int,
    seconds: float,
    prefix: str = "",
    color: str = "#00FF00",
    tone: float = 440.0,
    width: int = 160,
    streams: int = 2,
) -> None:
    config = MediaConfig(
        stream_types=streams,
        width=width,
        height=120,
        fps=FPS,
        bitrate_kbps=200,
        av_file_types=files,
        slice_seconds=1.0,
        mp4_max_seconds=2.0,
    )
    user = UserSnapshot("1", VideoSource(color=color), AudioSource(tone=tone))
    recorder = CompositeRecorder(
        config, sid="sid", cname="room", out_dir=out, start_epoch_ms=start_ms, name_prefix=prefix
    )
    recorder.advance_to(seconds, [user])
    recorder.finish()


def _recording(out: Path, files: tuple[str, ...]) -> float:
    """3 s green/440 Hz, a gap, 2 s red/880 Hz as bak0_; returns where the gap starts."""
    _record(out, files, start_ms=T0, seconds=3.0)
    # 46 frames (0 .. 3.0 s inclusive) end at 3 + 1/15 s; bak0_ resumes GAP later.
    end = 3.0 + 1 / FPS
    resume_ms = T0 + round((end + GAP) * 1000)
    _record(out, files, start_ms=resume_ms, seconds=2.0, prefix="bak0_", color="#FF0000", tone=880)
    return end


def _parts(folder: Path, work: Path) -> list[Part]:
    from worker.merge import _fetch_parts

    storage = LocalStorage(folder)
    segments = segments_of(storage.names(""), "sid", "room")
    work.mkdir()
    return _fetch_parts(storage, "", segments, work)


@pytest.mark.parametrize("files", [("hls", "mp4"), ("hls",)], ids=["mp4-parts", "ts-parts"])
def test_parts_join_on_the_wall_clock_with_a_held_picture_and_silence(tmp_path, files):
    gap_from = _recording(tmp_path / "rec", files)
    parts = _parts(tmp_path / "rec", tmp_path / "work")
    if "mp4" in files:  # rolled over: 2 MP4s per segment
        assert [p.name for p in parts] == [
            "sid_room_0.mp4",
            "sid_room_1.mp4",
            "bak0_sid_room_0.mp4",
            "bak0_sid_room_1.mp4",
        ]
    else:  # one part per TS slice
        assert len(parts) == 7 and all(p.name.endswith(".ts") for p in parts)
    assert [p.start is not None for p in parts].count(True) == 2  # one start per segment

    out = tmp_path / "merged.mp4"
    span, gaps = merge_parts(parts, out)
    gap_to = gap_from + GAP
    assert abs(float(span) - (gap_to + 2.0 + 1 / FPS)) < 1 / FPS
    [(a, b)] = gaps
    assert abs(a - gap_from) < 0.002 and abs(b - gap_to) < 0.002
    result = verify(out, span, ["audio", "video"])
    assert result.size == out.stat().st_size and abs(result.duration - float(span)) < 1 / FPS

    video = decode_video(out)
    assert not [t for t in video.times if a + 0.01 < t < b - 0.01]  # no frame made up
    assert close_to(tuple(video.frame_at(b - 0.1)[60, 80]), (0, 255, 0))  # held green
    assert close_to(tuple(video.frame_at(b + 0.1)[60, 80]), (255, 0, 0))
    audio = decode_audio(out)
    rate = audio.sample_rate
    gap = audio.samples[:, int((a + 0.05) * rate) : int((b - 0.05) * rate)]
    assert float(np.abs(gap).max()) < 1e-3
    before = tone_levels(audio.samples[:, : int((a - 0.1) * rate)], rate, [440.0, 880.0])
    after = tone_levels(audio.samples[:, int((b + 0.1) * rate) :], rate, [440.0, 880.0])
    assert before[440.0] > 0.9 > 0.1 > before[880.0], before
    assert after[880.0] > 0.9 > 0.1 > after[440.0], after


def test_audio_only_parts_join_with_silence_between(tmp_path):
    folder = tmp_path / "rec"
    _record(folder, ("hls", "mp4"), start_ms=T0, seconds=3.0, streams=0)
    _record(folder, ("hls", "mp4"), start_ms=T0 + 5000, seconds=2.0, prefix="bak0_", streams=0)
    out = tmp_path / "merged.mp4"
    span, gaps = merge_parts(_parts(folder, tmp_path / "work"), out)
    [(a, b)] = gaps
    assert abs(a - 3.0) < 0.03 and abs(b - 5.0) < 0.002 and abs(float(span) - 7.0) < 0.03
    assert verify(out, span, ["audio"]).duration == pytest.approx(float(span), abs=0.03)
    audio = decode_audio(out)
    assert audio.duration == pytest.approx(float(span), abs=0.03)
    rate = audio.sample_rate
    assert (
        float(np.abs(audio.samples[:, int((a + 0.05) * rate) : int((b - 0.05) * rate)]).max())
        < 1e-3
    )


def test_parts_that_differ_are_refused_not_re_encoded(tmp_path):
    folder = tmp_path / "rec"
    _record(folder, ("hls", "mp4"), start_ms=T0, seconds=1.0)
    _record(folder, ("hls", "mp4"), start_ms=T0 + 3000, seconds=1.0, prefix="bak0_", width=320)
    with pytest.raises(MergeError, match="cannot be joined without re-encoding"):
        merge_parts(_parts(folder, tmp_path / "work"), tmp_path / "merged.mp4")


def test_verify_refuses_a_file_shorter_than_the_span(tmp_path):
    folder = tmp_path / "rec"
    _record(folder, ("hls", "mp4"), start_ms=T0, seconds=1.0)
    out = tmp_path / "merged.mp4"
    span, _ = merge_parts(_parts(folder, tmp_path / "work"), out)
    with pytest.raises(MergeError, match="lasts"):
        verify(out, span + 1, ["audio", "video"])
    with pytest.raises(MergeError, match="no subtitle stream"):
        verify(folder / "sid_room_0.mp4", span, ["video", "subtitle"])  # a kind never there


def test_segments_and_their_starts_come_from_the_names_and_playlists():
    names = [
        "bak1_s1_my-room.m3u8",
        "s1_my-room_0.mp4",
        "s1_my-room.m3u8",
        "s1_my-room_1.mp4",
        "bak0_s1_my-room_0.mp4",
        "bak0_s1_my-room.m3u8",
        "s2_my-room_0.mp4",  # another recording under the same prefix
        "job.mp4",  # an earlier merge's output
    ]
    segments = segments_of(names, "s1", "my.room")
    assert [(s.index, s.playlist, s.mp4s) for s in segments] == [
        (-1, "s1_my-room.m3u8", {0: "s1_my-room_0.mp4", 1: "s1_my-room_1.mp4"}),
        (0, "bak0_s1_my-room.m3u8", {0: "bak0_s1_my-room_0.mp4"}),
        (1, "bak1_s1_my-room.m3u8", {}),
    ]
    text = "#EXTM3U\n#EXTINF:1.000,\ns1_my-room_20231114221320042.ts\n"
    assert segment_start(text) == Fraction(1_700_000_000_042, 1000)
    event = "#EXTM3U\n#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE=VIDEO,TIME=1700000000123\n"
    assert segment_start(event) == Fraction(1_700_000_000_123, 1000)
    with pytest.raises(MergeError, match="no slice"):
        segment_start("#EXTM3U\n")


def test_the_silent_frame_in_adts_decodes_to_silence():
    from worker.merge_media import _encode_silence

    frame = adts_frame(_encode_silence(48_000, "mono"), 48_000, 1)
    decoder = av.CodecContext.create("aac", "r")
    decoded = [f.to_ndarray() for f in decoder.decode(av.Packet(frame))]
    decoded += [f.to_ndarray() for f in decoder.decode(av.Packet(frame))]
    assert decoded and all(float(np.abs(d).max()) == 0.0 for d in decoded)


def test_local_storage_lists_fetches_and_puts_atomically(tmp_path):
    storage = storage_for(StorageProfile(bucket="b", local_dir=str(tmp_path)))
    assert isinstance(storage, LocalStorage)
    (tmp_path / "b" / "x" / "y").mkdir(parents=True)
    (tmp_path / "b" / "x" / "y" / "a.ts").write_bytes(b"1")
    assert storage.names("x/y/") == ["a.ts"] and storage.names("nope/") == []
    storage.fetch("x/y/a.ts", tmp_path / "copy")
    storage.put(tmp_path / "copy", "x/y/merged.mp4")
    assert (tmp_path / "b" / "x" / "y" / "merged.mp4").read_bytes() == b"1"
    with pytest.raises(MergeError, match="unsafe"):
        storage.fetch("x/../../etc/passwd", tmp_path / "no")
    with pytest.raises(MergeError, match=re.escape("reading 'x/y/missing.ts' failed")):
        storage.fetch("x/y/missing.ts", tmp_path / "no")


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_s3_storage_uses_the_profiles_endpoint_and_keys(tmp_path, s3):
    client = boto3.client(
        "s3",
        endpoint_url=s3,
        region_name="us-east-1",
        aws_access_key_id="ak",
        aws_secret_access_key="sk",
    )
    client.create_bucket(Bucket="recs")
    client.put_object(Bucket="recs", Key="p/q/a.ts", Body=b"slice")
    client.put_object(Bucket="recs", Key="p/q/deeper/b.ts", Body=b"not listed")
    profile = StorageProfile(
        vendor=11, bucket="recs", endpoint=s3, access_key="ak", secret_key="sk"
    )
    storage = storage_for(profile)
    assert isinstance(storage, S3Storage)
    assert storage.names("p/q/") == ["a.ts"]
    storage.fetch("p/q/a.ts", tmp_path / "a.ts")
    assert (tmp_path / "a.ts").read_bytes() == b"slice"
    storage.put(tmp_path / "a.ts", "p/q/job.mp4")
    assert client.get_object(Bucket="recs", Key="p/q/job.mp4")["Body"].read() == b"slice"
    expected = re.escape("reading 'p/q/none.ts' from bucket 'recs' failed")
    with pytest.raises(MergeError, match=expected) as err:
        storage.fetch("p/q/none.ts", tmp_path / "none")
    assert "sk" not in str(err.value)


def _job(files: list[str], **fields: Any) -> JobRecord:
    return JobRecord.model_validate(
        {
            "job_id": "j1",
            "state": "completed",
            "cname": "room",
            "uid": "1",
            "spec": {"cname": "room"},
            "created_at": 0.0,
            "stop_at": 1.0,
            "sid": "sid",
            "merge": True,
            "files": [{"fileName": n, "key": n} for n in files],
            **fields,
        }
    )


def test_merge_job_puts_the_file_beside_the_parts(tmp_path):
    _recording(tmp_path / "b", ("hls", "mp4"))
    storage = LocalStorage(tmp_path / "b")
    merged = merge_job(Settings(), _job(["sid_room.m3u8", "sid_room_0.mp4"]), storage)
    assert merged["key"] == "j1.mp4" and merged["parts"] == 4 and len(merged["gaps"]) == 1
    assert (tmp_path / "b" / "j1.mp4").stat().st_size == merged["size"]


def test_a_file_the_service_listed_but_storage_lacks_fails_the_merge(tmp_path):
    _recording(tmp_path / "b", ("hls", "mp4"))
    job = _job(["sid_room.m3u8", "bak0_sid_room_2.mp4"], uploading_status="backuped")
    with pytest.raises(MergeError, match=r"not in storage: bak0_sid_room_2.mp4 \(uploading_status"):
        merge_job(Settings(), job, LocalStorage(tmp_path / "b"))


def test_a_missing_mp4_in_a_segment_fails_the_merge(tmp_path):
    _recording(tmp_path / "b", ("hls", "mp4"))
    (tmp_path / "b" / "sid_room_1.mp4").unlink()  # the original segment's second MP4
    with pytest.raises(
        MergeError, match=r"segment original: its MP4s last 2\.0 s, its playlist 3\.1 s"
    ):
        merge_job(Settings(), _job([]), LocalStorage(tmp_path / "b"))
