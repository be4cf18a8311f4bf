"""``CallbackReceiver``: the endpoint Edges POSTs run callbacks to, as a plain ASGI app.

Edges signs nothing: a receiver knows a callback is genuine by a header the
launch asked Edges to send (a launch's ``callback.headers`` are sent back
with each callback). So the receiver, in this order:

1. answers 405 to anything but a POST;
2. checks the shared-secret header in constant time (401 when missing or wrong);
3. refuses a body over ``max_body_bytes`` (413), by its ``Content-Length`` or
   while reading it;
4. validates the body as a :class:`CallbackEvent` (400);
5. answers 200 to a ``callback_ref_uid`` already taken, doing nothing more
   (Edges retries a delivery with the same one);
6. answers 503 with ``Retry-After`` when the buffer of callbacks waiting for
   readers is full (``max_buffered_bytes`` of bodies, ``max_buffered_results``
   results), so Edges delivers it again later rather than it being dropped; a
   final callback without results is always taken, since it ends waits;
7. keeps the event in the run's stream, publishes it on its client's run
   events hub (a final callback ends the client's waits for the run at once)
   and answers 200.

Nothing in between awaits the network (the answer is fast), except with a
client coordinated through Redis: there the callback is claimed in Redis
first (``SET NX``: a delivery that reached another worker counts once), kept
in its run's stream in Redis (:mod:`._shared_run_streams`: read by
:meth:`CallbackReceiver.events` in any process; the buffer bounds hold over
the whole workspace, and a 503 gives the claim back) and put on the
workspace's stream before the 200, so a crash right after the answer loses
nothing and waits in every process hear it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, final

import pydantic

from ._callback_models import CallbackEvent
from ._memory import remember
from ._models import Callback
from ._params import check_run_uid
from ._run_events import CallbackReceived, CallbacksServed, RunEvents
from ._run_streams import CallbackReader, RunStreams
from ._shared_polling import SharedPolling
from ._shared_run_streams import ClientClosed, SharedRunStreams

if TYPE_CHECKING:
    import uuid

    from fastapi import APIRouter

    from ._client import AsyncClient

__all__ = ["DEFAULT_SECRET_HEADER", "CallbackReceiver"]

DEFAULT_SECRET_HEADER = "X-Edges-Callback-Secret"
# De-duplication keeps a 16-byte BLAKE2b digest of each callback_ref_uid taken,
# not the uid itself (up to 200 characters): ~100 bytes an entry with the dict,
# so 200,000 of them are ~20 MB whatever the uids' length. The window only has
# to outlast Edges' redelivery of a callback whose 200 got lost (seconds to
# minutes): 200,000 callbacks is over 3,000 a second for a minute.
_MAX_SEEN = 200_000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Refused(Exception):
    def __init__(self, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


@final
class CallbackReceiver:
    """Receives Edges callbacks and hands them to a client and to per-run streams.

    Mount it as an ASGI app (``app.mount("/edges/callbacks", receiver)``) or
    include :meth:`router` in a FastAPI app; launch runs with
    :meth:`callback`, which adds the secret header for Edges to send back::

        receiver = CallbackReceiver(client, secret=os.environ["EDGES_CALLBACK_SECRET"])
        run = await client.actions.run_async(
            "linkedin-extract-people",
            inputs=[...],
            callback=receiver.callback("https://example.com/edges/callbacks", on="all"),
        )
        async for result in receiver.results(run.uid):  # partial results, as they come
            ...

    It must run on the client's event loop (as it does inside the same app).

    Args:
        client: The client whose waits (``wait_for_run``, ``watch_runs``) a final
            callback ends, and whose polling slows down for runs covered by
            callbacks; ``None`` to only receive.
        secret: The shared secret Edges must send in ``header`` (16+ characters).
        header: The header name carrying it.
        max_body_bytes: Bodies over this size are refused with 413.
        max_buffered_results: Partial results held for readers of
            :meth:`results` over every run (with a client coordinated through
            Redis, over the workspace's); past it, callbacks get 503.
        max_buffered_bytes: The bytes of callback bodies held for readers of
            :meth:`events` over every run (each event counts the size of the
            body it arrived in; parsed, it takes a few times that); past it,
            callbacks get 503. A final callback without results is still
            taken, keeping only its ``callback_ref_uid``, run uid and status.
            Keep it above ``max_body_bytes``: a partial whose body alone
            exceeds it is refused every time.
    """

    __slots__ = (
        "_events",
        "_header",
        "_max_body",
        "_secret",
        "_seen",
        "_shared",
        "_shared_streams",
        "_streams",
        "header",
    )

    def __init__(
        self,
        client: AsyncClient | None = None,
        *,
        secret: str,
        header: str = DEFAULT_SECRET_HEADER,
        max_body_bytes: int = 2 * 1024 * 1024,
        max_buffered_results: int = 100_000,
        max_buffered_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if not isinstance(secret, str) or len(secret) < 16 or not secret.isprintable():
            raise ValueError("secret must be a printable string of at least 16 characters")
        if not isinstance(header, str) or not header or not header.isascii() or ":" in header:
            raise ValueError(f"header must be an HTTP header name, got {header!r}")
        for name, value in (
            ("max_body_bytes", max_body_bytes),
            ("max_buffered_results", max_buffered_results),
            ("max_buffered_bytes", max_buffered_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        # The client's hub, where callbacks are news for its waits; a receiver
        # without a client publishes to a hub nobody listens to.
        self._events: RunEvents = client._events if client is not None else RunEvents()
        # With coordination, callbacks are claimed and told in Redis: a callback
        # delivered twice to two workers counts once, and waits in every
        # process hear it.
        poller = client._poller if client is not None else None
        self._shared = poller if isinstance(poller, SharedPolling) else None
        self.header = header
        """The name of the header carrying the shared secret."""
        self._header = header.lower().encode("latin-1")
        self._secret = secret.encode()
        self._max_body = max_body_bytes
        self._seen: dict[bytes, None] = {}
        self._streams = RunStreams(max_buffered_results, max_buffered_bytes)
        # Coordinated, the runs' streams live in Redis (readable in any process);
        # this process's buffer only holds what is taken while Redis fails.
        shared = self._shared
        self._shared_streams = (
            None
            if shared is None or client is None
            else SharedRunStreams(
                partial(_redis_of, client, shared),
                shared._keys,
                self._streams,
                max_buffered_results=max_buffered_results,
                max_buffered_bytes=max_buffered_bytes,
            )
        )

    # -- for launching -----------------------------------------------------------

    def callback(
        self,
        url: str,
        *,
        on: Literal["all", "final"] = "final",
        headers: dict[str, str] | None = None,
    ) -> Callback:
        """The ``callback=`` of a launch whose callbacks this receiver gets at ``url``.

        The secret header is added to ``headers``; the client, if any, learns
        that runs launched with it are covered by callbacks.
        """
        callback = Callback(
            url=url, on=on, headers={**(headers or {}), self.header: self._secret.decode()}
        )
        self._events.publish(CallbacksServed(callback.url))
        return callback

    # -- for reading ---------------------------------------------------------------

    def events(self, run_uid: str | uuid.UUID) -> CallbackReader[CallbackEvent]:
        """Each callback of the run not read yet, in arrival order, ending after its final one.

        Events that arrived before the call are buffered for it; one reader per
        run at a time (a second one raises ``RuntimeError``), and each event is
        yielded once, to one reader. A reader left with ``break`` (or closed
        with ``aclose()``) lets go of the run at once: the next call goes on
        with the events not read yet. Partials
        can arrive after the final callback (Edges redelivers later one it got
        a 503 for):

        - one that arrives before the final was yielded is yielded before it:
          the final callback is always the last event;
        - one that arrives after the final was yielded is kept for the run, and
          the next call yields it, then ends as the run is known finished;
        - a call for a run whose final was yielded already, with nothing new,
          ends at once (for the last 50,000 runs whose stream ended).

        A final callback taken while the buffer was full (see
        ``max_buffered_bytes``) comes with its ``callback_ref_uid``, run uid and
        status only.

        Wrap it in ``anyio.fail_after`` to bound the wait: a callback Edges
        never delivers would otherwise be awaited forever.

        With a client coordinated through Redis, the run's callbacks taken by
        any process of the workspace, by the same rules across processes (a
        second reader in another process raises ``RuntimeError`` too); see
        :mod:`edges_async._shared_run_streams` for the details and what
        readers see while Redis fails.
        """
        if self._shared_streams is not None:
            return self._shared_streams.events(check_run_uid(run_uid))
        return self._streams.events(check_run_uid(run_uid))

    def results(self, run_uid: str | uuid.UUID) -> CallbackReader[Any]:
        """Each partial result of an ``on: "all"`` run as it arrives; ends with the run.

        The results of the events :meth:`events` yields, in the same order, so
        the same rules hold: it ends after the final callback's results, and
        results arriving after that (a redelivered partial) are yielded by the
        next call for the run, which ends once it has yielded them. A reader
        left in the middle of an event's results leaves the rest of them to
        the next call. Compare
        the total count with the run's ``output_count`` to check that nothing
        is missing: the API documents that check for callbacks.
        """
        if self._shared_streams is not None:
            return self._shared_streams.results(check_run_uid(run_uid))
        return self._streams.results(check_run_uid(run_uid))

    # -- serving -------------------------------------------------------------------

    def router(self, path: str = "/edges/callbacks") -> APIRouter:
        """A FastAPI router serving this receiver at ``path`` (POST only).

        Needs the ``fastapi`` extra: ``pip install 'edges-async[fastapi]'``.
        """
        from fastapi import APIRouter
        from starlette.routing import Route

        router = APIRouter()
        # A Route whose endpoint is not a function is served as a plain ASGI app.
        router.routes.append(Route(path, self, methods=["POST"], include_in_schema=False))
        return router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            await _serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            event = await self._take(scope, receive)
        except _Refused as refused:
            await _answer(send, refused.status, {"detail": refused.detail}, refused.headers)
            return
        await _answer(send, 200, {"ok": True, "duplicate": event is None})

    async def _take(self, scope: Scope, receive: Receive) -> CallbackEvent | None:
        if scope["method"] != "POST":
            raise _Refused(405, "Callbacks are POSTed", ((b"allow", b"POST"),))
        headers = scope["headers"]
        secret = next((value for name, value in headers if name.lower() == self._header), None)
        if secret is None or not hmac.compare_digest(secret, self._secret):
            raise _Refused(401, f"Missing or wrong {self.header} header")
        length = next((value for name, value in headers if name.lower() == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            raise _Refused(413, f"The body exceeds {self._max_body} bytes")
        body = await self._read_body(receive)
        try:
            event = CallbackEvent.model_validate_json(body)
        except (pydantic.ValidationError, ValueError) as exc:
            raise _Refused(400, f"Not an Edges callback body: {_first_error(exc)}") from None
        ref = hashlib.blake2b(event.callback_ref_uid.encode(), digest_size=16).digest()
        if ref in self._seen:
            return None
        claim = await self._shared.claim(ref) if self._shared is not None else "ours"
        if claim == "done":
            remember(self._seen, ref, None, limit=_MAX_SEEN)
            return None  # another process took it
        if claim == "busy":  # another process is taking it: if it dies, the next is ours
            raise _Refused(503, "Callback being taken elsewhere", ((b"retry-after", b"5"),))
        if self._shared_streams is not None:
            taken = await self._shared_streams.add(event, body)
        else:
            taken = self._streams.add(event, body)
        if not taken:
            if self._shared is not None:
                await self._shared.unclaim(ref)  # for the delivery Edges will try again
            raise _Refused(503, "Callback buffer full", ((b"retry-after", b"30"),))
        remember(self._seen, ref, None, limit=_MAX_SEEN)
        if self._shared is not None:
            await self._shared.tell(event, ref)  # on the stream before the 200
        self._events.publish(CallbackReceived(event))
        return event

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "The client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _Refused(413, f"The body exceeds {self._max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def __repr__(self) -> str:
        return (
            f"<CallbackReceiver header={self.header!r}"
            f" buffered_bytes={self._streams.buffered_bytes}>"
        )


@contextlib.asynccontextmanager
async def _redis_of(client: AsyncClient, shared: SharedPolling) -> AsyncIterator[Any]:
    """The coordinated client's Redis, kept open while used (never reopened once closed).

    Counted as a user of the coordination's connection like an open client
    is, so that closing the client meanwhile does not close it under the
    command (a client never entered never closes it).
    """
    coordination = client._coordination
    if client.is_closed or coordination is None:
        raise ClientClosed("the receiver's client is closed")
    if not client._joined:
        yield shared._redis
        return
    await coordination._acquire_client()
    try:
        yield shared._redis
    finally:
        await coordination._release_client()


def _first_error(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return str(exc)


async def _answer(
    send: Send, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def _serve_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
