"""Serving an ASGI app with uvicorn on a loopback port, inside the running event loop.

The socket is bound before uvicorn starts, so ``port=0`` yields the port the
OS chose and a busy port fails at once with ``OSError`` (uvicorn itself would
``sys.exit``). Connections dropped on purpose by a ``drop`` fault are not
logged as application errors.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import TYPE_CHECKING

import anyio
import uvicorn

from ._fault_injection import SimulatedDisconnect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from starlette.types import ASGIApp

__all__ = ["run_until_stopped", "serve_app", "serve_origin"]


class _Server(uvicorn.Server):
    """A uvicorn server that says when it has started, and when it has stopped."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()
        self.stopped = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then say so."""
        await super().startup(sockets=sockets)
        self.ready.set()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve as uvicorn does; say when it has stopped, however it stops."""
        try:
            await super().serve(sockets=sockets)
        finally:
            self.stopped.set()


class _QuietDrops(logging.Filter):
    """Hides uvicorn's traceback for connections a ``drop`` fault cut on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, SimulatedDisconnect)


def _quiet_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _QuietDrops) for existing in logger.filters):
        logger.addFilter(_QuietDrops())


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio turns Nagle off (TCP_NODELAY) only on
    # sockets that say they are TCP, and accepted sockets inherit the proto.
    # With Nagle on, uvicorn's separate header and body writes meet the
    # client's delayed ACK and every response waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/v1"


def _server(app: ASGIApp, *, lifespan: bool = False, certfile: str | None = None) -> _Server:
    config = uvicorn.Config(
        app,
        interface="asgi3",
        lifespan="on" if lifespan else "off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        ssl_certfile=certfile,
        ssl_keyfile=certfile,
    )
    _quiet_drops()
    return _Server(config)


@contextlib.asynccontextmanager
async def _serving(
    app: ASGIApp, host: str, port: int, *, lifespan: bool = False, certfile: str | None = None
) -> AsyncIterator[tuple[_Server, str]]:
    """Bind, serve ``app`` in a task, and yield once it is ready: the server and its base URL."""
    sock = _bind(host, port)
    server = _server(app, lifespan=lifespan, certfile=certfile)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve, [sock])
        try:
            await server.ready.wait()
            yield server, _base_url(sock)
        finally:
            server.should_exit = True


@contextlib.asynccontextmanager
async def serve_origin(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, certfile: str | None = None
) -> AsyncIterator[str]:
    """Serve any ASGI app (its lifespan on) while the block runs; yield its origin.

    With ``certfile`` (a PEM holding the key and the certificate chain, e.g.
    from ``trustme``) it serves HTTPS: ``https://127.0.0.1:54321``.
    """
    scheme = "https" if certfile is not None else "http"
    async with _serving(app, host, port, lifespan=True, certfile=certfile) as (_, base_url):
        yield base_url.replace("http://", f"{scheme}://").removesuffix("/v1")


@contextlib.asynccontextmanager
async def serve_app(app: ASGIApp, *, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` while the block runs; yields the base URL (``http://host:port/v1``)."""
    async with _serving(app, host, port) as (_, base_url):
        yield base_url


async def run_until_stopped(
    app: ASGIApp, *, host: str, port: int, on_ready: Callable[[str], None]
) -> None:
    """Serve ``app`` until uvicorn is told to stop (Ctrl-C); ``on_ready`` gets the base URL."""
    async with _serving(app, host, port) as (server, base_url):
        on_ready(base_url)
        await server.stopped.wait()
