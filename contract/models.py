"""The Cloud Recording REST models: request and response bodies, written once.

Everything that crosses the wire between the worker's client and the recording service (the real
one or the emulator) is modelled here, and nowhere else: the worker's client builds its request
bodies from these models, the job spec embeds them, and the emulator validates incoming bodies
with them. Field names are the JSON keys exactly as the API spells them (camelCase at the top,
snake_case inside ``layoutConfig`` / ``backgroundConfig``), so ``model_dump()`` is the wire form.

Links in comments point at docs/service/, the service's behaviour in cloudrec's words.

Size: over 400 lines on purpose: one model per request and response object of six endpoints,
each field with its range and default as the service documents it. Split by endpoint, the
shared pieces (uid lists, layout regions, storage) would be imported back and forth.

Rules of the module:

* Request models forbid unknown fields, like the real service, which answers ``400 code 2`` on a
  misspelled or wrong-case field (docs/service/errors.md#codes). The one exception is the
  unsubscribe lists, which accept both ``unsubscribe*Uids`` and ``unSubscribe*Uids`` and serialize
  as ``unSubscribe*Uids`` (docs/service/api-contract.md#recordingconfig DISCREPANCY; the Go and Java
  clients use that spelling).
* Never stricter than the real service: what Agora's own REST clients send for a value nobody
  set is accepted and means "not given". ``null`` is the field left out (its default applies;
  a required field is then missing); an empty string or an empty list in an optional field is
  the same (``"token": ""`` is no token, as a channel without an App Certificate needs; the Go
  client always sends ``layoutConfig[].uid`` and ``extensionParams.sse``/``tag``, empty when
  unset). Rules the spec leaves as advice (``layoutConfig`` with a built-in layout, lists of a
  kind ``streamTypes`` does not record, ``stsToken`` with another vendor) accept the value and
  it has no effect. What docs/service/api-contract.md#validation lists stays refused with
  ``400 code 2`` naming the field.
* Numbers in requests are strict (a JSON ``"30"`` is a wrong type, not 30), ranges are checked,
  and cross-field rules raise with a message that states the rule.
* Response models are tolerant: unknown keys are ignored, and the old shapes (``filename``,
  string-typed booleans and numbers, ``"status": "5"``) parse
  (docs/service/api-contract.md#file-lists DISCREPANCIES).
* Secrets (storage keys, STS token, RTC token, decryption secret) are ``SecretStr``: hidden in
  ``repr``/``str``/``model_dump``/``model_dump_json``. Only :func:`to_wire` reveals them.
* :func:`describe_validation_error` turns a ``ValidationError`` into the one-line reason used
  both by the emulator's ``400 code 2`` bodies and by the worker's job-submit errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from contract.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_AUDIO_PROFILE,
    DEFAULT_BACKGROUND_COLOR,
    DEFAULT_BITRATE_KBPS,
    DEFAULT_FILE_TYPES,
    DEFAULT_FPS,
    DEFAULT_HEIGHT,
    DEFAULT_LAYOUT,
    DEFAULT_RENDER_MODE,
    DEFAULT_STREAM_TYPES,
    DEFAULT_WIDTH,
    SUPPORTED_FPS,
)

__all__ = [
    "ALL_STREAMS",
    "MAX_PREFIX_CHARS",
    "UID_MAX",
    "AcquireClientRequest",
    "AcquireResponse",
    "ApiRequest",
    "AudioUidList",
    "Between",
    "ChannelName",
    "ErrorBody",
    "FileEntry",
    "LayoutRegion",
    "LayoutUpdate",
    "PrefixPart",
    "QueryResponse",
    "QueryServerResponse",
    "RecordingConfig",
    "RecordingFileConfig",
    "StartClientRequest",
    "StartResponse",
    "StopClientRequest",
    "StopResponse",
    "StopServerResponse",
    "StorageConfig",
    "StorageExtension",
    "StreamSubscribe",
    "TranscodingConfig",
    "UidStr",
    "UpdateClientRequest",
    "UpdateResponse",
    "UserBackground",
    "VideoUidList",
    "channel_name_problem",
    "describe_validation_error",
    "file_names",
    "to_wire",
    "uid_problem",
]

UID_MAX = 2**32 - 1
# docs/service/api-contract.md#recordingconfig: ["#allstream#"] subscribes to every uid
ALL_STREAMS = "#allstream#"
# docs/service/api-contract.md#recordingconfig, docs/service/api-contract.md#update
MAX_SUBSCRIBE_UIDS = 32
MAX_LAYOUT_REGIONS = 17  # docs/service/api-contract.md#transcodingconfig
MAX_PIXELS = 1920 * 1080  # docs/service/api-contract.md#transcodingconfig
# docs/service/api-contract.md#storageconfig (current docs only: no Qiniu 0 / Kingsoft 4)
VENDORS = (1, 2, 3, 5, 6, 7, 8, 11)
VENDOR_S3_COMPATIBLE = 11
# docs/service/api-contract.md#storageconfig: stsToken only for S3, Alibaba, Tencent
STS_VENDORS = frozenset({1, 2, 3})
# docs/service/api-contract.md#storageconfig region tables, per vendor. S3 has no 17 (23 is in the
# 2021 release notes; kept).
VENDOR_REGIONS: dict[int, frozenset[int]] = {
    1: frozenset(set(range(0, 26)) - {17}),
    2: frozenset(range(0, 28)),
    3: frozenset(range(0, 20)),
    5: frozenset({0}),
    6: frozenset({0}),
    7: frozenset(range(0, 16)),
    8: frozenset(range(1, 8)),
    11: frozenset({0}),
}
MAX_PREFIX_CHARS = 128  # docs/service/api-contract.md#storageconfig
# docs/service/api-contract.md#acquire, docs/service/errors.md#codes legacy 1013: under 64 bytes,
# from this character set.
_CNAME_RE = re.compile(r"[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{}|~,]+")
CNAME_MAX_BYTES = 63
_PREFIX_RE = re.compile(r"[A-Za-z0-9]+")
_COLOR_RE = re.compile(r"#[0-9A-Fa-f]{6}")
_SECRET_MASK = "**********"
_REVEAL = "reveal_secrets"
# Field names whose input must never be echoed in an error message.
_SENSITIVE = frozenset({"token", "secret", "salt", "accessKey", "secretKey", "stsToken"})


# --------------------------------------------------------------------------------------------
# Rule helpers
# --------------------------------------------------------------------------------------------


def _rule_error(message: str, field: str | None = None) -> PydanticCustomError:
    """A validation error whose message states the rule.

    ``field`` names the offending key when the check runs at model level (where pydantic's
    location stops at the model); :func:`describe_validation_error` appends it to the path.
    """
    ctx: dict[str, Any] = {"rule": message}
    if field is not None:
        ctx["field"] = field
    return PydanticCustomError("cloudrec_rule", "{rule}", ctx)


def _fmt(value: object) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        text = json.dumps(value)
    else:
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Between:
    """Inclusive numeric range, reported as ``must be between LO and HI (got X)``."""

    lo: int | float
    hi: int | float

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value = handler(schema)
        value.update(minimum=self.lo, maximum=self.hi)
        return value

    def _check(self, value: Any) -> Any:
        if not self.lo <= value <= self.hi:
            raise PydanticCustomError(
                "cloudrec_range",
                "must be between {lo} and {hi} (got {got})",
                {"lo": self.lo, "hi": self.hi, "got": value},
            )
        return value


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a valid uid string (2: decimal integer in 1..2^32-1), or None."""
    if not re.fullmatch(r"[0-9]{1,10}", value) or not 1 <= int(value) <= UID_MAX:
        return f"must be a decimal integer string in 1..{UID_MAX} (got {_fmt(value)})"
    return None


def channel_name_problem(value: str) -> str | None:
    """Why ``value`` is not a valid channel name (2, legacy 1013), or None."""
    if not value:
        return "must not be empty"
    if len(value.encode()) > CNAME_MAX_BYTES:
        return f"must be under 64 bytes (got {len(value.encode())})"
    if not _CNAME_RE.fullmatch(value):
        return (
            "may contain only a-z A-Z 0-9 space and ! # $ % & ( ) + - : ; < = . > ? @ [ ] ^ _ "
            f"{{ }} | ~ , (got {_fmt(value)})"
        )
    return None


def _check_uid(value: str) -> str:
    problem = uid_problem(value)
    if problem:
        raise _rule_error(problem)
    return value


def _check_cname(value: str) -> str:
    problem = channel_name_problem(value)
    if problem:
        raise _rule_error(problem)
    return value


def _check_subscribe_entry(value: str) -> str:
    if value == ALL_STREAMS:
        return value
    problem = uid_problem(value)
    if problem:
        raise _rule_error(f"must be {ALL_STREAMS!r} or a uid: {problem}")
    return value


def _check_non_empty(value: str) -> str:
    if not value:
        raise _rule_error("must not be empty")
    return value


def _check_non_empty_secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value():
        raise _rule_error("must not be empty")
    return value


def _check_color(value: str) -> str:
    if not _COLOR_RE.fullmatch(value):
        raise _rule_error(
            f"must be '#' followed by 6 hex digits, e.g. '#FF0000' (got {_fmt(value)})"
        )
    return value


def _check_prefix_part(value: str) -> str:
    if not _PREFIX_RE.fullmatch(value):
        raise _rule_error(
            f"may contain only a-z, A-Z and 0-9, and not be empty (got {_fmt(value)})"
        )
    return value


def _serialize_secret(value: SecretStr, info: SerializationInfo) -> str:
    # Only to_wire() passes the reveal flag; every other dump keeps the mask.
    if isinstance(info.context, dict) and info.context.get(_REVEAL):
        return value.get_secret_value()
    return _SECRET_MASK


class _Check:
    """``Annotated`` metadata running a plain ``str -> str`` check after the type validation.

    ``schema`` documents the rule in the JSON schema (the emulator's OpenAPI description);
    the check itself stays the authority.
    """

    def __init__(self, func: Any, **schema: Any) -> None:
        self.func = func
        self.schema = schema

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.func, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value = handler(schema)
        value.update(self.schema)
        return value


_UID_SCHEMA = {"pattern": "^[0-9]{1,10}$", "description": f"a decimal integer in 1..{UID_MAX}"}
UidStr = Annotated[str, _Check(_check_uid, **_UID_SCHEMA)]
ChannelName = Annotated[
    str,
    _Check(
        _check_cname,
        pattern=f"^{_CNAME_RE.pattern}$",
        maxLength=CNAME_MAX_BYTES,
        description="under 64 bytes",
    ),
]
SubscribeUid = Annotated[
    str, _Check(_check_subscribe_entry, pattern=f"^([0-9]{{1,10}}|{ALL_STREAMS})$")
]
UidList = Annotated[list[SubscribeUid], Field(max_length=MAX_SUBSCRIBE_UIDS)]
NonEmptyStr = Annotated[str, _Check(_check_non_empty, minLength=1)]
Color = Annotated[str, _Check(_check_color, pattern=f"^{_COLOR_RE.pattern}$")]
PrefixPart = Annotated[str, _Check(_check_prefix_part, pattern=f"^{_PREFIX_RE.pattern}$")]
Secret = Annotated[
    SecretStr,
    _Check(_check_non_empty_secret, minLength=1),
    PlainSerializer(_serialize_secret, return_type=str),
]
# docs/service/api-contract.md#transcodingconfig: floats in [0,1]; 0 and 1 as ints too
Fraction = Annotated[StrictFloat, Between(0, 1)]
RenderMode = Annotated[StrictInt, Between(0, 1)]  # 0 crop, 1 fit


class _Request(BaseModel):
    """Base of request models: unknown keys are errors, as in the real service
    (docs/service/errors.md#codes code 2).

    A ``null`` value is the key left out, and so is ``""`` or ``[]`` in a field named in
    ``blank_means_absent`` (wire names, both spellings): that is what real clients send for a
    value nobody set (Go's non-omitempty fields, Python's ``to_dict``), and the real service
    takes them as not given.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        json_schema_extra=lambda schema, cls: _describe_absent_values(schema, cls),
    )
    blank_means_absent: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if value is not None and not (key in cls.blank_means_absent and _is_blank(value))
        }


_NULL_SCHEMA: dict[str, Any] = {"type": "null"}
_BLANK_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string", "maxLength": 0},
    "array": {"type": "array", "maxItems": 0},
    "object": {"type": "object", "maxProperties": 0},
}


def _describe_absent_values(schema: dict[str, Any], cls: Any) -> None:
    """The JSON schema (the emulator's OpenAPI) says what validation does: every optional
    property may be ``null``, and those in ``blank_means_absent`` also ``""`` / ``[]`` / ``{}``
    (a required one sent as ``null`` is missing)."""
    blank: frozenset[str] = getattr(cls, "blank_means_absent", frozenset())
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required:
            continue
        options = list(prop["anyOf"]) if "anyOf" in prop else [prop]
        if name in blank:
            options += [_BLANK_SCHEMAS["string"], _BLANK_SCHEMAS["array"], _BLANK_SCHEMAS["object"]]
        if _NULL_SCHEMA not in options:
            options.append(_NULL_SCHEMA)
        if len(options) > 1:
            keep = {k: v for k, v in prop.items() if k in ("title", "description", "default")}
            schema["properties"][name] = {**keep, "anyOf": options}


def _is_blank(value: Any) -> bool:
    if isinstance(value, SecretStr):  # a model built in code: the same rule as on the wire
        return not value.get_secret_value()
    return (isinstance(value, str | list) and len(value) == 0) or value == {}


class _Response(BaseModel):
    """Base of response models: tolerant of extra keys and old value types
    (docs/service/api-contract.md#file-lists)."""

    model_config = ConfigDict(
        extra="ignore", coerce_numbers_to_str=True, validate_by_name=True, validate_by_alias=True
    )


def _reject_both_spellings(data: Any, kinds: Sequence[str]) -> Any:
    """docs/service/api-contract.md#recordingconfig: accept ``unsubscribe*`` or ``unSubscribe*``,
    but not both in one object (a ``null`` or empty one is not given)."""
    if isinstance(data, dict):
        for kind in kinds:
            spellings = (f"unsubscribe{kind}Uids", f"unSubscribe{kind}Uids")
            if all(data.get(key) not in (None, []) for key in spellings):
                raise _rule_error(
                    f"send only one of unSubscribe{kind}Uids / unsubscribe{kind}Uids "
                    "(two spellings of the same field)",
                    f"unSubscribe{kind}Uids",
                )
    return data


def _unsubscribe_field(kind: str) -> Any:
    return Field(
        default=None,
        validation_alias=AliasChoices(f"unSubscribe{kind}Uids", f"unsubscribe{kind}Uids"),
    )


# --------------------------------------------------------------------------------------------
# transcodingConfig (docs/service/api-contract.md#transcodingconfig) and updateLayout
# (docs/service/api-contract.md#updatelayout)
# --------------------------------------------------------------------------------------------


class LayoutRegion(_Request):
    """One ``layoutConfig`` entry (docs/service/api-contract.md#transcodingconfig): a region of the
    canvas, as fractions of its size."""

    # The Go client always sends uid; "" is an entry filled in join order.
    blank_means_absent = frozenset({"uid"})

    uid: UidStr | None = None  # omitted: regions are filled in join order
    x_axis: Fraction
    y_axis: Fraction
    width: Fraction
    height: Fraction
    alpha: Fraction = DEFAULT_ALPHA
    render_mode: RenderMode = DEFAULT_RENDER_MODE


class UserBackground(_Request):
    """One ``backgroundConfig`` entry (docs/service/api-contract.md#transcodingconfig): the image
    shown in a user's region."""

    uid: UidStr
    image_url: NonEmptyStr
    render_mode: RenderMode = DEFAULT_RENDER_MODE


class _LayoutFields(_Request):
    """The layout subset shared by transcodingConfig
    (docs/service/api-contract.md#transcodingconfig) and updateLayout
    (docs/service/api-contract.md#updatelayout).

    ``layoutConfig`` is only used with layout 3 (docs/service/api-contract.md#transcodingconfig):
    with a built-in layout it is accepted and has no effect; layout 3 without regions shows the
    background."""

    blank_means_absent = frozenset(
        {
            "maxResolutionUid",
            "backgroundColor",
            "backgroundImage",
            "defaultUserBackgroundImage",
            "layoutConfig",
            "backgroundConfig",
        }
    )

    # 0 floating, 1 best fit, 2 vertical, 3 custom (layoutConfig)
    mixedVideoLayout: Annotated[StrictInt, Between(0, 3)] = DEFAULT_LAYOUT
    maxResolutionUid: UidStr | None = None  # layout 2: the large region
    backgroundColor: Color = DEFAULT_BACKGROUND_COLOR
    backgroundImage: NonEmptyStr | None = None
    defaultUserBackgroundImage: NonEmptyStr | None = None
    layoutConfig: Annotated[list[LayoutRegion], Field(max_length=MAX_LAYOUT_REGIONS)] | None = None
    backgroundConfig: list[UserBackground] | None = None


class TranscodingConfig(_LayoutFields):
    """``recordingConfig.transcodingConfig`` (docs/service/api-contract.md#transcodingconfig): the
    composite canvas and its layout."""

    width: Annotated[StrictInt, Between(1, 1920)] = DEFAULT_WIDTH
    height: Annotated[StrictInt, Between(1, 1920)] = DEFAULT_HEIGHT
    fps: StrictInt = DEFAULT_FPS
    bitrate: Annotated[StrictInt, Between(1, 6500)] = (
        DEFAULT_BITRATE_KBPS  # kbps; > 6500 is an error
    )

    @field_validator("fps")
    @classmethod
    def _supported_fps(cls, value: int) -> int:
        # docs/service/api-contract.md#transcodingconfig: unsupported values are accepted and
        # silently replaced by 15.
        return value if value in SUPPORTED_FPS else DEFAULT_FPS

    @model_validator(mode="after")
    def _pixel_budget(self) -> TranscodingConfig:
        pixels = self.width * self.height
        if pixels > MAX_PIXELS:
            raise _rule_error(
                f"width x height must be at most 1920x1080 = {MAX_PIXELS} pixels "
                f"(got {self.width}x{self.height} = {pixels})",
                "width",
            )
        return self


class LayoutUpdate(_LayoutFields):
    """The updateLayout ``clientRequest`` (6). Each call replaces the whole layout: omitted
    fields take their defaults, so always send the complete desired layout."""


# --------------------------------------------------------------------------------------------
# docs/service/api-contract.md#recordingconfig recordingConfig,
# docs/service/api-contract.md#recordingfileconfig recordingFileConfig,
# docs/service/api-contract.md#storageconfig storageConfig
# --------------------------------------------------------------------------------------------


class RecordingConfig(_Request):
    """``clientRequest.recordingConfig`` for composite mode
    (docs/service/api-contract.md#recordingconfig).

    A subscription list of a kind ``streamTypes`` does not record is accepted and has no
    effect (docs/service/api-contract.md#recordingconfig: the lists are "only valid" with those
    stream types)."""

    blank_means_absent = frozenset(
        {
            "secret",
            "salt",
            "subscribeAudioUids",
            "unSubscribeAudioUids",
            "unsubscribeAudioUids",
            "subscribeVideoUids",
            "unSubscribeVideoUids",
            "unsubscribeVideoUids",
            "streamMode",
            "transcodingConfig",
            "privateParams",
        }
    )

    channelType: Annotated[StrictInt, Between(0, 1)] = 0  # 0 communication, 1 live broadcast
    streamTypes: Annotated[StrictInt, Between(0, 2)] = (
        DEFAULT_STREAM_TYPES  # 0 audio, 1 video, 2 both
    )
    decryptionMode: Annotated[StrictInt, Between(0, 8)] = 0
    secret: Secret | None = None  # required when decryptionMode != 0
    salt: Secret | None = None  # base64 of 32 bytes; required with decryptionMode 7 or 8
    # seconds (docs/service/behaviour.md#maxidletime)
    maxIdleTime: Annotated[StrictInt, Between(5, 2_592_000)] = 30
    videoStreamType: Annotated[StrictInt, Between(0, 1)] = 0  # 0 high, 1 low stream
    subscribeAudioUids: UidList | None = None
    unSubscribeAudioUids: UidList | None = _unsubscribe_field("Audio")
    subscribeVideoUids: UidList | None = None
    unSubscribeVideoUids: UidList | None = _unsubscribe_field("Video")
    subscribeUidGroup: Annotated[StrictInt, Between(0, 5)] | None = None  # individual mode only
    streamMode: Literal["default", "standard", "original"] | None = None  # individual mode only
    audioProfile: Annotated[StrictInt, Between(0, 2)] = DEFAULT_AUDIO_PROFILE  # composite only
    transcodingConfig: TranscodingConfig | None = None  # composite only
    privateParams: str | None = None  # a JSON string, e.g. "{\"correctEXTINF\":true}"

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        return _reject_both_spellings(data, ("Audio", "Video"))

    @field_validator("salt")
    @classmethod
    def _salt_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                raw = base64.b64decode(value.get_secret_value(), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise _rule_error("must be the Base64 encoding of 32 bytes")
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> RecordingConfig:
        if self.decryptionMode != 0 and self.secret is None:
            raise _rule_error("is required when decryptionMode is not 0", "secret")
        if self.decryptionMode in (7, 8) and self.salt is None:
            raise _rule_error("is required when decryptionMode is 7 or 8", "salt")
        for kind, sub, unsub in (
            ("Audio", self.subscribeAudioUids, self.unSubscribeAudioUids),
            ("Video", self.subscribeVideoUids, self.unSubscribeVideoUids),
        ):
            if sub is not None and unsub is not None:
                raise _rule_error(
                    f"subscribe{kind}Uids and unSubscribe{kind}Uids are mutually exclusive",
                    f"unSubscribe{kind}Uids",
                )
        return self


FileType = Literal["hls", "mp4"]


def _default_file_types() -> list[FileType]:
    return list(DEFAULT_FILE_TYPES)


class RecordingFileConfig(_Request):
    """``clientRequest.recordingFileConfig`` (docs/service/api-contract.md#recordingfileconfig).
    ``["hls"]``: M3U8 + TS; ``["hls","mp4"]``: also MP4. ``["mp4"]`` alone is an error in mix
    mode."""

    # The Go client sends null when unset; [] is no choice either: the default applies.
    blank_means_absent = frozenset({"avFileType"})

    avFileType: list[FileType] = Field(default_factory=_default_file_types)

    @field_validator("avFileType")
    @classmethod
    def _hls_required(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise _rule_error(f"must not repeat a file type (got {value})")
        if "hls" not in value:
            raise _rule_error(f'must include "hls": ["hls"] or ["hls", "mp4"] (got {value})')
        return value


class StorageExtension(_Request):
    """``storageConfig.extensionParams`` (docs/service/api-contract.md#storageconfig). The Go client
    always sends ``sse`` and ``tag``, empty when unset."""

    blank_means_absent = frozenset({"sse", "tag", "endpoint"})

    sse: Literal["kms", "aes256"] | None = None  # S3 server-side encryption
    tag: str | None = None  # Alibaba and S3 object tag
    endpoint: NonEmptyStr | None = None  # host name; required with vendor 11


class StorageConfig(_Request):
    """``clientRequest.storageConfig`` (docs/service/api-contract.md#storageconfig): where the
    service uploads the files.

    ``stsToken`` is only used with vendors 1, 2 and 3; with another vendor it has no effect."""

    blank_means_absent = frozenset({"stsToken", "fileNamePrefix", "extensionParams"})

    vendor: StrictInt
    region: Annotated[StrictInt, Between(0, 1_000)]
    bucket: NonEmptyStr
    accessKey: NonEmptyStr
    secretKey: Secret
    stsToken: Secret | None = None
    stsExpiration: Annotated[StrictInt, Between(0, 2**64 - 1)] | None = None  # Unix seconds
    fileNamePrefix: list[PrefixPart] | None = None
    extensionParams: StorageExtension | None = None

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, value: int) -> int:
        if value not in VENDORS:
            raise _rule_error(f"must be one of {', '.join(map(str, VENDORS))} (got {value})")
        return value

    @field_validator("fileNamePrefix")
    @classmethod
    def _prefix_length(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len("/".join(value)) > MAX_PREFIX_CHARS:
            raise _rule_error(
                f"must be at most {MAX_PREFIX_CHARS} characters joined with '/' "
                f"(got {len('/'.join(value))})"
            )
        return value

    @model_validator(mode="after")
    def _vendor_rules(self) -> StorageConfig:
        regions = VENDOR_REGIONS[self.vendor]
        if self.region not in regions:
            raise _rule_error(
                f"is not a region of vendor {self.vendor} "
                f"(valid: {_ranges(sorted(regions))}; got {self.region})",
                "region",
            )
        if self.vendor == VENDOR_S3_COMPATIBLE and (
            self.extensionParams is None or self.extensionParams.endpoint is None
        ):
            raise _rule_error(
                "extensionParams.endpoint is required with vendor 11", "extensionParams"
            )
        return self

    def object_key(self, file_name: str) -> str:
        """The object key of ``file_name`` in the bucket: the prefix joined with ``/``."""
        return "/".join([*(self.fileNamePrefix or []), file_name])


def _ranges(values: Sequence[int]) -> str:
    """``[0,1,2,5]`` -> ``"0-2, 5"``."""
    parts: list[str] = []
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# clientRequest of each operation (2, 3, 5, 6, 7)
# --------------------------------------------------------------------------------------------


class AcquireClientRequest(_Request):
    """acquire ``clientRequest`` (2). It may be ``{}``."""

    blank_means_absent = frozenset({"excludeResourceIds", "region", "startParameter"})

    scene: Annotated[StrictInt, Between(0, 2)] = 0  # 0 = real-time recording (mix)
    resourceExpiredHour: Annotated[StrictInt, Between(1, 720)] = 72
    excludeResourceIds: list[str] | None = None
    region: Literal["CN", "AP", "EU", "NA"] | None = None
    regionAffinity: Annotated[StrictInt, Between(0, 4)] | None = None
    # The start clientRequest as a hint. Deliberately not validated here: an invalid value
    # does not fail acquire, only the later start (2).
    startParameter: dict[str, Any] | None = None


class StartClientRequest(_Request):
    """start ``clientRequest`` in mix mode (docs/service/api-contract.md#start).

    ``token`` absent, ``null`` or ``""`` is no token: the channel has no App Certificate (the
    official clients send ``""`` then). ``recordingConfig`` and ``recordingFileConfig`` left
    out take every default (the Python client sends no recordingConfig unless given one).
    ``snapshotConfig`` and ``extensionServiceConfig`` belong to the other modes
    (docs/service/api-contract.md#start): accepted, no effect in mix."""

    blank_means_absent = frozenset(
        {
            "token",
            "recordingConfig",
            "recordingFileConfig",
            "snapshotConfig",
            "extensionServiceConfig",
        }
    )

    token: Secret | None = None  # the recorder's RTC token; cannot be renewed
    recordingConfig: RecordingConfig = Field(default_factory=lambda: RecordingConfig())
    recordingFileConfig: RecordingFileConfig = Field(default_factory=lambda: RecordingFileConfig())
    storageConfig: StorageConfig
    snapshotConfig: dict[str, Any] | None = None  # individual mode only
    extensionServiceConfig: dict[str, Any] | None = None  # web mode only


class AudioUidList(_Request):
    """``streamSubscribe.audioUidList`` (5): one of the two lists (neither: no change)."""

    blank_means_absent = frozenset(
        {"subscribeAudioUids", "unSubscribeAudioUids", "unsubscribeAudioUids"}
    )

    subscribeAudioUids: UidList | None = None
    unSubscribeAudioUids: UidList | None = _unsubscribe_field("Audio")

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        return _reject_both_spellings(data, ("Audio",))

    @model_validator(mode="after")
    def _one_list(self) -> AudioUidList:
        _at_most_one_list(self.subscribeAudioUids, self.unSubscribeAudioUids, "Audio")
        return self

    @property
    def given(self) -> bool:
        """Whether a list was sent (an update without one leaves audio as it is)."""
        return self.subscribeAudioUids is not None or self.unSubscribeAudioUids is not None


class VideoUidList(_Request):
    """``streamSubscribe.videoUidList`` (5): one of the two lists (neither: no change)."""

    blank_means_absent = frozenset(
        {"subscribeVideoUids", "unSubscribeVideoUids", "unsubscribeVideoUids"}
    )

    subscribeVideoUids: UidList | None = None
    unSubscribeVideoUids: UidList | None = _unsubscribe_field("Video")

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        return _reject_both_spellings(data, ("Video",))

    @model_validator(mode="after")
    def _one_list(self) -> VideoUidList:
        _at_most_one_list(self.subscribeVideoUids, self.unSubscribeVideoUids, "Video")
        return self

    @property
    def given(self) -> bool:
        """Whether a list was sent (an update without one leaves video as it is)."""
        return self.subscribeVideoUids is not None or self.unSubscribeVideoUids is not None


def _at_most_one_list(sub: list[str] | None, unsub: list[str] | None, kind: str) -> None:
    if sub is not None and unsub is not None:
        raise _rule_error(
            f"subscribe{kind}Uids and unSubscribe{kind}Uids are mutually exclusive",
            f"unSubscribe{kind}Uids",
        )


class StreamSubscribe(_Request):
    """update ``clientRequest.streamSubscribe`` (5). A list of a kind the recording's
    streamTypes does not record is accepted and has no effect ("only applies" with those)."""

    blank_means_absent = frozenset({"audioUidList", "videoUidList"})

    audioUidList: AudioUidList | None = None  # only with streamTypes 0 or 2
    videoUidList: VideoUidList | None = None  # only with streamTypes 1 or 2


class UpdateClientRequest(_Request):
    """update ``clientRequest`` (5): new subscription lists and/or a refreshed storageConfig.
    ``webRecordingConfig`` and ``rtmpPublishConfig`` belong to web mode (5): accepted, no effect
    in mix."""

    blank_means_absent = frozenset(
        {"streamSubscribe", "storageConfig", "webRecordingConfig", "rtmpPublishConfig"}
    )

    streamSubscribe: StreamSubscribe | None = None
    storageConfig: StorageConfig | None = None
    webRecordingConfig: dict[str, Any] | None = None  # web mode only
    rtmpPublishConfig: dict[str, Any] | None = None  # web mode only


class StopClientRequest(_Request):
    """stop ``clientRequest`` (7). May be ``{}``."""

    async_stop: StrictBool = False


ClientRequestT = TypeVar("ClientRequestT")


class ApiRequest(_Request, Generic[ClientRequestT]):
    """The POST envelope of every operation (docs/service/api-contract.md#endpoints).

    ``ApiRequest[StartClientRequest].model_validate(body)`` validates a whole start body, and
    error locations come out as the API's JSON path (``clientRequest.recordingConfig...``).
    Unparameterized, ``clientRequest`` is whatever it is given (a dict or a model).
    """

    cname: ChannelName
    uid: UidStr
    clientRequest: ClientRequestT


# --------------------------------------------------------------------------------------------
# Responses (docs/service/api-contract.md#acquire, docs/service/api-contract.md#start-answers,
# docs/service/api-contract.md#file-lists, docs/service/api-contract.md#update,
# docs/service/api-contract.md#updatelayout, docs/service/api-contract.md#stop,
# docs/service/errors.md#body-shapes): tolerant
# --------------------------------------------------------------------------------------------


class AcquireResponse(_Response):
    """acquire 200 (2). Older docs showed only ``resourceId``."""

    cname: str | None = None
    uid: str | None = None
    resourceId: str


class StartResponse(_Response):
    """start 200 (docs/service/api-contract.md#start-answers)."""

    cname: str
    uid: str
    resourceId: str
    sid: str


class UpdateResponse(_Response):
    """update / updateLayout 200 (5, 6). The Go client reads only resourceId and sid."""

    cname: str | None = None
    uid: str | None = None
    resourceId: str | None = None
    sid: str | None = None


class FileEntry(_Response):
    """One element of a ``fileList`` array (docs/service/api-contract.md#file-lists). Accepts
    ``filename`` and string-typed values."""

    fileName: str = Field(validation_alias=AliasChoices("fileName", "filename"))
    trackType: str | None = None  # "audio" | "video" | "audio_and_video"
    uid: str | None = None  # "0" in composite mode
    mixedAllUser: bool | None = None
    isPlayable: bool | None = None
    sliceStartTime: int | None = None  # documented as seconds; every example is Unix ms


FileList = str | list[FileEntry] | None


class QueryServerResponse(_Response):
    """query ``serverResponse`` (docs/service/api-contract.md#status-values,
    docs/service/api-contract.md#file-lists)."""

    status: int
    fileListMode: str | None = None  # "string" with ["hls"], "json" with ["hls","mp4"]
    fileList: FileList = None
    sliceStartTime: int | None = None  # recording start, Unix ms


class QueryResponse(_Response):
    cname: str | None = None
    uid: str | None = None
    resourceId: str | None = None
    sid: str | None = None
    serverResponse: QueryServerResponse


class StopServerResponse(_Response):
    """stop ``serverResponse`` (7)."""

    fileListMode: str | None = None
    fileList: FileList = None
    uploadingStatus: str | None = None  # "uploaded" | "backuped" | "unknown"


class StopResponse(_Response):
    """stop 200 (7). ``serverResponse`` is sometimes missing in the wild (13)."""

    cname: str | None = None
    uid: str | None = None
    resourceId: str | None = None
    sid: str | None = None
    serverResponse: StopServerResponse | None = None


class ErrorBody(_Response):
    """An error body (docs/service/errors.md#body-shapes): service-level ``{code, reason}`` or
    gateway-level ``{message}``."""

    code: int | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def is_gateway(self) -> bool:
        """True for gateway errors (no ``code``: 401, 404 no route, 429)."""
        return self.code is None


def file_names(file_list: str | Sequence[FileEntry] | None) -> list[str]:
    """The file names of either ``fileList`` form (docs/service/api-contract.md#file-lists): a
    single M3U8 name or an array."""
    if file_list is None:
        return []
    if isinstance(file_list, str):
        return [file_list] if file_list else []
    return [entry.fileName for entry in file_list]


# --------------------------------------------------------------------------------------------
# Wire form and error messages
# --------------------------------------------------------------------------------------------


def to_wire(model: BaseModel) -> dict[str, Any]:
    """The JSON body for ``model``: by alias, without ``None`` fields, secrets revealed.

    This is the only place secrets are revealed; use it only for the HTTP request body.
    """
    result: dict[str, Any] = model.model_dump(
        mode="json", by_alias=True, exclude_none=True, context={_REVEAL: True}
    )
    return result


_TYPE_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field (field names are case-sensitive)",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "json_invalid": "is not valid JSON",
}
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|dict|list)$|[\[(]")


def _path(loc: Sequence[int | str], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _UNION_TAG.search(part):  # pydantic's union-member tags are not JSON keys
            continue
        else:
            out = f"{out}.{part}" if out else part
    return out


def _describe_one(err: Any, prefix: str) -> str:
    loc: list[int | str] = list(err.get("loc", ()))
    ctx: dict[str, Any] = err.get("ctx") or {}
    kind: str = err["type"]
    if kind.startswith("cloudrec_"):
        if "field" in ctx:
            loc.append(ctx["field"])
        message = str(err["msg"])
        with_input = False
    elif kind == "too_long":
        message = (
            f"must have at most {ctx.get('max_length')} entries (got {ctx.get('actual_length')})"
        )
        with_input = False
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} entries"
        with_input = False
    elif kind == "literal_error":
        message = f"must be {ctx.get('expected')}"
        with_input = True
    elif kind in _TYPE_MESSAGES:
        message = _TYPE_MESSAGES[kind]
        with_input = kind not in ("missing", "json_invalid")
    else:
        message = (
            str(err["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
        )
        message = message[:1].lower() + message[1:]
        with_input = False
    sensitive = any(isinstance(part, str) and part in _SENSITIVE for part in loc)
    if with_input and not sensitive:
        message += f" (got {_fmt(err.get('input'))})"
    return f"{_path(loc, prefix) or 'body'}: {message}"


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One human message for every error in ``exc``, joined with ``"; "``.

    Each part names the field by the API's dotted JSON path (``prefix`` is prepended, e.g.
    ``"clientRequest"`` when validating a bare clientRequest) and states the rule, e.g.
    ``clientRequest.recordingConfig.maxIdleTime: must be between 5 and 2592000 (got 3)``.
    Secret inputs are never echoed.
    """
    parts = [_describe_one(err, prefix) for err in exc.errors(include_url=False)]
    return "; ".join(dict.fromkeys(parts))  # keep order, drop exact repeats
