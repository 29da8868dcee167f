"""Settings of the emulator service (one object, built at the edge and passed down)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmulatorApp:
    """One App ID the emulator serves with its own customer credentials and its own QPS limit
    (``cloudrec emulator --app APPID:CUSTOMER_ID:SECRET[:QPS]``)."""

    app_id: str
    customer_id: str
    customer_secret: str
    qps: int = 10  # 0 = unlimited

    @classmethod
    def parse(cls, text: str) -> EmulatorApp:
        """``APPID:CUSTOMER_ID:SECRET[:QPS]``; ValueError naming the rule (never the secret)."""
        parts = text.split(":")
        qps = parts.pop() if len(parts) == 4 else "10"
        if len(parts) != 3 or not all(parts) or not qps.isdigit():
            raise ValueError(
                "--app: must be APPID:CUSTOMER_ID:SECRET[:QPS] (three non-empty parts without "
                "':', then optionally requests per second, 0 = unlimited)"
            )
        return cls(app_id=parts[0], customer_id=parts[1], customer_secret=parts[2], qps=int(qps))


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator listens, authenticates, paces recordings, stores files and notifies.

    Durations are in seconds. The defaults mirror the real service where it documents a value
    (5-minute resource TTL, 10 requests/s, 15 s slices, 20 s synchronous stop); tests shrink
    them.
    """

    host: str = "127.0.0.1"
    port: int = 8700  # 0: pick a free port (tests)
    storage_dir: Path = Path("recordings")  # local back-end: <storage_dir>/<bucket>/<key>
    customer_id: str = "demo"
    customer_secret: str = "demo-secret"
    app_ids: frozenset[str] = frozenset()  # empty: any non-empty app id is accepted
    # REST requests per second per app id; 0 = unlimited (docs/service/api-contract.md#limits)
    qps: int = 10
    # App IDs with their own credentials and limit. Any other App ID is served (if app_ids
    # allows it) with customer_id/customer_secret and qps above, as with one app.
    apps: tuple[EmulatorApp, ...] = ()
    # status 0 -> 5 after start (docs/service/api-contract.md#status-values)
    startup_seconds: float = 2.0
    # a resourceId must be used within this (docs/service/api-contract.md#acquire)
    resource_ttl_seconds: float = 300.0
    hour_seconds: float = 3600.0  # length of an "hour" of resourceExpiredHour (tests shrink it)
    # Length of one second of maxIdleTime (docs/service/behaviour.md#maxidletime). maxIdleTime
    # cannot go under 5, so tests shrink the unit instead of the value.
    idle_second: float = 1.0
    slice_seconds: float = 15.0  # HLS slice length (docs/service/files.md#slicing)
    mp4_max_seconds: float = 7200.0  # MP4 rollover: ~2 h of media (docs/service/files.md#mp4) ...
    mp4_max_bytes: int = 2_000_000_000  # ... or ~2 GB, whichever comes first
    exit_linger_seconds: float = 10.0  # after exit: stop answers 49, query status 8; then 404
    # A synchronous stop answers within this; past it, 206 code 50 "upload timeout"
    # (docs/service/api-contract.md#stop).
    sync_stop_timeout_seconds: float = 20.0
    tick_seconds: float = 0.2  # housekeeping and compositor clock period
    # A frame composed more than this after its time is one a real-time recorder would have
    # dropped: counted as late in GET /dev/recordings ("realtime"), the first one logged.
    late_frame_seconds: float = 1.0
    # Worker processes hosting the live recorders (emulator.recorder_pool); 0: every recorder
    # in this process, on its driver's thread.
    recorder_processes: int = 0
    resource_keep_seconds: float = 3600.0  # how long used/expired resourceIds stay known
    staging_dir: Path | None = None  # default <storage_dir>/.staging
    backup_dir: Path | None = None  # failed uploads; default <storage_dir>/.backup
    # Vendor 1 (Amazon S3): None writes to the local back-end like every other vendor; a URL
    # (e.g. a MinIO or moto on loopback) uploads there with boto3. Vendor 11 always uploads
    # with boto3 to its own extensionParams.endpoint.
    s3_endpoint_url: str | None = None
    s3_timeout_seconds: float = 5.0  # connect and read timeout of one S3 request
    # Files kept in the backup area are pushed to the customer's storage again every this
    # many seconds (docs/service/files.md#failover: "later transferred"); 0 = never.
    backup_transfer_seconds: float = 0.0
    # Notifications (docs/service/ncs.md): every event is kept in the event log (GET /dev/events);
    # with ncs_url, each is also POSTed there, signed with ncs_secret.
    ncs_url: str | None = None
    ncs_secret: str = "ncs-secret"
    # the receiver must answer within this (docs/service/ncs.md#transport)
    ncs_timeout_seconds: float = 10.0
    # the 3 resends (docs/service/ncs.md#transport)
    ncs_retry_seconds: tuple[float, ...] = (0.0, 1.0, 3.0)
    # event 33 uploading_progress period (docs/service/ncs.md#event-types)
    progress_seconds: float = 60.0
    max_body_bytes: int = 1024 * 1024  # REST and dev API request bodies (413 past it)
    # Local files (users' {"file": PATH}, local backgroundImage paths) are read only under these
    # directories (--media-dir); none: no local file at all (emulator.media.access).
    media_dirs: tuple[Path, ...] = ()
    # Required of every /dev/ request when set; required to be set beyond loopback
    # (emulator.devauth).
    dev_token: str | None = None
    # The project's App Certificate (--app-certificate CERT): when set, the recorder joins only
    # with a valid RTC token (AccessToken2) for the start's App ID, channel and uid, and is
    # dropped when it expires (emulator.tokens); the certificate of every App ID without its
    # own below. None: no token needed.
    app_certificate: str | None = None
    # Each App ID's own App Certificate (--app-certificate APPID=CERT, repeatable): that App
    # ID's tokens are checked with it (each Agora project has its own certificate).
    app_certificates: tuple[tuple[str, str], ...] = ()

    def certificate_for(self, app_id: str) -> str | None:
        """The App Certificate ``app_id``'s tokens are checked with (None: no token needed)."""
        for owner, certificate in self.app_certificates:
            if owner == app_id:
                return certificate
        return self.app_certificate

    def app(self, app_id: str) -> EmulatorApp:
        """How ``app_id`` is served: its own entry of ``apps``, else the default credentials."""
        for app in self.apps:
            if app.app_id == app_id:
                return app
        return EmulatorApp(app_id, self.customer_id, self.customer_secret, self.qps)

    @property
    def staging_root(self) -> Path:
        return self.staging_dir or self.storage_dir / ".staging"

    @property
    def backup_root(self) -> Path:
        return self.backup_dir or self.storage_dir / ".backup"
