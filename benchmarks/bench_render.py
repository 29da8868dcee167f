"""Benchmark the compositor against FFmpeg's command line, and measure a live recording.

    python benchmarks/bench_render.py [--duration 60] [--reps 5] [--live-seconds 20]

Four measurements, all printed:

1. Offline render, side by side in one run, `--reps` rounds in alternating order:
   - ffmpeg: the imageio-ffmpeg binary compositing the same 4 synthetic users (a colour with
     the same moving marker, xstack 2x2; four sine tones, amix) with the same encoders
     (libx264 veryfast, zerolatency, CBR 500 kbps with HRD filler, an IDR every 15 s; AAC-LC
     mono 48 kbps, fast coder) into the same outputs: HLS with 15 s slices and one MP4,
     encoded once (tee muxer), as our recorder does;
   - ours (render): `render_scenario` timed inside a child process (what the compositor
     costs);
   - ours (CLI): the whole `cloudrec render SCENARIO --out DIR` process (plus interpreter
     start-up and imports).
   Medians of wall time and CPU time (user + system, from wait4) and the ratios to ffmpeg,
   and the median of the ratios taken round by round (steadier on a shared machine).
   FFmpeg runs with its default threading (x264 picks its threads, filters and encoders
   their own), as a user would run it: no -threads option.
2. Peak memory (max RSS from wait4) of each process.
3. The real bitrate of our MP4's video track (payload bytes x 8 / duration) against the
   requested bitrate, and the same for ffmpeg's MP4.
4. A live 4-user recording: a child process drives CompositeRecorder with the wall clock
   (the emulator's 0.2 s tick) for `--live-seconds`; its CPU time / wall time is the share
   of one core it uses.

The machine may be shared: compare figures from the same run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WIDTH, HEIGHT, FPS, KBPS = 360, 640, 15, 500
SLICE_SECONDS = 15
USERS = [("#FF0000", 440), ("#00FF00", 660), ("#0000FF", 880), ("#FFFF00", 1100)]
AUDIO_KBPS = 48  # audioProfile 0
# The synthetic pattern's marker (emulator/media/video_sources.py ColorPattern): a square of
# 15% of the region's short side, 5% from the top, sliding back and forth every 4 s, black
# on bright colours and white on dark ones.
MARKER_SIDE, MARKER_TOP, MARKER_PERIOD = 0.15, 0.05, 4.0
TONE_VOLUME = 2.0  # ffmpeg's sine source is at 1/8 of full scale; ours is at 1/4


@dataclass(frozen=True)
class Run:
    """One process: wall seconds, CPU seconds (user + system), peak RSS in MB."""

    wall: float
    cpu: float
    rss_mb: float
    reported: dict[str, Any]  # what the child printed as JSON (ours only)


def scenario(duration: float) -> dict[str, Any]:
    """The benchmark channel: 4 users from t=0, best fit (a 2x2 grid), HLS + MP4."""
    return {
        "cname": "bench",
        "sid": "b" * 32,
        "duration": duration,
        "recordingConfig": {
            "streamTypes": 2,
            "audioProfile": 0,
            "transcodingConfig": {
                "width": WIDTH,
                "height": HEIGHT,
                "fps": FPS,
                "bitrate": KBPS,
                "mixedVideoLayout": 1,
            },
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "events": [
            {"at": 0, "join": {"uid": str(i + 1), "video": {"color": c}, "audio": {"tone": f}}}
            for i, (c, f) in enumerate(USERS)
        ],
    }


def ffmpeg_command(ffmpeg: str, duration: float, out: Path) -> list[str]:
    """FFmpeg producing the same outputs from the same synthetic sources."""
    cell_w, cell_h = WIDTH // 2, HEIGHT // 2
    side = 2 * int(min(cell_w, cell_h) * MARKER_SIDE / 2)
    top = 2 * int(cell_h * MARKER_TOP / 2)
    travel = cell_w - side
    x = f"2*trunc({travel}*(1-abs(2*mod(t,{MARKER_PERIOD})/{MARKER_PERIOD}-1))/2)"
    graph = []
    for index, (colour, tone) in enumerate(USERS):
        marker = "#000000" if _luma(colour) >= 128 else "#FFFFFF"
        graph += [
            f"color=c={colour}:s={cell_w}x{cell_h}:r={FPS}:d={duration}[c{index}]",
            f"color=c={marker}:s={side}x{side}:r={FPS}:d={duration}[m{index}]",
            f"[c{index}][m{index}]overlay=x='{x}':y={top}[t{index}]",
            f"sine=f={tone}:r=48000:d={duration},volume={TONE_VOLUME}[a{index}]",
        ]
    graph += [
        "[t0][t1][t2][t3]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0,format=yuv420p[v]",
        "[a0][a1][a2][a3]amix=inputs=4:normalize=0,aformat=sample_fmts=fltp:channel_layouts=mono[a]",
    ]
    slices = f"{out}/slice_%03d.ts"
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-filter_complex", ";".join(graph), "-map", "[v]", "-map", "[a]",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-b:v", f"{KBPS}k", "-maxrate", f"{KBPS}k", "-minrate", f"{KBPS}k",
        "-bufsize", f"{KBPS}k", "-x264-params", "nal-hrd=cbr",
        "-g", str(SLICE_SECONDS * FPS), "-forced-idr", "1",
        "-force_key_frames", f"expr:gte(t,n_forced*{SLICE_SECONDS})",
        "-c:a", "aac", "-aac_coder", "fast", "-b:a", f"{AUDIO_KBPS}k", "-ar", "48000", "-ac", "1",
        "-f", "tee",
        f"[f=hls:hls_time={SLICE_SECONDS}:hls_list_size=0:hls_segment_filename={slices}]"
        f"{out}/bench.m3u8|[f=mp4]{out}/bench.mp4",
    ]  # fmt: skip


def _luma(colour: str) -> float:
    value = int(colour.lstrip("#"), 16)
    r, g, b = (value >> 16) & 255, (value >> 8) & 255, value & 255
    return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255


def run_process(command: Sequence[str]) -> Run:
    """Run to completion; wall time, and CPU and peak RSS of the process from wait4."""
    # Output goes to files, not pipes: nothing reads pipes while wait4 blocks.
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if code != 0:
            raise RuntimeError(f"{command[0]} failed ({code}): {stderr.read().decode()}")
        lines = [line for line in stdout.read().decode().splitlines() if line.startswith("{")]
    reported = json.loads(lines[-1]) if lines else {}
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, reported)


def fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


# -- child processes (run by this script with --child-*) -----------------------------------


def child_render(scenario_path: Path, out: Path) -> None:
    """Time render_scenario alone; print {"render_seconds", "render_cpu", "files"} as JSON.

    `render_cpu` is the CPU time of the whole process (all threads) during the render.
    """
    from emulator.media import render_scenario

    data = json.loads(scenario_path.read_text())
    cpu, started = time.process_time(), time.perf_counter()
    files = render_scenario(data, out)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    paths = [str(f.path) for f in files]
    print(json.dumps({"render_seconds": elapsed, "render_cpu": cpu, "files": paths}))


def child_live(seconds: float, out: Path) -> None:
    """Drive a 4-user CompositeRecorder with the wall clock; print its CPU share as JSON."""
    from emulator.media import CompositeRecorder, media_config_from_api
    from emulator.media.models import AudioSource, UserSnapshot, VideoSource

    data = scenario(seconds)
    config = media_config_from_api(data["recordingConfig"], data["recordingFileConfig"])
    users = [
        UserSnapshot(str(i + 1), VideoSource(color=c), AudioSource(tone=f))
        for i, (c, f) in enumerate(USERS)
    ]
    tick = 0.2  # EmulatorConfig.tick_seconds: how often the emulator advances a recording
    start_ms = int(time.time() * 1000)
    cpu0, wall0 = time.process_time(), time.monotonic()
    recorder = CompositeRecorder(
        config, sid="1" * 32, cname="live", out_dir=out, start_epoch_ms=start_ms
    )
    deadline = wall0 + seconds
    while (now := time.monotonic()) < deadline:
        recorder.advance_to(now - wall0, users)
        time.sleep(max(0.0, min(tick, deadline - time.monotonic())))
    recorder.finish()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    print(json.dumps({"cpu": cpu, "wall": wall, "media": recorder.media_seconds}))


# -- measurements -----------------------------------------------------------------------------


def video_kbps(mp4: Path, duration: float) -> float:
    import av

    with av.open(str(mp4)) as container:
        payload: int = sum(packet.size for packet in container.demux(video=0))
    return payload * 8 / duration / 1000


def describe(path: Path) -> str:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        frames = sum(1 for packet in container.demux(video) if packet.size)
        return (
            f"{video.codec_context.width}x{video.codec_context.height} {frames} frames, "
            f"{audio.codec_context.name} {audio.codec_context.sample_rate} Hz "
            f"{audio.codec_context.channels} ch"
        )


def median(runs: Sequence[Run], field: str) -> float:
    return float(statistics.median(getattr(run, field) for run in runs))


def bench_render(work: Path, duration: float, reps: int) -> dict[str, list[Run]]:
    import imageio_ffmpeg  # type: ignore[import-untyped]

    ffmpeg: str = imageio_ffmpeg.get_ffmpeg_exe()
    spec = work / "scenario.json"
    spec.write_text(json.dumps(scenario(duration)))
    me = str(Path(__file__).resolve())
    cli = [sys.executable, "-m", "worker.cli", "render", str(spec), "--out"]
    commands = {
        "ffmpeg": lambda out: ffmpeg_command(ffmpeg, duration, out),
        "ours (render)": lambda out: [sys.executable, me, "--child-render", str(spec), str(out)],
        "ours (CLI)": lambda out: [*cli, str(out)],
    }
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    names = list(commands)
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]  # alternate: no side always goes first
        for name in order:
            runs[name].append(run_process(commands[name](fresh(work / _slug(name)))))
    return runs


def _slug(name: str) -> str:
    return "".join(ch for ch in name if ch.isalnum())


def report_render(work: Path, duration: float, runs: dict[str, list[Run]]) -> None:
    """Print the timing table, every round, the outputs and the MP4 bitrates."""
    print(
        f"\nOffline render: {duration:g} s, 4 users, {WIDTH}x{HEIGHT}, {FPS} fps, {KBPS} kbps, "
        f"HLS ({SLICE_SECONDS} s slices) + MP4; {len(runs['ffmpeg'])} rounds, medians"
    )
    print_timings(runs)
    print_outputs(work, duration, runs["ours (render)"][-1])


def print_timings(runs: dict[str, list[Run]]) -> None:
    ours, cli, ff = runs["ours (render)"], runs["ours (CLI)"], runs["ffmpeg"]
    render_times = [run.reported["render_seconds"] for run in ours]
    render_cpu = statistics.median(run.reported["render_cpu"] for run in ours)
    rows = [  # label, processes (for RSS), wall, CPU
        ("ffmpeg CLI (process)", ff, median(ff, "wall"), median(ff, "cpu")),
        ("ours render_scenario()", ours, statistics.median(render_times), render_cpu),
        ("ours cloudrec render (CLI)", cli, median(cli, "wall"), median(cli, "cpu")),
    ]
    header = f"{'wall s':>8} {'x ffmpeg':>9} {'CPU s':>8} {'x ffmpeg':>9} {'max RSS MB':>11}"
    print(f"  {'':26} {header}")
    ff_wall, ff_cpu = rows[0][2], rows[0][3]
    for label, group, wall, cpu in rows:
        rss = max(run.rss_mb for run in group)
        print(
            f"  {label:26} {wall:8.2f} {wall / ff_wall:9.2f} {cpu:8.2f} {cpu / ff_cpu:9.2f} "
            f"{rss:11.1f}"
        )
    print("  (render_scenario(): wall and CPU of the call inside its process; RSS: the process)")
    for name, group in runs.items():
        print(f"  every round, {name} wall s: " + " ".join(f"{run.wall:.2f}" for run in group))
    print("  every round, render_scenario() s: " + " ".join(f"{t:.2f}" for t in render_times))
    # On a shared machine the load drifts between rounds; a ratio taken within each round
    # (the runs of a round are adjacent) moves less with it than the ratio of the medians.
    paired = [t / run.wall for t, run in zip(render_times, ff, strict=True)]
    paired_cli = [c.wall / f.wall for c, f in zip(cli, ff, strict=True)]
    print(
        f"  paired, median of the per-round ratios to ffmpeg's wall time: render_scenario() "
        f"{statistics.median(paired):.2f}, CLI {statistics.median(paired_cli):.2f}"
    )


def print_outputs(work: Path, duration: float, ours: Run) -> None:
    ours_files = [Path(p) for p in ours.reported["files"]]
    ours_mp4 = next(p for p in ours_files if p.suffix == ".mp4")
    ours_slices = [p for p in ours_files if p.suffix == ".ts"]
    ff_dir = work / _slug("ffmpeg")
    ff_slices = sorted(ff_dir.glob("*.ts"))
    print(f"\nOutputs: ours {len(ours_slices)} TS + M3U8 + MP4 ({describe(ours_mp4)})")
    print(f"         ffmpeg {len(ff_slices)} TS + M3U8 + MP4 ({describe(ff_dir / 'bench.mp4')})")
    ours_kbps = video_kbps(ours_mp4, duration)
    ff_kbps = video_kbps(ff_dir / "bench.mp4", duration)
    print(
        f"MP4 video bitrate: ours {ours_kbps:.1f} kbps ({(ours_kbps / KBPS - 1) * 100:+.1f}% of "
        f"{KBPS} requested), ffmpeg {ff_kbps:.1f} kbps"
    )


def report_live(work: Path, seconds: float) -> None:
    me = str(Path(__file__).resolve())
    run = run_process([sys.executable, me, "--child-live", str(seconds), str(fresh(work / "live"))])
    share = run.reported["cpu"] / run.reported["wall"] * 100
    whole = run.cpu / run.wall * 100
    print(
        f"\nLive recording, 4 users, {WIDTH}x{HEIGHT}, {FPS} fps, {KBPS} kbps, HLS + MP4, "
        f"wall clock for {run.reported['wall']:.1f} s:\n"
        f"  {share:.1f}% of one core while recording ({whole:.1f}% counting interpreter "
        f"start-up and imports), max RSS {run.rss_mb:.1f} MB"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="media seconds to render")
    parser.add_argument("--reps", type=int, default=5, help="rounds of the side-by-side run")
    parser.add_argument("--live-seconds", type=float, default=20.0, help="0 skips the live run")
    parser.add_argument("--work", type=Path, default=None, help="keep the outputs here")
    parser.add_argument("--child-render", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-live", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_render:
        child_render(*args.child_render)
        return
    if args.child_live:
        child_live(float(args.child_live[0]), Path(args.child_live[1]))
        return
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="bench_render_") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        report_render(work, args.duration, bench_render(work, args.duration, args.reps))
        if args.live_seconds > 0:
            report_live(work, args.live_seconds)


if __name__ == "__main__":
    main()
