"""Tier 1 over real sockets: the guard every webhook delivery goes through (worker.webhook_http).

Receivers are real servers on loopback addresses (Linux routes all of 127.0.0.0/8 to lo, so a
"public" receiver and a "victim" can listen on different addresses). Name resolution is the one
thing replaced (``webhook_http.resolve``): a test cannot make a real DNS server lie.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config import Settings
from tests.support.waiting import wait_for
from worker import webhook_http
from worker.errors import JobSpecError, WebhookError, WebhookRefused
from worker.jobs import parse_job_spec

SECRET = "whsec_aG9vay1zaWduaW5nLWtleS0xMjMtZm9yLXRlc3Rz"
BODY = b'{"job_id":"j1"}'


# -- the address policy ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 it is
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "not a globally routable"),  # carrier-grade NAT
        ("169.254.10.20", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("169.254.169.254", "cloud metadata"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),  # Azure: a public address
        ("100.100.100.200", "cloud metadata"),
        ("192.0.0.192", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("2002:7f00:1::1", "embeds 127.0.0.1"),  # 6to4 around loopback
        ("2002:a9fe:a9fe::1", "embeds 169.254.169.254"),
        ("64:ff9b::a00:1", "embeds 10.0.0.1"),  # NAT64 around a private address
        ("198.18.0.1", "private"),  # benchmarking
        ("192.0.2.1", "private"),  # documentation
    ],
)
def test_every_non_public_address_is_refused(address: str, why: str):
    refusal = webhook_http.refusal(ipaddress.ip_address(address))
    assert refusal is not None and why in refusal


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str):
    assert webhook_http.refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_admits_exactly_what_it_lists():
    allow = Settings(webhook_allow="127.0.0.1/32, 10.0.0.0/8, fd00::/8").webhook_allow
    for ok in ("127.0.0.1", "::ffff:127.0.0.1", "10.200.0.1", "fd00:ec2::254"):
        assert webhook_http.refusal(ipaddress.ip_address(ok), allow) is None, ok
    for refused in ("127.0.0.2", "::1", "169.254.169.254", "192.168.0.1"):
        assert webhook_http.refusal(ipaddress.ip_address(refused), allow) is not None, refused


def test_a_bad_allow_list_is_refused_at_load_naming_the_variable():
    with pytest.raises(ValueError, match=r"CLOUDREC_WEBHOOK_ALLOW: 'localhost' is not an IP"):
        Settings(webhook_allow="127.0.0.1/32,localhost")


# -- at submit ---------------------------------------------------------------------------------
def _parse(webhook: str, **settings: str) -> object:
    return parse_job_spec(
        {"cname": "c", "callback": {"webhook": webhook}},
        Settings(webhook_secret=SECRET, **settings),
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        # The original attack: this made the worker wipe the emulator's channels.
        ("http://127.0.0.1:8700/dev/reset", "127.0.0.1 is a loopback address"),
        ("http://0x7f.1:8700/dev/reset", "127.0.0.1 is a loopback address"),  # same, disguised
        ("http://2130706433:8700/dev/reset", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8700/dev/reset", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:8700/", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://10.0.0.5/hook", "10.0.0.5 is a private address"),
    ],
)
def test_a_literal_non_public_target_is_refused_at_submit(url: str, why: str):
    with pytest.raises(JobSpecError) as caught:
        _parse(url)
    message = str(caught.value)
    assert message.startswith("callback.webhook: must target a public address")
    assert why in message and "CLOUDREC_WEBHOOK_ALLOW" in message


def test_an_allowed_internal_receiver_is_accepted_at_submit():
    assert _parse("http://127.0.0.1:8080/hook", webhook_allow="127.0.0.1/32")


def test_credentials_in_the_url_are_refused_at_submit_without_echoing_them():
    for url in ("https://alice:s3cr3t-pw@hooks.example.com/x", "https://:s3cr3t-pw@hooks.example"):
        with pytest.raises(JobSpecError) as caught:
            _parse(url)
        assert "callback.webhook: must not carry credentials" in str(caught.value)
        assert "s3cr3t-pw" not in str(caught.value)


# -- servers -----------------------------------------------------------------------------------
@dataclass
class Server:
    """A raw TCP server on ``host``: ``handle(conn)`` runs per connection, in a thread."""

    host: str
    port: int
    connections: list[str] = field(default_factory=list)  # the address each one reached
    requests: list[bytes] = field(default_factory=list)
    closed_by_client: list[bool] = field(default_factory=list)  # per answered connection


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    listeners: list[socket.socket] = []

    def start(
        handle: Callable[[socket.socket, Server], None],
        host: str = "127.0.0.1",
        port: int = 0,
        accept: bool = True,
    ) -> Server:
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(16)
        listeners.append(listener)
        server = Server(host, listener.getsockname()[1])
        if accept:
            threading.Thread(
                target=_accept_loop, args=(listener, handle, server), daemon=True
            ).start()
        return server

    yield start
    for listener in listeners:
        listener.close()


def _accept_loop(
    listener: socket.socket, handle: Callable[[socket.socket, Server], None], server: Server
) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        server.connections.append(conn.getsockname()[0])
        threading.Thread(target=_run, args=(handle, conn, server), daemon=True).start()


def _run(handle: Callable[[socket.socket, Server], None], conn: socket.socket, s: Server) -> None:
    with conn, contextlib.suppress(OSError):
        handle(conn, s)


def _read_request(conn: socket.socket, server: Server) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(rest) < length:
        rest += conn.recv(65536)
    server.requests.append(head + b"\r\n\r\n" + rest)
    return head


def answer(status: bytes, extra: bytes = b"") -> Callable[[socket.socket, Server], None]:
    def handle(conn: socket.socket, server: Server) -> None:
        _read_request(conn, server)
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n" + extra + b"\r\n")
        conn.settimeout(5)
        try:
            server.closed_by_client.append(conn.recv(1) == b"")
        except ConnectionResetError:
            server.closed_by_client.append(True)
        except TimeoutError:
            server.closed_by_client.append(False)  # still open, waiting to be reused

    return handle


def _post(url: str, timeout: float = 5.0, allow: str = "127.0.0.0/8") -> int:
    return webhook_http.post(
        url,
        BODY,
        {"Content-Type": "application/json"},
        timeout=timeout,
        allow=Settings(webhook_allow=allow).webhook_allow,
    )


# -- delivery ----------------------------------------------------------------------------------
def test_a_delivery_sends_one_request_and_closes(serve):
    server = serve(answer(b"204 No Content"))
    assert _post(f"http://127.0.0.1:{server.port}/hooks/done?x=1") == 204
    [request] = server.requests
    assert request.startswith(b"POST /hooks/done?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in request
    assert b"Connection: close\r\n" in request and request.endswith(b"\r\n\r\n" + BODY)
    wait_for(lambda: server.closed_by_client == [True], 7, 0.05, "the client to close")


def test_a_name_resolving_to_loopback_is_refused_without_a_connection(serve, monkeypatch):
    server = serve(answer(b"200 OK"))
    monkeypatch.setattr(webhook_http, "resolve", lambda host, port: ["127.0.0.1"])
    with pytest.raises(WebhookRefused, match=r"hooks.example resolves to no public address"):
        _post(f"http://hooks.example:{server.port}/", allow="")
    assert server.connections == []


def test_dns_rebinding_cannot_switch_the_address_that_was_checked(serve, monkeypatch):
    # hooks.example answers an allowed address first and loopback the next time it is asked:
    # a client that resolves again to connect (as requests does) would reach the victim.
    receiver = serve(answer(b"200 OK"), host="127.0.0.2")
    victim = serve(answer(b"200 OK"), host="127.0.0.1", port=receiver.port)
    answers = [["127.0.0.2"], ["127.0.0.1"]]
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return answers[min(len(lookups), len(answers)) - 1]

    monkeypatch.setattr(webhook_http, "resolve", rebinding)
    url = f"http://hooks.example:{receiver.port}/done"
    assert _post(url, allow="127.0.0.2/32") == 200
    assert lookups == ["hooks.example"]  # resolved once
    assert receiver.connections == ["127.0.0.2"] and victim.connections == []
    assert f"Host: hooks.example:{receiver.port}\r\n".encode() in receiver.requests[0]
    # Asked again, the name now answers loopback, which is refused.
    with pytest.raises(WebhookRefused, match=r"127\.0\.0\.1 is a loopback address"):
        _post(url, allow="127.0.0.2/32")
    assert victim.connections == []


def test_of_several_addresses_only_a_vetted_one_is_connected_to(serve, monkeypatch):
    receiver = serve(answer(b"200 OK"), host="127.0.0.2")
    victim = serve(answer(b"200 OK"), host="127.0.0.1", port=receiver.port)
    monkeypatch.setattr(webhook_http, "resolve", lambda h, p: ["127.0.0.1", "127.0.0.2"])
    assert _post(f"http://hooks.example:{receiver.port}/", allow="127.0.0.2/32") == 200
    assert receiver.connections == ["127.0.0.2"] and victim.connections == []


def test_a_redirect_is_not_followed(serve):
    victim = serve(answer(b"200 OK"))
    location = f"Location: http://127.0.0.1:{victim.port}/dev/reset\r\n".encode()
    redirector = serve(answer(b"307 Temporary Redirect", location))
    with pytest.raises(WebhookError) as caught:
        _post(f"http://127.0.0.1:{redirector.port}/")
    assert caught.value.status == 307
    assert victim.connections == []


def test_a_receiver_trickling_a_byte_a_second_is_cut_at_the_deadline(serve):
    def trickle(conn: socket.socket, server: Server) -> None:
        _read_request(conn, server)
        for byte in b"HTTP/1.1 200 OK\r\n" + b"X" * 600:
            conn.sendall(bytes([byte]))
            time.sleep(1)

    server = serve(trickle)
    started = time.monotonic()
    with pytest.raises(WebhookError, match="no answer within the 3 s deadline"):
        _post(f"http://127.0.0.1:{server.port}/", timeout=3)
    assert time.monotonic() - started < 3.5


def test_a_receiver_that_never_answers_is_cut_at_the_deadline(serve):
    # Connections are accepted by the kernel (the listen backlog) but never read or answered.
    server = serve(lambda conn, s: None, accept=False)
    started = time.monotonic()
    with pytest.raises(WebhookError, match="no answer within the 2 s deadline"):
        _post(f"http://127.0.0.1:{server.port}/", timeout=2)
    assert time.monotonic() - started < 2.5


def test_a_300_mb_answer_is_not_read(serve):
    sent = [0]

    def huge(conn: socket.socket, server: Server) -> None:
        _read_request(conn, server)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 300000000\r\n\r\n")
        chunk = b"\0" * 65536
        conn.settimeout(5)
        while sent[0] < 300_000_000:
            sent[0] += conn.send(chunk)

    server = serve(huge)
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.monotonic()
    assert _post(f"http://127.0.0.1:{server.port}/", timeout=10) == 200
    assert time.monotonic() - started < 2
    time.sleep(0.5)  # the server writes until it notices the closed connection
    assert process.memory_info().rss - before < 20 * 2**20
    assert sent[0] < 50 * 2**20  # what the socket buffers took before the client closed


def test_an_unresolvable_name_is_a_failed_attempt_not_a_refusal():
    with pytest.raises(WebhookError, match="cannot resolve") as caught:
        _post("http://no-such-host.invalid/", allow="")
    assert not isinstance(caught.value, WebhookRefused)


# -- https: SNI and the certificate are checked against the name, not the address ----------------
@pytest.fixture
def tls_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ssl.SSLContext]:
    """A private CA trusted by the client (SSL_CERT_FILE); returns a server context maker."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudrec test CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    def server_context(name: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context

    return server_context


def _tls_answer(context: ssl.SSLContext, names: list[str | None]) -> Callable[..., None]:
    def handle(conn: socket.socket, server: Server) -> None:
        context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment]
        with context.wrap_socket(conn, server_side=True) as tls:
            answer(b"200 OK")(tls, server)

    return handle


def test_https_sends_sni_and_checks_the_certificate_against_the_name(serve, tls_files, monkeypatch):
    names: list[str | None] = []
    server = serve(_tls_answer(tls_files("hooks.example"), names), host="127.0.0.2")
    monkeypatch.setattr(webhook_http, "resolve", lambda host, port: ["127.0.0.2"])
    assert _post(f"https://hooks.example:{server.port}/tls", allow="127.0.0.2/32") == 200
    assert names == ["hooks.example"]
    assert f"Host: hooks.example:{server.port}\r\n".encode() in server.requests[0]


def test_https_refuses_a_certificate_for_another_name(serve, tls_files, monkeypatch):
    server = serve(_tls_answer(tls_files("other.example"), []), host="127.0.0.2")
    monkeypatch.setattr(webhook_http, "resolve", lambda host, port: ["127.0.0.2"])
    with pytest.raises(WebhookError, match="SSLCertVerificationError"):
        _post(f"https://hooks.example:{server.port}/tls", allow="127.0.0.2/32")
    assert server.requests == []


def test_a_url_with_credentials_is_never_sent(serve):
    server = serve(answer(b"200 OK"))
    with pytest.raises(WebhookRefused, match="credentials"):
        _post(f"http://user:pw@127.0.0.1:{server.port}/")
    assert server.connections == []
