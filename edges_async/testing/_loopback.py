"""``LoopbackTransport``: public host names that lead to this machine, for callback tests.

Edges can never reach a callback URL on a loopback or private address, so
``ea.Callback`` refuses one. A test that serves its callback receiver on
127.0.0.1 names it by a public-looking host instead (``app.example.com``) and
gives the simulator's callback sender this transport: it connects to
127.0.0.1 for those names, as a DNS entry would, while the ``Host`` header and
the TLS server name (SNI and certificate check) stay the public name.
"""

from __future__ import annotations

import ssl
from typing import final

import httpx

__all__ = ["LoopbackTransport"]

_LIMITS = httpx.Limits(max_connections=64)  # a sender of many callbacks at once


@final
class LoopbackTransport(httpx.AsyncBaseTransport):
    """Sends requests for ``hosts`` to 127.0.0.1; other hosts go out as usual.

    >>> transport = LoopbackTransport("app.example.com", verify=trusting_context)
    >>> async with httpx.AsyncClient(transport=transport) as sender:
    ...     async with simulator.deliver_callbacks(http_client=sender): ...
    """

    __slots__ = ("_hosts", "_inner")

    def __init__(
        self,
        *hosts: str,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = _LIMITS,
    ) -> None:
        if not hosts:
            raise ValueError("LoopbackTransport needs at least one host name")
        self._hosts = frozenset(host.lower() for host in hosts)
        self._inner = httpx.AsyncHTTPTransport(verify=verify, limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Connect to 127.0.0.1 for a listed host, keeping its Host header and TLS name."""
        host = request.url.host
        if host in self._hosts:
            request.url = request.url.copy_with(host="127.0.0.1")
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._inner.aclose()

    def __repr__(self) -> str:
        return f"<LoopbackTransport hosts={sorted(self._hosts)}>"
