"""How many live 4-user 640x360 composite recordings one emulator sustains in real time.

    python benchmarks/emulator_load.py [--levels 10,20,30] [--seconds 30] [--recorder-processes 2]

The emulator is started with ``--recorder-processes`` one per core (the default here; 0 keeps
every recorder in the emulator's own process, the emulator's own default).

The emulator runs as users run it (`cloudrec emulator`, its own process, REST limit off); this
script is its client. For each level N of the ramp:

1. N channels, each with 4 simulated users (dev API: a colour pattern and a tone each);
2. N recordings, as a client starts them (acquire + start, mixed mode, 640x360, 15 fps,
   500 kbps, best-fit layout, HLS + MP4), all recording at once for `--seconds`;
3. every recording stopped (synchronous stop: the files are uploaded when it answers);
4. the checks, per recording:
   - no frame dropped: the emulator composes every frame, however late, and counts those
     composed more than 1 s after their time, the ones a real-time recorder would have
     dropped (`GET /dev/recordings`: `realtime.lateFrames`, `realtime.maxLagSeconds`);
   - files complete: the MP4 decoded with PyAV has every frame the recorder composed, as many
     as the recording's wall time (`recorderStartedAt` to `stoppedAt`) x fps (within 0.5 s),
     audio as long as the video, and the HLS slices hold the same frames.

It prints, per level, the emulator's CPU (share of one core, from /proc, while all N record),
the worst lag and late frames, the file checks, and at the end the highest level that passed
(the ramp stops at the first level that fails). Exit status 1 if that is below `--goal`.

The machine may be shared: the load average is printed with every level.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

WIDTH, HEIGHT, FPS, KBPS = 640, 360, 15, 500
USERS = [("#FF0000", 440), ("#00FF00", 660), ("#0000FF", 880), ("#FFFF00", 1100)]
AUTH = ("demo", "demo-secret")
APP = "loadapp"
TOLERANCE_S = 0.5  # files vs wall time: the 0.2 s clock tick, plus the stop's own latency
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Recording:
    cname: str
    resource_id: str
    sid: str


@dataclass
class LevelResult:
    level: int
    cpu_share: float  # of one core, while all recordings ran
    late_frames: int
    max_lag: float
    problems: list[str]
    frames: list[int]

    @property
    def passed(self) -> bool:
        return self.late_frames == 0 and not self.problems


class Emulator:
    """`cloudrec emulator` in its own process, and a client of its REST and dev APIs."""

    def __init__(self, storage: Path, log: Path, processes: int) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.storage = storage
        command = [
            sys.executable, "-m", "worker.cli", "emulator", "--port", str(self.port),
            "--storage-dir", str(storage), "--qps", "0",
            "--customer-id", AUTH[0], "--customer-secret", AUTH[1],
            "--recorder-processes", str(processes),
        ]  # fmt: skip
        self._log = log.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self.http = requests.Session()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the emulator exited ({self.process.returncode})")
            try:
                self.http.get(f"{self.base}/dev/channels", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("the emulator did not start listening")

    def cpu_seconds(self) -> float:
        """CPU time of the emulator and of its recorder processes (if any)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if stat.parent.name == str(self.process.pid) or fields[1] == str(self.process.pid):
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / CLK_TCK

    def url(self, path: str) -> str:
        return f"{self.base}/v1/apps/{APP}/cloud_recording{path}"

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.http.post(self.url(path), json=body, auth=AUTH, timeout=60)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text}")
        result: dict[str, Any] = answer.json()
        return result

    def join_users(self, cname: str) -> None:
        for uid, (colour, tone) in enumerate(USERS, start=1):
            body = {"uid": str(uid), "video": {"color": colour}, "audio": {"tone": tone}}
            url = f"{self.base}/dev/channels/{cname}/users"
            self.http.post(url, json=body, timeout=10).raise_for_status()

    def start(self, cname: str) -> Recording:
        uid = "999"
        rid = self.post("/acquire", {"cname": cname, "uid": uid, "clientRequest": {}})["resourceId"]
        client = {
            "recordingConfig": {
                "channelType": 0,
                "streamTypes": 2,
                "audioProfile": 0,
                "maxIdleTime": 120,
                "transcodingConfig": {
                    "width": WIDTH,
                    "height": HEIGHT,
                    "fps": FPS,
                    "bitrate": KBPS,
                    "mixedVideoLayout": 1,
                },
            },
            "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
            "storageConfig": {
                "vendor": 1,
                "region": 0,
                "bucket": "load",
                "accessKey": "ak",
                "secretKey": "sk",
                "fileNamePrefix": [cname],
            },
        }
        body = {"cname": cname, "uid": uid, "clientRequest": client}
        sid = self.post(f"/resourceid/{rid}/mode/mix/start", body)["sid"]
        return Recording(cname, rid, sid)

    def stop(self, recording: Recording) -> None:
        """Stop; a recording behind real time may answer 206 "upload timeout" (code 50): then
        wait for it to finish its files."""
        path = f"/resourceid/{recording.resource_id}/sid/{recording.sid}/mode/mix/stop"
        body = {"cname": recording.cname, "uid": "999", "clientRequest": {}}
        answer = self.http.post(self.url(path), json=body, auth=AUTH, timeout=60)
        if answer.status_code == 206 and answer.json().get("code") == 50:
            deadline = time.monotonic() + 300
            while self.recording(recording.sid).get("uploadingStatus") is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{recording.cname}: files not done 300 s after stop")
                time.sleep(0.5)
        elif answer.status_code != 200:
            raise RuntimeError(f"stop: {answer.status_code} {answer.text}")

    def recording(self, sid: str) -> dict[str, Any]:
        answer = self.http.get(f"{self.base}/dev/recordings/{sid}", timeout=30)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def live_count(self) -> int:
        answer = self.http.get(f"{self.base}/dev/recordings", params={"live": "true"}, timeout=30)
        return len(answer.json())

    def recording_started(self, sid: str) -> bool:
        return self.recording(sid).get("recorderStartedAt") is not None

    def reset(self) -> None:
        self.http.post(f"{self.base}/dev/reset", timeout=120).raise_for_status()

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- one level ------------------------------------------------------------------------------


def run_level(emulator: Emulator, level: int, seconds: float) -> LevelResult:
    cnames = [f"load{level}n{i}" for i in range(level)]
    for cname in cnames:
        emulator.join_users(cname)
    recordings = [emulator.start(cname) for cname in cnames]
    deadline = time.monotonic() + 30
    while not all(emulator.recording_started(r.sid) for r in recordings):
        if time.monotonic() > deadline:
            raise RuntimeError("recorders did not start within 30 s")
        time.sleep(0.2)
    # The CPU share is taken while every recorder runs, after the starts.
    cpu0, wall0 = emulator.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu_share = (emulator.cpu_seconds() - cpu0) / (time.monotonic() - wall0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(emulator.stop, recordings))
    return check_level(emulator, level, recordings, cpu_share)


def check_level(
    emulator: Emulator, level: int, recordings: list[Recording], cpu_share: float
) -> LevelResult:
    late, lags, problems, frames = 0, [], [], []
    for recording in recordings:
        shown = emulator.recording(recording.sid)
        realtime = shown["realtime"]
        late += realtime["lateFrames"]
        lags.append(realtime["maxLagSeconds"])
        frames.append(realtime["frames"])
        wall = _epoch(shown["stoppedAt"]) - _epoch(shown["recorderStartedAt"])
        problems += [
            f"{recording.cname}: {problem}"
            for problem in check_files(shown, realtime["frames"], wall)
        ]
    return LevelResult(level, cpu_share, late, max(lags), problems, frames)


def check_files(shown: dict[str, Any], composed: int, wall: float) -> list[str]:
    """What is wrong with a stopped recording's uploaded files (nothing: [])."""
    files = shown["files"]
    if not all(f["uploaded"] for f in files):
        return ["not every file was uploaded"]
    mp4s = [Path(f["location"]) for f in files if f["kind"] == "mp4"]
    slices = [Path(f["location"]) for f in files if f["kind"] == "ts"]
    if len(mp4s) != 1 or not slices:
        return [f"{len(mp4s)} MP4 and {len(slices)} TS files"]
    problems = []
    video_frames, video_s, audio_s = decode_mp4(mp4s[0])
    ts_frames = sum(count_ts_frames(path) for path in slices)
    if video_frames != composed:
        problems.append(f"MP4 has {video_frames} frames of the {composed} composed")
    if ts_frames != composed:
        problems.append(f"HLS slices have {ts_frames} frames of the {composed} composed")
    if abs(video_s - wall) > TOLERANCE_S:
        problems.append(f"MP4 video is {video_s:.2f} s for {wall:.2f} s of wall time")
    if abs(audio_s - video_s) > TOLERANCE_S:
        problems.append(f"MP4 audio is {audio_s:.2f} s for {video_s:.2f} s of video")
    return problems


def decode_mp4(path: Path) -> tuple[int, float, float]:
    """(video frames decoded, video seconds = frames / fps, audio seconds decoded)."""
    import av

    frames, samples = 0, 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames += 1 if frame.width == WIDTH and frame.height == HEIGHT else 0
    with av.open(str(path)) as container:
        for audio in container.decode(audio=0):
            samples += audio.samples
    return frames, frames / FPS, samples / 48_000


def count_ts_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


# -- report -----------------------------------------------------------------------------------


def report(result: LevelResult, load: float) -> None:
    verdict = "PASS" if result.passed else "FAIL"
    per = result.cpu_share / result.level * 100
    print(
        f"{result.level:4d} recordings  load avg {load:5.2f}  emulator CPU "
        f"{result.cpu_share * 100:6.1f}% of one core ({per:.1f}% each)  late frames "
        f"{result.late_frames:5d}  max lag {result.max_lag:5.2f} s  frames/recording "
        f"{min(result.frames)}-{max(result.frames)}  files "
        f"{'complete' if not result.problems else f'{len(result.problems)} problems'}  {verdict}",
        flush=True,
    )
    for problem in result.problems[:5]:
        print(f"       {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="10,20,25,30,35,40", help="the ramp, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="recording time per level")
    parser.add_argument("--goal", type=int, default=20)
    parser.add_argument(
        "--recorder-processes",
        type=int,
        default=os.cpu_count() or 1,
        help="the emulator's option (0: every recorder in the emulator's process); default: one "
        "per core, as a load target should run (in one process the recorders share one "
        "interpreter lock and 20 fall behind even on an idle machine)",
    )
    parser.add_argument("--keep-going", action="store_true", help="run every level of the ramp")
    parser.add_argument("--work", type=Path, default=None, help="keep storage and log here")
    args = parser.parse_args(argv)
    # A SIGTERM still stops the emulator (the finally below) instead of leaving it running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    levels = [int(part) for part in args.levels.split(",")]
    print(
        f"{os.cpu_count()} CPUs; 4 users per channel, {WIDTH}x{HEIGHT} {FPS} fps {KBPS} kbps, "
        f"HLS + MP4, {args.seconds:g} s per level, --recorder-processes "
        f"{args.recorder_processes}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    best = 0
    with tempfile.TemporaryDirectory(prefix="emulator_load_") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        emulator = Emulator(work / "storage", work / "emulator.log", args.recorder_processes)
        try:
            for level in levels:
                load = os.getloadavg()[0]
                result = run_level(emulator, level, args.seconds)
                report(result, load)
                emulator.reset()
                shutil.rmtree(work / "storage" / "load", ignore_errors=True)
                if result.passed:
                    best = max(best, level)
                elif not args.keep_going:
                    break
        finally:
            emulator.close()
    print(f"max sustained: {best} live recordings in real time (goal >= {args.goal})")
    return 0 if best >= args.goal else 1


if __name__ == "__main__":
    raise SystemExit(main())
