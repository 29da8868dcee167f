"""S3 and S3-compatible uploads with boto3, against a real S3-protocol server on loopback
(moto in server mode, with IAM authentication on), and what happens when they fail
(docs/service/api-contract.md#storageconfig, docs/service/api-contract.md#stop,
docs/service/files.md#failover)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from contract.models import StorageConfig
from emulator.storage import S3_REGIONS, s3_endpoint_for, s3_region_for
from tests.support.emulator import Api, EmulatorFactory
from tests.support.mediacheck import probe
from tests.support.s3 import BUCKET, S3Server, s3_server
from tests.support.waiting import wait_for

PREFIX = ["class", "a1"]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server("recorder") as server:
        yield server


def storage(s3: S3Server, **overrides: Any) -> dict[str, Any]:
    return {
        "vendor": 1,
        "region": 7,
        "bucket": BUCKET,
        "accessKey": s3.access_key,
        "secretKey": s3.secret_key,
        "fileNamePrefix": PREFIX,
        **overrides,
    }


def client_request(storage_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "recordingConfig": {
            "transcodingConfig": {"width": 160, "height": 120, "fps": 15, "bitrate": 200}
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "storageConfig": storage_config,
    }


def record(api: Api, cname: str, storage_config: dict[str, Any]) -> tuple[str, str, Any]:
    """Start, let one slice complete, stop synchronously: (resourceId, sid, stop body)."""
    api.join(cname, "1", video={"color": "#00FF00"}, audio={"tone": 440})
    rid, sid = api.start(cname, "100", client_request(storage_config))
    wait_for(lambda: api.query(rid, sid).json()["serverResponse"]["fileList"], 10, what="a slice")
    r = api.stop(rid, sid, cname, "100")
    assert r.status_code == 200, r.text
    return rid, sid, r.json()


def key(name: str) -> str:
    return "/".join([*PREFIX, name])


@pytest.mark.parametrize("vendor", [1, 11])
def test_upload_to_s3(make_emulator: EmulatorFactory, s3: S3Server, vendor: int) -> None:
    """Vendor 1 uploads to the configured S3 endpoint; vendor 11 to its own
    extensionParams.endpoint (the emulator has no S3 endpoint configured then)."""
    if vendor == 1:
        api = make_emulator(s3_endpoint_url=s3.endpoint)
        config = storage(s3)
    else:
        api = make_emulator()
        config = storage(s3, vendor=11, region=0, extensionParams={"endpoint": s3.endpoint})
    cname = f"s3v{vendor}"
    _, sid, body = record(api, cname, config)
    assert body["serverResponse"]["uploadingStatus"] == "uploaded"
    playlist, mp4 = f"{sid}_{cname}.m3u8", f"{sid}_{cname}_0.mp4"
    keys = [k for k in s3.object_keys() if sid in k]
    text = s3.read(key(playlist)).decode()
    slices = [line for line in text.splitlines() if line.endswith(".ts")]
    assert text.rstrip().endswith("#EXT-X-ENDLIST") and slices
    assert keys == sorted([key(playlist), key(mp4), *(key(name) for name in slices)])
    assert not (api.server.config.storage_dir / BUCKET).exists()  # nothing written locally
    row = api.recording(sid)
    assert {f["location"] for f in row["files"]} == {f"{s3.endpoint}/{BUCKET}/{k}" for k in keys}
    assert all(f["uploaded"] for f in row["files"])
    downloaded = api.server.config.storage_dir / "downloaded.mp4"
    downloaded.write_bytes(s3.read(key(mp4)))
    facts = probe(downloaded)
    assert (facts.width, facts.height, facts.audio_codec) == (160, 120, "aac")


@pytest.mark.parametrize(
    "broken",
    [
        {"secretKey": "not-the-secret"},  # wrong credentials
        {"accessKey": "AKIAUNKNOWN"},
        {"bucket": "no-such-bucket"},  # unreachable bucket
    ],
)
def test_refused_upload_is_kept_in_backup(
    make_emulator: EmulatorFactory, s3: S3Server, broken: dict[str, str]
) -> None:
    api = make_emulator(s3_endpoint_url=s3.endpoint)
    _, sid, body = record(api, "refused", storage(s3, **broken))
    assert body["serverResponse"]["uploadingStatus"] == "backuped"
    assert body["serverResponse"]["fileList"][0]["fileName"] == f"{sid}_refused.m3u8"
    assert not [k for k in s3.object_keys() if sid in k]
    row = api.recording(sid)
    backup = api.server.config.storage_dir / ".backup" / sid
    for f in row["files"]:
        assert not f["uploaded"] and f["location"].startswith(str(backup))
        assert all(b["path"].startswith(str(backup)) for b in f["backups"])
    names = {p.name for p in backup.iterdir()}
    assert f"{sid}_refused_0.mp4" in names and any(n.endswith(".ts") for n in names)
    errors = [e for e in api.events(sid) if e["eventType"] == 1]
    assert [e["payload"]["details"]["errorCode"] for e in errors] == [32]  # configuration
    assert "not-the-secret" not in json.dumps(api.events(sid))


def test_unreachable_endpoint_is_kept_in_backup(make_emulator: EmulatorFactory) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    api = make_emulator()
    config = {
        "vendor": 11,
        "region": 0,
        "bucket": BUCKET,
        "accessKey": "ak",
        "secretKey": "sk",
        "extensionParams": {"endpoint": dead},
    }
    _, sid, body = record(api, "dead", config)
    assert body["serverResponse"]["uploadingStatus"] == "backuped"
    errors = [e for e in api.events(sid) if e["eventType"] == 1]
    assert [e["payload"]["details"]["errorCode"] for e in errors] == [47]  # upload failed
    assert all(not f["uploaded"] for f in api.recording(sid)["files"])


def test_nothing_is_lost_backups_are_transferred_later(
    make_emulator: EmulatorFactory, s3: S3Server
) -> None:
    """Wrong secret at start: the first files go to the backup area. update pushes the right
    storageConfig (docs/service/api-contract.md#update); later files upload directly, and the
    backed-up ones are transferred to the bucket, M3U8 versions as
    <sid>_<cname>_<tick>_<index>.m3u8."""
    api = make_emulator(s3_endpoint_url=s3.endpoint, backup_transfer_seconds=0.2)
    cname = "later"
    api.join(cname, "1")
    rid, sid = api.start(cname, "100", client_request(storage(s3, secretKey="wrong")))
    wait_for(lambda: api.query(rid, sid).json()["serverResponse"]["fileList"], 10, what="a slice")
    fixed = {"storageConfig": storage(s3)}
    assert api.update(rid, sid, cname, "100", fixed).status_code == 200
    r = api.stop(rid, sid, cname, "100")
    assert r.json()["serverResponse"]["uploadingStatus"] == "backuped"

    def transferred() -> bool:
        row = api.recording(sid)
        return all(b["transferred"] for f in row["files"] for b in f["backups"])

    wait_for(transferred, 10, what="the backups to be transferred")
    row = api.recording(sid)
    backups = [b for f in row["files"] for b in f["backups"]]
    assert backups, "the wrong secret sent files to the backup area"
    keys = [k for k in s3.object_keys() if sid in k]
    for b in backups:
        assert b["key"] in keys and b["location"] == f"{s3.endpoint}/{BUCKET}/{b['key']}"
    versions = [k for k in keys if re.fullmatch(rf".*/{sid}_{cname}_\d{{13}}_\d+\.m3u8", k)]
    assert versions  # the backed-up playlist versions, renamed
    final = s3.read(key(f"{sid}_{cname}.m3u8")).decode()
    slices = [line for line in final.splitlines() if line.endswith(".ts")]
    assert {key(name) for name in slices} <= set(keys)  # every slice is in the bucket
    assert key(f"{sid}_{cname}_0.mp4") in keys
    assert not list((api.server.config.storage_dir / ".backup" / sid).iterdir())


def test_region_codes_and_endpoints() -> None:
    base = {"bucket": "b", "accessKey": "a", "secretKey": "s"}
    expected = {0: "us-east-1", 3: "us-west-2", 7: "eu-central-1", 15: "cn-north-1"}
    for code, name in expected.items():
        config = StorageConfig.model_validate({**base, "vendor": 1, "region": code})
        assert s3_region_for(config) == name
        assert s3_endpoint_for(config, None) is None
        assert s3_endpoint_for(config, "http://127.0.0.1:9") == "http://127.0.0.1:9"
    assert 17 not in S3_REGIONS and len(S3_REGIONS) == 25
    compatible = StorageConfig.model_validate(
        {**base, "vendor": 11, "region": 0, "extensionParams": {"endpoint": "minio.example:9000"}}
    )
    assert s3_endpoint_for(compatible, "http://ignored") == "https://minio.example:9000"
