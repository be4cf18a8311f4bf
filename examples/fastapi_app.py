"""A FastAPI backend on edges_async: launch runs, await them, and receive their callbacks.

The pattern:

- one ``AsyncClient`` per worker process, built with the app and opened in the
  lifespan (it holds the connection pool, the rate limiter and the poller);
- a dependency, ``EdgesClient``, to reach it from the endpoints;
- ``POST /runs`` launches a run whose callbacks come back to this app;
- ``GET /runs/{run_uid}/wait`` awaits it with a timeout (202 and the last
  state seen when it is not done yet), returning the moment the final
  callback arrives;
- the callback receiver mounted at ``/edges/callbacks``: it checks the
  shared secret Edges sends back in a header, and hands each callback to the
  client.

Run it with ``uvicorn examples.fastapi_app:app`` behind HTTPS, with
``EDGES_API_KEY``, ``EDGES_PLAN``, ``EDGES_CALLBACK_SECRET`` (16+ characters)
and ``PUBLIC_URL`` (the HTTPS origin Edges can reach this app at) set; one
missing or wrong stops it at startup with a one-line ``ConfigurationError``
naming it. With several workers (``uvicorn --workers 4``) or hosts, set
``EDGES_REDIS_URL`` too (``pip install edges-async[redis]``): the workers then
share the workspace's budget and one poller, and a callback reaching any
worker ends the waits in all of them. ``tests/test_fastapi_example.py`` serves
it with uvicorn over TLS on a loopback port, against the simulator posting
real callbacks; ``tests/test_fastapi_workers.py`` with ``--workers 4`` and Redis.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

import edges_async as ea
from edges_async.callbacks import CallbackReceiver

CALLBACK_PATH = "/edges/callbacks"


class LaunchRequest(BaseModel):
    """What ``POST /runs`` takes."""

    action: str
    inputs: list[dict[str, Any]] = Field(min_length=1)
    parameters: dict[str, Any] | None = None


def get_client(request: Request) -> ea.AsyncClient:
    """The dependency giving endpoints the app's one ``AsyncClient``."""
    client: ea.AsyncClient = request.app.state.edges
    return client


def get_receiver(request: Request) -> CallbackReceiver:
    """The dependency giving endpoints the app's callback receiver."""
    receiver: CallbackReceiver = request.app.state.receiver
    return receiver


EdgesClient = Annotated[ea.AsyncClient, Depends(get_client)]
Receiver = Annotated[CallbackReceiver, Depends(get_receiver)]


def callback_url_under(public_url: str | None) -> str:
    """The receiver's URL under ``PUBLIC_URL``, checked now as a launch would check it.

    A wrong ``PUBLIC_URL`` would otherwise show only at the first launch, as a
    422 to the caller.
    """
    wanted = "the https:// origin Edges can reach this app at"
    if public_url is None or not public_url.strip():
        raise ea.ConfigurationError(
            f"PUBLIC_URL is not set: it must be {wanted}, e.g. https://app.example.com."
        )
    public_url = public_url.strip()
    try:
        url: httpx.URL | None = httpx.URL(public_url)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme != "https" or not url.host or url.query or url.fragment:
        raise ea.ConfigurationError(f"PUBLIC_URL must be {wanted}, got {public_url!r}.")
    try:
        # The SDK's own check of callback URLs, the one every launch runs.
        return ea.Callback(url=public_url.rstrip("/") + CALLBACK_PATH).url
    except ValidationError as exc:
        reasons = "; ".join(
            str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()
        )
        raise ea.ConfigurationError(
            f"PUBLIC_URL must be {wanted}, got {public_url!r}: {reasons}."
        ) from None


def callback_secret(secret: str | None) -> str:
    """``EDGES_CALLBACK_SECRET``, checked; no error shows it."""
    make_one = "e.g. from python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if not secret:
        raise ea.ConfigurationError(
            "EDGES_CALLBACK_SECRET is not set: it must be a random string of 16+ printable "
            f"characters, {make_one}."
        )
    if not secret.isprintable():
        raise ea.ConfigurationError(
            "EDGES_CALLBACK_SECRET must be 16+ printable characters, but it holds a line "
            f"break or another unprintable one: use a random string, {make_one}."
        )
    if len(secret) < 16:
        raise ea.ConfigurationError(
            f"EDGES_CALLBACK_SECRET must be 16+ printable characters, got {len(secret)}: "
            f"use a random string, {make_one}."
        )
    return secret


def create_app(
    *,
    client: ea.AsyncClient | None = None,
    public_url: str | None = None,
    secret: str | None = None,
) -> FastAPI:
    """The app; each argument left out comes from the environment.

    ``public_url`` defaults to ``PUBLIC_URL``, ``secret`` to
    ``EDGES_CALLBACK_SECRET``, and ``client`` to an ``AsyncClient`` configured
    from ``EDGES_API_KEY``, ``EDGES_PLAN`` and ``EDGES_BASE_URL``.

    Raises:
        ea.ConfigurationError: A setting is missing or wrong; its one-line
            message names every such setting and what it must be.
    """
    problems: list[str] = []
    try:
        callback_url = callback_url_under(public_url or os.environ.get("PUBLIC_URL"))
    except ea.ConfigurationError as exc:
        problems.append(str(exc))
    try:
        checked_secret = callback_secret(secret or os.environ.get("EDGES_CALLBACK_SECRET"))
    except ea.ConfigurationError as exc:
        problems.append(str(exc))
    try:
        # Several workers (uvicorn --workers 4, gunicorn) or hosts: with
        # EDGES_REDIS_URL set they share one budget, one poller and the callbacks.
        coordination = ea.RedisCoordination() if os.environ.get("EDGES_REDIS_URL") else None
        edges = client if client is not None else ea.AsyncClient(coordination=coordination)
    except ea.ConfigurationError as exc:
        problems.append(str(exc))
    if problems:
        raise ea.ConfigurationError(" ".join(problems))
    receiver = CallbackReceiver(edges, secret=checked_secret)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with edges:  # closed, and every waiter woken, when the app stops
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.edges = edges
    app.state.receiver = receiver
    app.state.callback_url = callback_url
    app.include_router(receiver.router(CALLBACK_PATH))

    @app.post("/runs", status_code=201)
    async def launch(
        launch: LaunchRequest, client: EdgesClient, receiver: Receiver, request: Request
    ) -> dict[str, Any]:
        try:
            run = await client.actions.run_async(
                launch.action,
                inputs=launch.inputs,
                parameters=launch.parameters,
                callback=receiver.callback(request.app.state.callback_url, on="final"),
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"run_uid": run.uid, "status": run.status}

    @app.get("/runs/{run_uid}/wait", response_model=None)
    async def wait(
        run_uid: str, client: EdgesClient, timeout: float = 30.0
    ) -> dict[str, Any] | JSONResponse:
        try:
            run = await client.wait_for_run(run_uid, timeout=timeout)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except ea.NotFoundError:
            raise HTTPException(404, f"No run {run_uid}") from None
        except ea.WaitTimeoutError as exc:
            last = exc.runs[0].model_dump(mode="json") if exc.runs else None
            return JSONResponse({"done": False, "run": last}, status_code=202)
        return {"done": True, "run": run.model_dump(mode="json")}

    return app


def __getattr__(name: str) -> FastAPI:
    # ``uvicorn examples.fastapi_app:app`` builds the app from the environment on first use.
    if name == "app":
        return create_app()
    raise AttributeError(name)
