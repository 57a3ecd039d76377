"""The network guard: which addresses are refused, and that a host is resolved once.

The connection tests run real HTTP(S) servers on loopback addresses and give
the guard a resolver that answers differently on each call, the way a DNS
rebinding attacker's name server does: whatever the later answers say, only
the first answer is checked and every connection goes to it.
"""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tools.netguard import (
    DestinationRefused,
    PinnedResolver,
    address_refusal,
    guarded_client,
    resolve_once,
)


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "reserved"),
        # IPv4-mapped: the socket layer connects to the IPv4 address inside.
        ("::ffff:127.0.0.1", "loopback (IPv4-mapped)"),
        ("::ffff:169.254.169.254", "link-local (IPv4-mapped)"),
        ("::ffff:100.64.0.1", "shared (CGNAT) (IPv4-mapped)"),
        # IPv4-compatible (deprecated): refused whatever it embeds.
        ("::127.0.0.1", "loopback (IPv4-compatible)"),
        ("::10.0.0.1", "private (IPv4-compatible)"),
        ("::8.8.8.8", "reserved (IPv4-compatible)"),
        # NAT64: a NAT64 gateway forwards to the IPv4 address inside.
        ("64:ff9b::7f00:1", "loopback (NAT64)"),
        ("64:ff9b::a9fe:a9fe", "link-local (NAT64)"),
        ("64:ff9b::c0a8:101", "private (NAT64)"),
        ("64:ff9b:1::808:808", "reserved (local-use NAT64)"),
        # 6to4: a 6to4 relay forwards to the IPv4 address inside.
        ("2002:7f00:1::1", "loopback (6to4)"),
        ("2002:a9fe:a9fe::", "link-local (6to4)"),
        ("2002:a00:1::1", "private (6to4)"),
        ("2002:6440:1::", "shared (CGNAT) (6to4)"),
    ],
)
def test_non_public_addresses_and_their_ipv6_forms_are_refused(address, reason):
    assert address_refusal(address) == reason


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "100.63.255.255",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_pass(address):
    assert address_refusal(address) is None


@dataclass
class ChangingResolver:
    """Answers each lookup with the next list of `answers` (the last one repeats)."""

    answers: list[list[str]]
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


async def test_every_answer_is_checked_and_the_first_is_the_one_used(settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = False
    mixed = ChangingResolver([["8.8.8.8", "10.0.0.7"]])
    with pytest.raises(DestinationRefused, match="not a public address"):
        await resolve_once("mixed.test", 80, resolver=mixed)

    rebinding = ChangingResolver([["8.8.4.4", "8.8.8.8"], ["127.0.0.1"]])
    assert await resolve_once("ok.test", 80, resolver=rebinding) == "8.8.4.4"


async def test_the_refusal_names_the_setting_that_allows_local_addresses(settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = False
    with pytest.raises(DestinationRefused) as refused:
        await resolve_once("127.0.0.1", 80)
    assert "AGENTRY_ALLOW_PRIVATE_URLS=1" in str(refused.value)
    assert "loopback" in str(refused.value)

    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    assert await resolve_once("127.0.0.1", 80) == "127.0.0.1"


async def test_a_name_that_does_not_resolve_is_refused(settings):
    async def nothing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(DestinationRefused, match="does not resolve"):
        await resolve_once("nowhere.test", 80, resolver=nothing)


async def test_a_pinned_resolver_looks_each_host_up_once(settings):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = False
    resolver = ChangingResolver([["8.8.8.8"], ["127.0.0.1"]])
    pins = PinnedResolver(resolver)
    assert [await pins.address("a.test", 443) for _ in range(3)] == ["8.8.8.8"] * 3
    assert resolver.calls == [("a.test", 443)]


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 "<server name>" and records (server name, headers) of each request."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        name = self.server.name
        self.server.seen.append((name, dict(self.headers)))
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start(
    host: str, port: int, name: str, seen: list, tls: ssl.SSLContext | None = None
):
    server = ThreadingHTTPServer((host, port), Recorder)
    server.daemon_threads = True
    server.name, server.seen = name, seen
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class TargetAndCanary:
    port: int
    seen: list


@pytest.fixture
def target_and_canary() -> Iterator[TargetAndCanary]:
    """`target` on 127.0.0.1 and `canary` on 127.0.0.2, both on the same port."""
    seen: list = []
    target = start("127.0.0.1", 0, "target", seen)
    port = target.server_address[1]
    canary = start("127.0.0.2", port, "canary", seen)
    yield TargetAndCanary(port, seen)
    for server in (target, canary):
        server.shutdown()
        server.server_close()


async def test_dns_rebinding_cannot_move_a_connection(settings, target_and_canary):
    """Three requests on three connections: one lookup, all reach the first answer."""
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    resolver = ChangingResolver([["127.0.0.1"], ["127.0.0.2"]])
    url = f"http://rebind.test:{target_and_canary.port}/"
    async with guarded_client(timeout=5, resolver=resolver) as client:
        for _ in range(3):
            response = await client.get(
                url, headers={"Authorization": "Bearer owner", "Connection": "close"}
            )
            assert response.text == "target"
    assert resolver.calls == [("rebind.test", target_and_canary.port)]
    assert [name for name, _ in target_and_canary.seen] == ["target"] * 3
    host = f"rebind.test:{target_and_canary.port}"
    assert all(headers["Host"] == host for _, headers in target_and_canary.seen)


async def test_a_refused_first_answer_means_no_connection_at_all(
    settings, target_and_canary
):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = False
    resolver = ChangingResolver([["127.0.0.2"], ["8.8.8.8"]])
    async with guarded_client(timeout=5, resolver=resolver) as client:
        with pytest.raises(DestinationRefused, match=r"rebind\.test"):
            await client.get(f"http://rebind.test:{target_and_canary.port}/")
    assert target_and_canary.seen == []


def _certificate_authority(
    tmp_path: Path, hostname: str
) -> tuple[ssl.SSLContext, ssl.SSLContext, list]:
    """A server context whose certificate names only `hostname`, a client context
    that trusts its CA, and the list of SNI names the server is offered."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    offered: list = []
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    server.sni_callback = lambda sock, name, ctx: offered.append(name)
    client = ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode()
    )
    return server, client, offered


async def test_tls_goes_to_the_pinned_address_with_the_hostname(settings, tmp_path):
    """SNI and certificate checks use the URL's host name, not the pinned address."""
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    server_tls, client_tls, offered = _certificate_authority(tmp_path, "pinned.test")
    seen: list = []
    server = start("127.0.0.1", 0, "tls target", seen, tls=server_tls)
    port = server.server_address[1]
    resolver = ChangingResolver([["127.0.0.1"]])
    try:
        async with guarded_client(
            timeout=5, resolver=resolver, verify=client_tls
        ) as client:
            response = await client.get(f"https://pinned.test:{port}/")
    finally:
        server.shutdown()
        server.server_close()
    assert response.text == "tls target"
    assert offered == ["pinned.test"]
    assert seen[0][1]["Host"] == f"pinned.test:{port}"
