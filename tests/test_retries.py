"""Retries: which requests are retried, how long the client waits, and what it never repeats."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import edges_async as ea

from .conftest import API_KEY, RUN_UID, ClientFactory

RUN_BODY = {"uid": RUN_UID, "status": "RUNNING"}


class Script:
    """Answers requests from a list of canned outcomes, noting when each arrived."""

    def __init__(self, *outcomes: httpx.Response | type[httpx.TransportError]) -> None:
        self.outcomes = list(outcomes)
        self.times: list[float] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(asyncio.get_running_loop().time())
        self.requests.append(request)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, httpx.Response):
            return outcome
        raise outcome("simulated", request=request)

    def gaps(self) -> list[float]:
        """The seconds between one request and the next."""
        return [round(b - a, 6) for a, b in itertools.pairwise(self.times)]


async def waits_before_retrying(
    mock_client: ClientFactory, refusal: httpx.Response, **client_options: Any
) -> list[float]:
    """The waits of a GET answered ``refusal``, then the run: the one wait before its retry."""
    script = Script(refusal, httpx.Response(200, json=RUN_BODY))
    await mock_client(script, **client_options).runs.get(RUN_UID)
    return script.gaps()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_get_is_retried_on_retryable_status(mock_client: ClientFactory, status: int) -> None:
    """A GET answered 408, 429 or 5xx is sent again and the later success returned."""
    script = Script(
        httpx.Response(status), httpx.Response(status), httpx.Response(200, json=RUN_BODY)
    )
    client = mock_client(script)
    run = await client.runs.get(RUN_UID)
    assert run.uid == RUN_UID
    assert len(script.requests) == 3
    assert script.gaps() == [2.0, 4.0]


async def test_backoff_grows_exponentially_and_is_capped(mock_client: ClientFactory) -> None:
    """Waits follow min(initial * 2**n, maximum)."""
    script = Script(*[httpx.Response(503)] * 5, httpx.Response(200, json=RUN_BODY))
    client = mock_client(script, max_retries=5, backoff=ea.Backoff(initial=1, maximum=5, jitter=0))
    await client.runs.get(RUN_UID)
    assert script.gaps() == [1.0, 2.0, 4.0, 5.0, 5.0]


async def test_jitter_stays_within_bounds(mock_client: ClientFactory) -> None:
    """Jitter adds between 0 and `jitter` seconds to each wait, from the injected RNG."""
    script = Script(*[httpx.Response(503)] * 3, httpx.Response(200, json=RUN_BODY))
    backoff = ea.Backoff(initial=2, jitter=1, rng=random.Random(7))
    client = mock_client(script, backoff=backoff)
    await client.runs.get(RUN_UID)
    for gap, base in zip(script.gaps(), [2.0, 4.0, 8.0], strict=True):
        assert base <= gap <= base + 1
    assert script.gaps() != [2.0, 4.0, 8.0]


async def test_exhausted_retries_raise_the_last_error(mock_client: ClientFactory) -> None:
    """After max_retries the status error of the last attempt is raised."""
    script = Script(*[httpx.Response(503)] * 3)
    client = mock_client(script, max_retries=2)
    with pytest.raises(ea.InternalServerError):
        await client.runs.get(RUN_UID)
    assert len(script.requests) == 3


async def test_max_retries_zero_sends_once(mock_client: ClientFactory) -> None:
    """max_retries=0 turns retries off."""
    script = Script(httpx.Response(503))
    client = mock_client(script, max_retries=0)
    with pytest.raises(ea.InternalServerError):
        await client.runs.get(RUN_UID)
    assert len(script.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 402, 404, 422, 424])
async def test_client_errors_are_not_retried(mock_client: ClientFactory, status: int) -> None:
    """A 4xx other than 408 and 429 is final."""
    script = Script(httpx.Response(status))
    client = mock_client(script)
    with pytest.raises(ea.APIStatusError):
        await client.runs.get(RUN_UID)
    assert len(script.requests) == 1


async def test_retry_after_seconds_is_honoured(mock_client: ClientFactory) -> None:
    """Retry-After in seconds replaces the backoff."""
    refusal = httpx.Response(429, headers={"Retry-After": "17"})
    assert await waits_before_retrying(mock_client, refusal) == [17.0]


async def test_retry_after_http_date_is_measured_against_date_header(
    mock_client: ClientFactory,
) -> None:
    """Retry-After as an HTTP date waits until then, judged by the response's Date."""
    server_now = datetime(2030, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    headers = {
        "Date": email.utils.format_datetime(server_now, usegmt=True),
        "Retry-After": email.utils.format_datetime(server_now + timedelta(seconds=25), usegmt=True),
    }
    refusal = httpx.Response(503, headers=headers)
    assert await waits_before_retrying(mock_client, refusal) == [25.0]


async def test_retry_after_http_date_without_date_header_uses_wall_clock(
    mock_client: ClientFactory,
) -> None:
    """Without a Date header, an HTTP-date Retry-After is measured on the injected wall clock."""
    now = datetime(2030, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    retry_at = email.utils.format_datetime(now + timedelta(seconds=12), usegmt=True)
    refusal = httpx.Response(429, headers={"Retry-After": retry_at})
    backoff = ea.Backoff(jitter=0, wall_clock=lambda: now)
    assert await waits_before_retrying(mock_client, refusal, backoff=backoff) == [12.0]


async def test_retry_after_is_capped(mock_client: ClientFactory) -> None:
    """A huge Retry-After is capped at max_retry_after."""
    refusal = httpx.Response(429, headers={"Retry-After": "86400"})
    backoff = ea.Backoff(jitter=0, max_retry_after=timedelta(seconds=30))
    assert await waits_before_retrying(mock_client, refusal, backoff=backoff) == [30.0]


@pytest.mark.parametrize("value", ["soon", "", "-5", "nan"])
async def test_unreadable_or_negative_retry_after(mock_client: ClientFactory, value: str) -> None:
    """An unreadable or negative Retry-After is garbage, as if absent: backoff decides."""
    refusal = httpx.Response(503, headers={"Retry-After": value})
    assert await waits_before_retrying(mock_client, refusal) == [2.0]


@pytest.mark.parametrize(
    ("method", "error"),
    [
        # A GET that failed in transport, however far it got.
        ("get", httpx.ConnectError),
        ("get", httpx.ReadError),
        ("get", httpx.RemoteProtocolError),
        ("get", httpx.ReadTimeout),
        # A POST (cancel) whose connection could not even be opened: it never left.
        ("cancel", httpx.ConnectError),
        ("cancel", httpx.ConnectTimeout),
        ("cancel", httpx.PoolTimeout),
    ],
)
async def test_transport_failures_safe_to_repeat_are_retried(
    mock_client: ClientFactory, method: str, error: type[httpx.TransportError]
) -> None:
    """A GET that failed in transport, or a POST that surely never left, is sent again."""
    script = Script(error, httpx.Response(200, json=RUN_BODY))
    runs = mock_client(script).runs
    send = runs.get if method == "get" else runs.cancel
    assert (await send(RUN_UID)).uid == RUN_UID
    assert len(script.requests) == 2


async def test_transport_errors_exhausted_raise_connection_error(
    mock_client: ClientFactory,
) -> None:
    """Transport failures that outlast the retries raise APIConnectionError."""
    client = mock_client(Script(*[httpx.ReadError] * 4))
    with pytest.raises(ea.APIConnectionError) as caught:
        await client.runs.get(RUN_UID)
    assert not isinstance(caught.value, ea.APITimeoutError)
    assert "ReadError" in str(caught.value)


async def test_timeouts_exhausted_raise_timeout_error(mock_client: ClientFactory) -> None:
    """Timeouts that outlast the retries raise APITimeoutError."""
    client = mock_client(Script(*[httpx.ReadTimeout] * 4))
    with pytest.raises(ea.APITimeoutError):
        await client.runs.get(RUN_UID)


@pytest.mark.parametrize("status", [408, 500, 503])
async def test_post_is_never_retried_on_status(mock_client: ClientFactory, status: int) -> None:
    """A POST the server may have acted on is sent once, whatever it was answered."""
    script = Script(httpx.Response(status), httpx.Response(200, json=RUN_BODY))
    client = mock_client(script)
    with pytest.raises(ea.APIStatusError):
        await client.runs.cancel(RUN_UID)
    assert len(script.requests) == 1


async def test_a_post_refused_with_429_is_sent_again_after_retry_after(
    mock_client: ClientFactory,
) -> None:
    """A 429 means the request was refused, not acted on: a launch goes again, once."""
    script = Script(
        httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json=RUN_BODY)
    )
    client = mock_client(script)
    started = asyncio.get_running_loop().time()
    run = await client.actions.run_async("linkedin-extract-people", inputs=[{"a": 1}])
    assert run.uid == RUN_BODY["uid"]
    assert [request.method for request in script.requests] == ["POST", "POST"]
    assert asyncio.get_running_loop().time() - started >= 3.0


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError]
)
async def test_post_is_not_retried_when_it_may_have_arrived(
    mock_client: ClientFactory, error: type[httpx.TransportError]
) -> None:
    """A POST whose connection broke after sending may have arrived, so it is not repeated."""
    script = Script(error, httpx.Response(200, json=RUN_BODY))
    client = mock_client(script)
    with pytest.raises(ea.APIConnectionError):
        await client.runs.resume(RUN_UID)
    assert len(script.requests) == 1


async def test_limiter_is_consulted_on_every_attempt(mock_client: ClientFactory) -> None:
    """Each attempt, retries included, waits on the limiter and reports back to it."""

    class CountingLimiter:
        def __init__(self) -> None:
            self.acquired = 0
            self.feedback_statuses: list[int | None] = []

        async def acquire(self, request: httpx.Request) -> None:
            self.acquired += 1

        def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
            self.feedback_statuses.append(response.status_code if response else None)

    limiter = CountingLimiter()
    script = Script(httpx.ReadError, httpx.Response(429), httpx.Response(200, json=RUN_BODY))
    client = mock_client(script, limiter=limiter)
    await client.runs.get(RUN_UID)
    assert limiter.acquired == 3
    assert limiter.feedback_statuses == [None, 429, 200]


async def test_same_origin_redirect_is_followed(mock_client: ClientFactory) -> None:
    """A redirect within the base URL's origin is followed with the key."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json=RUN_BODY)
        return httpx.Response(307, headers={"Location": f"/v1/runs/{RUN_UID}/status"})

    client = mock_client(handler)
    assert (await client.runs.get(RUN_UID)).uid == RUN_UID
    assert [request.url.path for request in seen] == [
        f"/v1/runs/{RUN_UID}",
        f"/v1/runs/{RUN_UID}/status",
    ]
    assert seen[1].headers["x-api-key"] == API_KEY


async def test_redirect_to_another_host_is_not_followed(mock_client: ClientFactory) -> None:
    """A redirect elsewhere is an error, and the key never reaches that host."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"Location": "https://evil.example/steal"})

    client = mock_client(handler)
    with pytest.raises(ea.APIStatusError, match="not followed") as caught:
        await client.runs.get(RUN_UID)
    assert hosts == ["api.edges.run"]
    assert caught.value.status_code == 302
