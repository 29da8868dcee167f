"""Amazon S3 (vendor 1) region codes of ``storageConfig.region`` and their AWS names
(docs/service/api-contract.md#storageconfig): the emulator uploads there, the worker reads a job's
files back from there to merge them (:mod:`worker.merge_storage`)."""

from __future__ import annotations

VENDOR_S3 = 1  # Amazon S3
# docs/service/api-contract.md#storageconfig, S3 (vendor 1) region codes. 23 comes from the
# 2021-07-30 release notes.
S3_REGIONS: dict[int, str] = {
    0: "us-east-1",
    1: "us-east-2",
    2: "us-west-1",
    3: "us-west-2",
    4: "eu-west-1",
    5: "eu-west-2",
    6: "eu-west-3",
    7: "eu-central-1",
    8: "ap-southeast-1",
    9: "ap-southeast-2",
    10: "ap-northeast-1",
    11: "ap-northeast-2",
    12: "sa-east-1",
    13: "ca-central-1",
    14: "ap-south-1",
    15: "cn-north-1",
    16: "cn-northwest-1",
    18: "af-south-1",
    19: "ap-east-1",
    20: "ap-northeast-3",
    21: "eu-north-1",
    22: "me-south-1",
    23: "us-gov-east-1",
    24: "ap-southeast-3",
    25: "eu-south-1",
}


def s3_region_name(vendor: int, region: int) -> str:
    """The AWS region name of a vendor-1 region code; S3-compatible vendors: us-east-1."""
    if vendor == VENDOR_S3:
        return S3_REGIONS.get(region, "us-east-1")
    return "us-east-1"
