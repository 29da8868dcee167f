"""Issue 10 item 3: the emulator reads local media only where the operator allows, only through
container demuxers, never blocks on a named pipe, fetches images without redirects, and its dev
API needs a token beyond loopback.

The attacks replayed: a ``.asc`` file joined as a user's video (its text appeared in the
recording through FFmpeg's ``tty`` demuxer); the error text telling a caller whether a path
exists; a ``backgroundImage`` URL redirecting to an internal address; a named pipe as a local
``backgroundImage`` (the recorder thread blocked, no files); an open dev API on 0.0.0.0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from emulator import EmulatorServer, serve_in_thread
from emulator.devauth import DevTokenMissing
from emulator.media.access import REFUSED, MediaDirs, MediaRefused, open_media
from emulator.media.images import ImageStore
from tests.support.emulator import FAST, Api, start_request
from tests.support.media_sources import write_color_video, write_image
from tests.support.ports import free_port
from tests.support.processes import REPO
from tests.support.waiting import wait_for
from worker.devapi import DevApiClient, DevApiError

SECRET_TEXT = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBGDsecret\n"


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
def api(tmp_path: Path, media: Path) -> Iterator[Api]:
    server = serve_in_thread(replace(FAST, storage_dir=tmp_path / "storage", media_dirs=(media,)))
    client = Api(server)
    yield client
    client.http.close()
    server.stop()


def _reason(response: requests.Response) -> str:
    assert response.status_code == 400, response.text
    return str(response.json()["reason"])


def test_files_outside_the_media_dirs_are_refused_alike(api: Api, tmp_path: Path, media: Path):
    outside = tmp_path / "key.asc"
    outside.write_text(SECRET_TEXT)
    (media / "link.asc").symlink_to(outside)  # a symlink out of the media dir is outside too
    reasons = {
        _reason(api.join("room", "1", video={"file": path}))
        for path in (str(outside), "/etc/passwd", "/no/such/file.mp4", "link.asc", "../key.asc")
    }
    assert reasons == {f"video: file: {REFUSED}"}  # one text: nothing about what exists
    assert api.channel("room")["users"] == []


def test_without_media_dirs_no_local_file_is_read(tmp_path: Path):
    server = serve_in_thread(replace(FAST, storage_dir=tmp_path / "storage"))
    try:
        api = Api(server)
        clip = write_color_video(tmp_path / "clip.mp4", (255, 0, 255), (64, 48))
        reason = _reason(api.join("room", "1", audio={"file": str(clip)}))
        assert "local files are off" in reason and "--media-dir" in reason
    finally:
        server.stop()


def test_a_media_file_inside_is_accepted_by_relative_or_absolute_path(api: Api, media: Path):
    clip = write_color_video(media / "clip.mp4", (255, 0, 255), (64, 48))
    for path in ("clip.mp4", str(clip)):
        r = api.join("room", "1", video={"file": path})
        assert r.status_code == 201, r.text
        assert r.json()["video"] == {"file": str(clip)}
        api.leave("room", "1")


def test_a_text_file_is_never_demuxed(media: Path):
    """tty, concat, hls and image2 read text or further files: none of them is allowed."""
    asc = media / "key.asc"
    asc.write_text(SECRET_TEXT)
    playlist = media / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXTINF:1,\n{asc}\n#EXT-X-ENDLIST\n")
    concat = media / "list.ffconcat"
    concat.write_text(f"ffconcat version 1.0\nfile '{asc}'\n")
    for path in (asc, playlist, concat):
        with pytest.raises(MediaRefused, match="not a supported media container"):
            open_media(str(path))
    still = write_image(media / "still.png", (0, 255, 255), (32, 32))
    with open_media(str(still)) as container:
        assert container.format.name == "png_pipe"


def test_a_named_pipe_is_refused_at_join_and_never_blocks_a_reader(api: Api, media: Path):
    fifo = media / "pipe.mp4"
    os.mkfifo(fifo)
    assert _reason(api.join("room", "1", video={"file": str(fifo)})) == f"video: file: {REFUSED}"
    with pytest.raises(MediaRefused):
        MediaDirs.of([media]).resolve("pipe.mp4")
    began = time.monotonic()
    with pytest.raises(MediaRefused):
        open_media(str(fifo))  # nobody writes to it: a blocking open would never return
    store = ImageStore()
    store.request(str(fifo))
    store.wait(5)
    assert store.failed(str(fifo))
    store.close()
    assert time.monotonic() - began < 5


def test_a_named_pipe_as_background_image_does_not_stall_the_recording(api: Api, media: Path):
    fifo = media / "bg.png"
    os.mkfifo(fifo)
    api.join("room", "1", video={"color": "#FF0000"}, audio={"tone": 440})
    transcoding = {
        "width": 160,
        "height": 120,
        "fps": 15,
        "bitrate": 200,
        "backgroundImage": str(fifo),
    }
    rid, sid = api.start("room", "9", start_request(transcodingConfig=transcoding))
    wait_for(lambda: api.recording(sid)["files"], 20, what="the first files of the recording")
    stopped = api.stop(rid, sid, "room", "9")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["serverResponse"]["fileList"]


class _Redirector(BaseHTTPRequestHandler):
    target = ""
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_background_image_url_is_fetched_without_following_redirects(media: Path):
    still = write_image(media / "still.png", (0, 255, 255), (32, 32)).read_bytes()
    internal_hits: list[str] = []

    class Internal(_Redirector):
        def do_GET(self) -> None:
            internal_hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(still)))
            self.end_headers()
            self.wfile.write(still)

    internal = ThreadingHTTPServer(("127.0.0.1", 0), Internal)
    hits: list[str] = []
    target = f"http://127.0.0.1:{internal.server_address[1]}/metadata.png"
    public = ThreadingHTTPServer(
        ("127.0.0.1", 0), type("R", (_Redirector,), {"target": target, "hits": hits})
    )
    for server in (internal, public):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = ImageStore()
        ref = f"http://127.0.0.1:{public.server_address[1]}/bg.png"
        store.request(ref)
        store.wait(10)
        assert store.failed(ref)
        direct = ImageStore()  # the same image without the redirect loads: the test can fail
        direct.request(target)
        direct.wait(10)
        assert direct.frame(target) is not None
    finally:
        for server in (internal, public):
            server.shutdown()
            server.server_close()
    assert hits == ["/bg.png"]
    assert internal_hits == ["/metadata.png"]  # only the direct fetch reached it


def test_the_dev_api_needs_a_token_beyond_loopback(tmp_path: Path):
    with pytest.raises(DevTokenMissing, match="--dev-token"):
        EmulatorServer(replace(FAST, host="0.0.0.0", storage_dir=tmp_path))
    server = serve_in_thread(
        replace(FAST, host="0.0.0.0", storage_dir=tmp_path, dev_token="dev-token-123456")
    )
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert requests.get(f"{base}/dev/faults", timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.post(f"{base}/dev/reset", headers=wrong, timeout=10).status_code == 401
        with pytest.raises(DevApiError, match="401"):
            DevApiClient(base).recordings()
        assert DevApiClient(base, token="dev-token-123456").recordings() == []
    finally:
        server.stop()


def test_cloudrec_emulator_refuses_to_listen_openly_without_a_token(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDREC_")}
    argv = [sys.executable, "-m", "worker.cli", "emulator", "--host", "0.0.0.0"]
    argv += ["--port", str(free_port()), "--storage-dir", str(tmp_path)]
    result = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "beyond loopback" in result.stderr and "Traceback" not in result.stderr


def test_a_recording_that_cannot_write_ends_with_the_services_error_answer(tmp_path: Path):
    """Output that cannot be written (the staging area is not a directory): event 1 (fatal),
    status 20, and no answer lists a file, since none exists."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = replace(FAST, storage_dir=tmp_path / "storage", staging_dir=blocker / "staging")
    server = serve_in_thread(config)
    try:
        api = Api(server)
        api.join("room", "1", video={"color": "#FF0000"}, audio={"tone": 440})
        rid, sid = api.start("room", "9")
        row = wait_for(
            lambda: (lambda r: r if r["status"] == 20 else None)(api.recording(sid)),
            20,
            what="the recording to exit abnormally",
        )
        assert row["files"] == []
        errors = [e for e in api.events(sid) if e["eventType"] == 1]
        assert errors and errors[0]["payload"]["details"]["errorLevel"] == 5
        assert str(blocker) not in str(errors) + str(row)  # no local path in what callers see
        query = api.query(rid, sid)
        assert query.status_code in (200, 404), query.text
        if query.status_code == 200:
            assert query.json()["serverResponse"]["status"] == 20
            assert not query.json()["serverResponse"].get("fileList")
        stopped = api.stop(rid, sid, "room", "9")
        assert stopped.status_code in (400, 404), stopped.text  # 49 exiting, or gone
        assert "serverResponse" not in stopped.json()
        assert not list((tmp_path / "storage").rglob("*.m3u8"))
    finally:
        server.stop()


@pytest.mark.parametrize("inside", [False, True])
def test_a_local_background_image_is_read_only_inside_the_media_dirs(
    api: Api, tmp_path: Path, media: Path, inside: bool
) -> None:
    """Through the REST API: a local path as backgroundImage shows only from a media dir (the
    control case proves the test sees the image when it is allowed)."""
    from tests.support.mediacheck import close_to, color_at, frame_at

    image = write_image((media if inside else tmp_path) / "bg.png", (0, 255, 255), (32, 32))
    api.join("bgroom", "1", video=None, audio={"tone": 440})  # records, draws no video
    transcoding = {
        "width": 160,
        "height": 120,
        "fps": 15,
        "bitrate": 200,
        "backgroundColor": "#000000",
        "backgroundImage": str(image),
    }
    client = start_request(transcodingConfig=transcoding, files=["hls", "mp4"])
    rid, sid = api.start("bgroom", "9", client)
    wait_for(lambda: api.recording(sid)["files"], 20, what="the first files")
    time.sleep(1.0)
    stopped = api.stop(rid, sid, "bgroom", "9")
    assert stopped.status_code == 200, stopped.text
    mp4 = next((tmp_path / "storage").rglob("*.mp4"))
    centre = color_at(frame_at(mp4, 0.8), 0.5, 0.5)
    assert close_to(centre, "#00FFFF") == inside, centre
