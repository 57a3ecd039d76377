"""The one guard every tool that reaches the network goes through.

Agent configs are written by ordinary users, so a URL in one must not become a
way into the server's own network. The guard:

- resolves a host once and connects to that checked address: the HTTP clients
  below get a network backend that looks the host up itself (once per client,
  or once per MCP session) and hands the connection the address it checked,
  while TLS (SNI, certificate) and the ``Host`` header keep the host name. A
  name server that answers differently later (DNS rebinding) cannot move a
  connection anywhere else;
- refuses loopback, private, link-local, shared (CGNAT), multicast,
  unspecified and reserved addresses, and IPv6 forms that reach them through
  the IPv4 address inside (IPv4-mapped, IPv4-compatible, NAT64, 6to4), unless
  the setting ``AGENTRY_ALLOW_PRIVATE_URLS`` is true (development and tests);
  a host with any refused answer is refused;
- gives clients that follow no redirects, read no proxy settings from the
  environment (a proxy would do its own lookup), and cap response sizes.

Callers add the overall deadline of a call themselves (`asyncio.timeout`
around the request and the reading of its body): httpx's timeouts apply to
each read, which a server sending one byte at a time never trips.

Public surface:
    DestinationRefused     the refusal (a `SandboxError`: a failed tool call)
    private_urls_allowed() whether ``AGENTRY_ALLOW_PRIVATE_URLS`` is on
    address_refusal(ip)    why an address is refused, or None if it is public
    url_refusal(url)       why a URL is refused before any lookup (scheme, host,
                           credentials, a non-public address literal), or None
    Resolver               async (host, port) -> addresses; `system_resolver`
    resolve_once(...)      one lookup, every answer checked, the first returned
    PinnedResolver         resolve_once per host, remembered for its lifetime
    guarded_client(...)    an ``httpx.AsyncClient`` that connects through a
                           `PinnedResolver` (``http_endpoint``, webhooks)
    mcp_client_factory(...) the same for the MCP SDK's ``httpx2`` clients, with
                           a size cap on each response
    read_capped(...)       a response's body, at most n bytes, read as it streams
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx
from django.conf import settings

from tools.sandbox import SandboxError

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

SETTING = "AGENTRY_ALLOW_PRIVATE_URLS"

CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


class DestinationRefused(SandboxError):
    """The URL's host is not one a tool may reach; the message says why."""


def private_urls_allowed() -> bool:
    """Whether non-public addresses may be reached (read at each lookup)."""
    return bool(getattr(settings, SETTING, False))


def address_refusal(address: str) -> str | None:
    """Why `address` may not be reached (``"loopback"``, ``"private (NAT64)"``...),
    or None when it is a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded, form = _embedded_ipv4(ip)
        if form == "local-use NAT64":
            return "reserved (local-use NAT64)"
        if embedded is not None:
            reason = _plain_refusal(embedded)
            if reason is None and form == "IPv4-compatible":
                # Deprecated and never routed: no legitimate server uses one.
                reason = "reserved"
            return None if reason is None else f"{reason} ({form})"
    return _plain_refusal(ip)


def url_refusal(url: str) -> str | None:
    """Why the guard refuses `url` without looking anything up, or None.

    For URLs stored to be called later (webhooks): http(s) with a host and no
    credentials, and a host given as an address must be public unless private
    URLs are allowed. A host name is resolved and checked at each call, since
    what it points to may change.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return "it is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "only http:// and https:// URLs with a host are allowed"
    if parts.username or parts.password:
        return "a URL must not carry credentials"
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    reason = None if private_urls_allowed() else address_refusal(host)
    if reason is not None:
        return f"{host} is not a public address ({reason})"
    return None


def _embedded_ipv4(
    ip: ipaddress.IPv6Address,
) -> tuple[ipaddress.IPv4Address | None, str | None]:
    """The IPv4 address an IPv6 form reaches, and the form's name."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in LOCAL_NAT64:
        return None, "local-use NAT64"
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in IPV4_COMPATIBLE and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-compatible"
    return None, None


def _plain_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip in CGNAT:
        return "shared (CGNAT)"
    # Before is_global: Python counts most multicast ranges as global.
    if ip.is_multicast:
        return "multicast"
    if any(ip in network for network in PRIVATE_NETWORKS):
        return "private"
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "reserved"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answers for `host`, in its order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )
    # An IPv4 or IPv6 socket address starts with the address text.
    return [str(info[4][0]) for info in infos]


async def resolve_once(
    host: str, port: int, *, resolver: Resolver | None = None
) -> str:
    """The address to connect to for `host`: one lookup, the first answer.

    An IP literal is not looked up. Raises `DestinationRefused` when the name
    does not resolve or, unless private URLs are allowed, when any of its
    answers is not a public address: a name that points inside at all is
    refused, whichever answer a connection would have used.
    """
    try:
        ipaddress.ip_address(host)
        answers: Sequence[str] = [host]
    except ValueError:
        try:
            answers = await (resolver or system_resolver)(host, port)
        except OSError:
            answers = []
        if not answers:
            raise DestinationRefused(
                f"The host name {host} does not resolve."
            ) from None
    if not private_urls_allowed():
        for answer in answers:
            reason = address_refusal(answer)
            if reason is not None:
                raise DestinationRefused(
                    f"{host} is not a public address ({reason}). Set {SETTING}=1 "
                    "to allow local and private addresses in development."
                )
    return answers[0]


class PinnedResolver:
    """`resolve_once` per host, remembered: later connections reuse the checked answer.

    One lives as long as one HTTP client (a tool call) or one MCP session;
    `forget` starts over for the next session.
    """

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._resolver = resolver
        self._pins: dict[str, str] = {}
        self._lock = anyio.Lock()

    async def address(self, host: str, port: int) -> str:
        # One lookup even when two connections open at once (an MCP client's
        # event stream and its first POST).
        async with self._lock:
            if host not in self._pins:
                self._pins[host] = await resolve_once(
                    host, port, resolver=self._resolver
                )
            return self._pins[host]

    def forget(self) -> None:
        self._pins.clear()


class _PinnedBackend:
    """An httpcore (or httpcore2) network backend that connects to pinned addresses.

    httpcore passes the URL's host to `connect_tcp` and later uses that same
    host for SNI and certificate checks, so only the socket's address changes.
    """

    def __init__(self, inner: Any, pins: PinnedResolver) -> None:
        self._inner = inner
        self._pins = pins

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        address = await self._pins.address(host, port)
        return await self._inner.connect_tcp(
            address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise DestinationRefused("Unix sockets are not reachable from tools.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that uses a `_PinnedBackend`."""

    def __init__(self, pins: PinnedResolver, verify: ssl.SSLContext | bool) -> None:
        super().__init__(verify=verify, trust_env=False)
        # httpx builds its pool without a way to pass a network backend; this
        # pool is the same one, built with the documented httpcore arguments.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            # Duck-typed: one class serves httpcore and httpcore2.
            network_backend=_PinnedBackend(httpcore.AnyIOBackend(), pins),  # type: ignore[arg-type]
        )


def guarded_client(
    *,
    timeout: float,
    resolver: Resolver | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection goes through the guard.

    Each host is resolved once for the client's lifetime. Redirects are not
    followed and proxies from the environment are not used. `timeout` bounds
    each phase (connect, each read); the caller adds the call's deadline.
    """
    return httpx.AsyncClient(
        transport=_PinnedTransport(PinnedResolver(resolver), verify),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


async def read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most `max_bytes` of the body, and whether there was more.

    Stops reading once past the cap, so an endless body costs no more than that.
    """
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            break
    body = b"".join(chunks)
    return body[:max_bytes], size > max_bytes


def mcp_client_factory(
    pins: PinnedResolver, *, max_response_bytes: int
) -> Callable[..., Any]:
    """An ``httpx_client_factory`` for fastmcp's HTTP transports (``httpx2``).

    Every client it makes connects through `pins`, follows no redirects itself
    and uses no proxies from the environment. A response body past
    `max_response_bytes` fails with a stream error, which the MCP SDK reports
    as a failed request; long-lived event streams (a GET answered with
    ``text/event-stream``) are exempt, as the SDK caps each of their events.
    """
    import httpx2

    transport_class = _httpx2_transport_class()

    def factory(
        headers: dict[str, str] | None = None,
        timeout: Any = None,
        auth: Any = None,
        **_ignored: Any,
    ) -> Any:
        # fastmcp also passes follow_redirects=True; the SDK follows a redirect
        # itself only within the URL's origin, which the pins keep on the
        # checked address, and the client follows none.
        if timeout is None:
            timeout = httpx2.Timeout(30.0, read=300.0)
        return httpx2.AsyncClient(
            transport=transport_class(pins, max_response_bytes),
            headers=headers,
            timeout=timeout,
            auth=auth,
            follow_redirects=False,
            trust_env=False,
        )

    return factory


@functools.cache
def _httpx2_transport_class() -> type:
    """The guarded ``httpx2`` transport, defined on first use: only processes
    that run an MCP tool import the MCP SDK's HTTP stack."""
    import httpcore2
    import httpx2

    class ResponseTooLarge(httpx2.StreamError):
        pass

    class CappedStream(httpx2.AsyncByteStream):
        def __init__(self, stream: httpx2.AsyncByteStream, max_bytes: int) -> None:
            self._stream = stream
            self._max_bytes = max_bytes

        async def __aiter__(self) -> AsyncIterator[bytes]:
            size = 0
            async for chunk in self._stream:
                size += len(chunk)
                if size > self._max_bytes:
                    raise ResponseTooLarge(
                        f"The response is larger than {self._max_bytes} bytes."
                    )
                yield chunk

        async def aclose(self) -> None:
            await self._stream.aclose()

    class PinnedHTTPX2Transport(httpx2.AsyncHTTPTransport):
        def __init__(self, pins: PinnedResolver, max_response_bytes: int) -> None:
            super().__init__(trust_env=False)
            # As for httpx: the same pool, with the pinned network backend.
            self._pool = httpcore2.AsyncConnectionPool(
                ssl_context=httpx2.create_ssl_context(trust_env=False),
                # Duck-typed: one class serves httpcore and httpcore2.
                network_backend=_PinnedBackend(httpcore2.AnyIOBackend(), pins),  # type: ignore[arg-type]
            )
            self._max_response_bytes = max_response_bytes

        async def handle_async_request(
            self, request: httpx2.Request
        ) -> httpx2.Response:
            response = await super().handle_async_request(request)
            content_type = response.headers.get("content-type", "")
            if request.method == "GET" and content_type.startswith("text/event-stream"):
                return response
            return httpx2.Response(
                status_code=response.status_code,
                headers=response.headers,
                # An async transport's response streams asynchronously.
                stream=CappedStream(response.stream, self._max_response_bytes),  # type: ignore[arg-type]
                extensions=response.extensions,
            )

    return PinnedHTTPX2Transport
