"""Guarded HTTP for completion webhooks: public targets only, one request, a hard deadline.

A webhook URL comes from a job spec, that is from anyone who may submit jobs, and is fetched from
inside the deployment. Unguarded, it reaches what only the worker can reach: a webhook to
``http://127.0.0.1:8700/dev/reset`` wiped the emulator's channels, and cloud metadata addresses
hand out credentials. And a receiver that answers slowly must not hold a worker slot that a stop
needs. So a delivery here:

- resolves the host once, through :func:`resolve` (the one seam tests replace: name resolution
  cannot be real in a test), and checks every address with :func:`refusal`: loopback, private,
  shared, link-local, multicast, unspecified, reserved and cloud metadata addresses are refused,
  IPv6 addresses that embed an IPv4 one (mapped, 6to4, NAT64, Teredo) are judged by it too,
  unless CLOUDREC_WEBHOOK_ALLOW lists them;
- connects to an address that was checked, never to a fresh lookup (so DNS rebinding cannot
  switch it), sending the URL's own ``Host`` and, for https, SNI and the certificate checked
  against the host name;
- sends one request with ``Connection: close`` and reads at most :data:`MAX_ANSWER_BYTES` of the
  answer: only its status line matters. A redirect is an answer like any other, never followed;
- fits connect, TLS handshake, send and read into one wall-clock deadline: every socket
  operation gets only what is left of it.

Why not ``requests``: its timeout is per socket operation (a receiver trickling a byte a second
holds it for ever), it reads the whole answer (a 300 MB answer took 600 MB), keeps connections in
a pool, and resolves the name again when it connects. This module is the one boundary where
socket and TLS errors of webhooks become :class:`WebhookError`.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from worker.errors import WebhookError, WebhookRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ANSWER_BYTES = 4096  # the status line is all we read; a longer one is not an answer
USER_AGENT = "cloudrec-webhook"

# Metadata services of the clouds; most are link-local (refused anyway), these are not all.
METADATA_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2/32",  # AWS ECS task metadata
        "168.63.129.16/32",  # Azure WireServer (a public address)
        "100.100.100.200/32",  # Alibaba Cloud
        "192.0.0.192/32",  # Oracle Cloud
        "fd00:ec2::254/128",  # AWS over IPv6
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: |\r\n)")
_SAFE_TARGET = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: nothing to inject


@dataclass(frozen=True)
class Target:
    """Where a webhook URL points, as the request needs it."""

    scheme: str
    host: str  # name or address, without IPv6 brackets: SNI, certificate and resolution
    port: int
    host_header: str  # the URL's own host[:port], sent as Host
    path: str  # the request target: path and query


def parse_target(url: str) -> Target:
    """Split a webhook URL; :class:`WebhookRefused` for what must never be sent."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("must not carry credentials (user:password@)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not _SAFE_TARGET.fullmatch(path):
        raise WebhookRefused("its path must be printable ASCII without spaces (percent-encode)")
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default, _host_header(parts), path)


def _host_header(parts: SplitResult) -> str:
    return parts.netloc.rpartition("@")[2]


def literal_address(host: str) -> IPAddress | None:
    """The address if ``host`` is an IP literal, else None (a name)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refusal(address: IPAddress, allow: Iterable[IPNetwork] = ()) -> str | None:
    """Why a webhook must not go to ``address`` (None: it may). ``allow`` wins over every rule."""
    allowed = tuple(allow)
    if any(address in net for net in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
            return refusal(address.ipv4_mapped, allowed)
        embedded = _embedded_ipv4(address)
        if embedded is not None and (why := refusal(embedded, allowed)):
            return f"{address} embeds {embedded}, {why}"
    why = _category(address)
    return f"{address} is {why}" if why else None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _category(address: IPAddress) -> str | None:
    # Order: the most telling name first (169.254.169.254 is link-local, but "metadata" says why).
    if any(address in net for net in METADATA_NETWORKS):
        return "a cloud metadata address"
    checks = (
        ("a loopback address", address.is_loopback),
        ("the unspecified address", address.is_unspecified),
        ("a link-local address", address.is_link_local),
        ("a multicast address", address.is_multicast),
        ("a reserved address", address.is_reserved),
        ("a private address", address.is_private),
        ("not a globally routable address", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def resolve(host: str, port: int) -> list[str]:
    """Addresses of ``host``, in the resolver's order. The seam tests replace.

    Raises :class:`WebhookError` (retried: resolution failures are often passing) if none.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookError(None, f"cannot resolve {host!r} ({exc})") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _resolve_within(host: str, port: int, deadline: float) -> list[str]:
    """:func:`resolve` within the deadline. getaddrinfo cannot be interrupted, so it runs in a
    thread of its own: a resolver that hangs keeps that thread (until the system resolver gives
    up), never the worker slot."""
    found: list[list[str]] = []
    failed: list[WebhookError] = []

    def lookup() -> None:
        try:
            found.append(resolve(host, port))
        except WebhookError as exc:
            failed.append(exc)

    thread = threading.Thread(target=lookup, name="webhook-resolve", daemon=True)
    thread.start()
    thread.join(_remaining(deadline))
    if failed:
        raise failed[0]
    if not found:
        raise TimeoutError
    return found[0]


def vetted_addresses(target: Target, allow: Iterable[IPNetwork], deadline: float) -> list[str]:
    """The addresses of ``target`` that may be connected to, resolved once.

    Raises :class:`WebhookRefused` naming the first refused address if none may.
    """
    allowed = tuple(allow)
    usable, refused = [], []
    for text in _resolve_within(target.host, target.port, deadline):
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        why = refusal(address, allowed)
        if why:
            refused.append(why)
        elif isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            usable.append(str(address.ipv4_mapped))  # judged as IPv4 above, so connect as IPv4
        else:
            usable.append(text)
    if not usable:
        shown = refused[0] if refused else "no address"
        raise WebhookRefused(
            f"{target.host} resolves to no public address ({shown}); "
            "an internal receiver must be listed in CLOUDREC_WEBHOOK_ALLOW"
        )
    return usable


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allow: Iterable[IPNetwork] = (),
) -> int:
    """POST ``body`` to ``url`` under the guard; the answer's status if it is 2xx.

    Raises :class:`WebhookRefused` for a target the policy refuses (nothing sent) and
    :class:`WebhookError` for no answer within ``timeout`` seconds in all or a non-2xx one.
    """
    deadline = time.monotonic() + timeout
    target = parse_target(url)
    try:
        addresses = vetted_addresses(target, allow, deadline)
        sock = _connect(target, addresses, deadline)
        try:
            _send(sock, _request(target, body, headers), deadline)
            status = _read_status(sock, deadline)
        finally:
            sock.close()
    except TimeoutError:
        raise WebhookError(None, f"no answer within the {timeout:g} s deadline") from None
    except (OSError, ssl.SSLError) as exc:
        raise WebhookError(None, type(exc).__name__) from exc
    if not 200 <= status < 300:
        raise WebhookError(status, "not a 2xx answer")
    return status


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _connect(target: Target, addresses: list[str], deadline: float) -> socket.socket:
    """A connection to the first vetted address that answers (TLS for https)."""
    error: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((address, target.port), timeout=_remaining(deadline))
        except TimeoutError:
            raise
        except OSError as exc:
            error = exc
            continue
        if target.scheme != "https":
            return sock
        try:
            return _tls(sock, target, deadline)
        except BaseException:
            sock.close()
            raise
    assert error is not None  # addresses is never empty
    raise error


def _tls(sock: socket.socket, target: Target, deadline: float) -> socket.socket:
    # SNI and the certificate check use the URL's host name, not the address connected to.
    context = ssl.create_default_context()
    sock.settimeout(_remaining(deadline))  # the handshake as a whole gets what is left
    return context.wrap_socket(sock, server_hostname=target.host)


def _request(target: Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"User-Agent: {USER_AGENT}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    for line in lines:
        if "\r" in line or "\n" in line:  # headers are ours; a newline would be a bug
            raise ValueError("a webhook header must not contain a line break")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    sock.settimeout(_remaining(deadline))  # sendall's timeout covers the whole send
    sock.sendall(data)


def _read_status(sock: socket.socket, deadline: float) -> int:
    """The status code of the answer's status line, reading at most MAX_ANSWER_BYTES."""
    answer = b""
    while b"\r\n" not in answer and len(answer) < MAX_ANSWER_BYTES:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(MAX_ANSWER_BYTES - len(answer))
        if not chunk:
            break
        answer += chunk
    match = _STATUS_LINE.match(answer)
    if match is None:
        shown = "closed without an answer" if not answer else "not an HTTP answer"
        raise WebhookError(None, shown)
    return int(match.group(1))
