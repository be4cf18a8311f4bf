"""Launching runs: the body sent, and bad arguments refused before anything is sent."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import edges_async as ea
from edges_async.resources import _actions

from .conftest import LAUNCH_RESPONSE, RUN_UID, ClientFactory, Handler, Recorder

IDENTITY = "0b4bd5d4-6a5c-4f0e-9d83-333333333333"


async def test_run_async_sends_documented_body(mock_client: ClientFactory) -> None:
    """run_async POSTs inputs, parameters, identity and callback to /run/async."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=LAUNCH_RESPONSE)

    client = mock_client(handler)
    run = await client.actions.run_async(
        "linkedin-extract-people",
        inputs=[{"linkedin_profile_url": "https://www.linkedin.com/in/a"}],
        parameters={"max_results": 5},
        identity_mode="managed",
        identity_ids=[IDENTITY],
        callback=ea.Callback(url="https://hooks.example/edges", headers={"X-Secret": "s"}),
    )
    assert run.uid == RUN_UID
    assert run.status is ea.RunStatus.CREATED
    assert sent[0].method == "POST"
    assert sent[0].url.path == "/v1/actions/linkedin-extract-people/run/async"
    assert json.loads(sent[0].content) == {
        "inputs": [{"linkedin_profile_url": "https://www.linkedin.com/in/a"}],
        "parameters": {"max_results": 5},
        "identity_mode": "managed",
        "identity_ids": [IDENTITY],
        "callback": {
            "url": "https://hooks.example/edges",
            "on": "final",
            "headers": {"X-Secret": "s"},
        },
    }


async def test_callback_as_plain_dict(mock_client: ClientFactory) -> None:
    """A callback may be given as a dict."""
    recorder = Recorder(httpx.Response(200, json=LAUNCH_RESPONSE))
    client = mock_client(recorder)
    await client.actions.run_async(
        "a", inputs=[{}], callback={"url": "https://h.example/cb", "on": "all"}
    )
    sent = json.loads(recorder.requests[0].content)
    assert sent["callback"] == {"url": "https://h.example/cb", "on": "all"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"inputs": []},
        {"inputs": {"a": 1}},
        {"inputs": "abc"},
        {"inputs": [1, 2]},
        {"inputs": [{}] * 100_001},
        {"inputs": [{}], "parameters": ["x"]},
        {"inputs": [{}], "identity_mode": "borrowed"},
        {"inputs": [{}], "identity_ids": ["not-a-uuid"]},
        {"inputs": [{}], "callback": {"url": "http://hooks.example/cb"}},
        {"inputs": [{}], "callback": {"url": "https://hooks.example/cb", "on": "sometimes"}},
        {"inputs": [{}], "callback": {"url": "not a url"}},
        {"inputs": [{}], "callback": {"url": "https://h.example", "secret": "typo"}},
        {"inputs": [{}], "action": "bad slug/../x"},
        {"inputs": [{}], "action": "linkedin-extract-people\n"},
        {"inputs": [{}], "callback": {"url": "https://127.0.0.1/cb"}},
    ],
)
async def test_bad_launch_arguments_send_nothing(
    mock_client: ClientFactory, kwargs: dict[str, Any]
) -> None:
    """Every argument that can never be valid raises ValueError before any request."""
    recorder = Recorder(httpx.Response(500))
    client = mock_client(recorder)
    action = kwargs.pop("action", "linkedin-extract-people")
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        await client.actions.run_async(action, **kwargs)
    assert recorder.requests == []


async def test_launch_answered_500_is_sent_once(mock_client: ClientFactory) -> None:
    """A launch is never repeated after it may have reached the server."""
    recorder = Recorder(httpx.Response(500))
    client = mock_client(recorder)
    with pytest.raises(ea.InternalServerError):
        await client.actions.run_async("linkedin-extract-people", inputs=[{}])
    assert len(recorder.requests) == 1


def test_callback_model_refuses_plain_http() -> None:
    """Callback URLs must be HTTPS."""
    with pytest.raises(ValueError, match="https"):
        ea.Callback(url="http://hooks.example/cb")


UNREACHABLE_CALLBACK_URLS = [
    "https://localhost/cb",
    "https://LOCALHOST./cb",
    "https://foo.localhost/cb",
    "https://127.0.0.1/cb",
    "https://127.0.0.1:8443/cb",
    "https://127.1/cb",  # legacy IPv4 forms, as resolvers read them
    "https://2130706433/cb",
    "https://0.0.0.0/cb",
    "https://10.1.2.3/cb",
    "https://172.16.0.1/cb",
    "https://192.168.0.1/cb",
    "https://169.254.1.1/cb",
    "https://100.64.0.1/cb",
    "https://[::1]/cb",
    "https://[::]/cb",
    "https://[::ffff:127.0.0.1]/cb",
    "https://[::ffff:192.168.0.1]/cb",
    "https://[fc00::1]/cb",
    "https://[fd12:3456::1]/cb",
    "https://[fe80::1]/cb",
]


@pytest.mark.parametrize("url", UNREACHABLE_CALLBACK_URLS)
async def test_a_callback_edges_can_never_reach_is_refused_before_sending(
    mock_client: ClientFactory, url: str
) -> None:
    """Loopback, link-local, private and unspecified addresses are a ValueError, nothing sent."""
    recorder = Recorder(httpx.Response(200, json=LAUNCH_RESPONSE))
    client = mock_client(recorder)
    with pytest.raises(ValueError, match="never reach"):
        ea.Callback(url=url)
    with pytest.raises(ValueError, match="never reach"):
        await client.actions.run_async("a", inputs=[{}], callback={"url": url})
    with pytest.raises(ValueError, match="never reach"):
        await client.actions.schedule("a", inputs=[{}], cron="0 9 * * *", callback={"url": url})
    assert recorder.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example/cb",
        "https://callbacks.test:8443/edges",
        "https://localhost.example.com/cb",
        "https://8.8.8.8/cb",
        "https://[2606:4700:4700::1111]/cb",
    ],
)
async def test_a_callback_on_a_public_host_is_sent(mock_client: ClientFactory, url: str) -> None:
    """Host names (not resolved) and public addresses are accepted and sent as given."""
    recorder = Recorder(httpx.Response(200, json=LAUNCH_RESPONSE))
    client = mock_client(recorder)
    await client.actions.run_async("a", inputs=[{}], callback={"url": url})
    assert json.loads(recorder.requests[0].content)["callback"]["url"] == url


# -- schedule ----------------------------------------------------------------


async def test_schedule_sends_cron_and_timezone(mock_client: ClientFactory) -> None:
    """schedule POSTs the async body plus cron and timezone to /run/schedule."""
    recorder = Recorder(httpx.Response(200, json={**LAUNCH_RESPONSE, "status": "SCHEDULED"}))
    client = mock_client(recorder)
    run = await client.actions.schedule(
        "a", inputs=[{"x": 1}], cron="0  9 * * 1-5", timezone="Europe/Paris"
    )
    assert run.status is ea.RunStatus.SCHEDULED
    assert recorder.requests[0].url.path == "/v1/actions/a/run/schedule"
    assert json.loads(recorder.requests[0].content) == {
        "inputs": [{"x": 1}],
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Paris",
    }


NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock launches read is fixed at NOW."""
    monkeypatch.setattr(_actions, "utc_now", lambda: NOW)


@pytest.mark.usefixtures("wall_clock")
async def test_schedule_at_is_sent_in_utc(mock_client: ClientFactory) -> None:
    """schedule_at takes an aware datetime or ISO string and is sent as UTC ISO 8601."""
    recorder = Recorder(httpx.Response(200, json=LAUNCH_RESPONSE))
    client = mock_client(recorder)
    at = datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    await client.actions.schedule("a", inputs=[{}], schedule_at=at)
    await client.actions.schedule("a", inputs=[{}], schedule_at="2026-12-01T09:30:00Z")
    sent = [json.loads(request.content)["schedule_at"] for request in recorder.requests]
    assert sent == ["2026-12-01T09:30:00Z", "2026-12-01T09:30:00Z"]


@pytest.mark.usefixtures("wall_clock")
@pytest.mark.parametrize(
    "schedule_at",
    [
        NOW - timedelta(seconds=61),
        NOW - timedelta(days=365),
        "2026-11-20T11:58:59Z",
        "2026-11-20T12:58:00+02:00",  # 10:58 UTC
    ],
)
async def test_schedule_at_more_than_a_minute_past_is_refused(
    mock_client: ClientFactory, schedule_at: datetime | str
) -> None:
    """A one-off time over a minute before the wall clock's now raises ValueError, sends nothing."""
    recorder = Recorder(httpx.Response(200, json=LAUNCH_RESPONSE))
    client = mock_client(recorder)
    with pytest.raises(ValueError, match="in the past"):
        await client.actions.schedule("a", inputs=[{}], schedule_at=schedule_at)
    assert recorder.requests == []


@pytest.mark.usefixtures("wall_clock")
async def test_schedule_at_up_to_a_minute_past_is_sent(mock_client: ClientFactory) -> None:
    """Up to a minute behind the wall clock (clock skew, a time taken as "now") is accepted."""
    recorder = Recorder(httpx.Response(200, json=LAUNCH_RESPONSE))
    client = mock_client(recorder)
    for moment in (NOW - timedelta(seconds=60), NOW, NOW + timedelta(days=30)):
        await client.actions.schedule("a", inputs=[{}], schedule_at=moment)
    sent = [json.loads(request.content)["schedule_at"] for request in recorder.requests]
    assert sent == ["2026-11-20T11:59:00Z", "2026-11-20T12:00:00Z", "2026-12-20T12:00:00Z"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "exactly one of cron= and schedule_at="),
        ({"cron": "* * * * *", "schedule_at": "2026-12-01T09:30:00Z"}, "exactly one"),
        ({"cron": "* * * *"}, "5 fields"),
        ({"cron": "* * * * * *"}, "5 fields"),
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "@daily"}, "5 fields"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "IANA"),
        ({"cron": "0 9 * * *", "timezone": "../etc/passwd"}, "IANA"),
        ({"schedule_at": "2026-12-01T09:30:00"}, "timezone-aware"),
        ({"schedule_at": datetime(2026, 12, 1, 9, 30)}, "timezone-aware"),
        ({"schedule_at": "next tuesday"}, "timezone-aware"),
        ({"schedule_at": "2026-12-01T09:30:00Z", "timezone": "UTC"}, "timezone goes with cron"),
        ({"cron": "0 9 * * *", "inputs": []}, "at least one input"),
        ({"cron": "0 9 * * *", "callback": {"url": "http://h.example"}}, "https"),
    ],
)
async def test_schedule_refuses_bad_arguments_before_sending(
    mock_client: ClientFactory, arguments: dict[str, Any], message: str
) -> None:
    """Each refused argument raises ValueError and sends nothing."""
    recorder = Recorder(httpx.Response(200, json=LAUNCH_RESPONSE))
    client = mock_client(recorder)
    arguments.setdefault("inputs", [{}])
    with pytest.raises(ValueError, match=message):
        await client.actions.schedule("a", **arguments)
    assert recorder.requests == []


async def test_a_launch_answered_500_is_sent_once(mock_client: ClientFactory) -> None:
    """Launches are never retried once they may have reached the server: a 500 is raised."""
    recorder = Recorder(httpx.Response(500, json={"message": "boom"}))
    client = mock_client(recorder, max_retries=3)
    with pytest.raises(ea.InternalServerError):
        await client.actions.run_async("a", inputs=[{}])
    with pytest.raises(ea.InternalServerError):
        await client.actions.schedule("a", inputs=[{}], cron="0 9 * * *")
    with pytest.raises(ea.InternalServerError):
        await client.actions.run_live("a", input={})
    assert len(recorder.requests) == 3


# -- live --------------------------------------------------------------------


async def test_run_live_follows_pages_by_posting_the_same_body(mock_client: ClientFactory) -> None:
    """More pages: the same body POSTed to the full X-Pagination-Next URL, until none."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        page = int(request.url.params.get("cursor", "0"))
        headers = {}
        if page < 2:
            next_url = f"https://api.edges.run/v1/actions/a/run/live?cursor={page + 1}"
            headers["X-Pagination-Next"] = next_url
        return httpx.Response(200, json=[{"n": 2 * page}, {"n": 2 * page + 1}], headers=headers)

    client = mock_client(handler)
    live = await client.actions.run_live("a", input={"q": "x"}, parameters={"max_results": 6})
    assert live.results == [{"n": 0}, {"n": 1}]
    assert live.has_more
    assert len(sent) == 1  # further pages only on demand
    assert [item["n"] async for item in live] == list(range(6))
    assert [request.method for request in sent] == ["POST"] * 3
    assert len({request.content for request in sent}) == 1
    assert json.loads(sent[0].content) == {"input": {"q": "x"}, "parameters": {"max_results": 6}}
    assert [request.url.params.get("cursor") for request in sent] == [None, "1", "2"]


def linking_to(next_url: str) -> Handler:
    """Answers every request with one result and ``next_url`` as the next page."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{}], headers={"X-Pagination-Next": next_url})

    return handler


async def test_run_live_refuses_a_next_page_on_another_host(mock_client: ClientFactory) -> None:
    """The key is never sent to a next-page URL off the base URL's origin."""
    client = mock_client(linking_to("https://evil.example/v1/actions/a/run/live?cursor=1"))
    live = await client.actions.run_live("a", input={})
    assert live.results == [{}]  # received and paid for: kept
    with pytest.raises(ea.PaginationError, match=r"evil\.example"):
        await live.all()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"inputs": [{}]}, "not inputs"),
        ({"input": [{}]}, "must be an object"),
        ({"input": {}, "parameters": [1]}, "parameters must be an object"),
        ({"input": {}, "identity_mode": "sometimes"}, "identity_mode"),
    ],
)
async def test_run_live_refuses_bad_arguments_before_sending(
    mock_client: ClientFactory, arguments: dict[str, Any], message: str
) -> None:
    """inputs= on a live run, a non-object input... raise ValueError and send nothing."""
    recorder = Recorder(httpx.Response(200, json=[]))
    client = mock_client(recorder)
    with pytest.raises(ValueError, match=message):
        await client.actions.run_live("a", **arguments)
    assert recorder.requests == []


def test_live_requests_draw_on_the_live_budget() -> None:
    """Live launches and their next pages are the "live" rate-limit group, not "runs"."""
    from edges_async._limiter import route_group

    base = "https://api.edges.run/v1/actions/a/run/live"
    assert route_group(httpx.URL(base)) == "live"
    assert route_group(httpx.URL(base + "?cursor=abc")) == "live"


async def test_run_live_refuses_a_next_page_seen_before(mock_client: ClientFactory) -> None:
    """A server that links a page to itself again is stopped, as for outputs."""
    client = mock_client(linking_to("https://api.edges.run/v1/actions/a/run/live?cursor=loop"))
    live = await client.actions.run_live("a", input={})
    with pytest.raises(ea.PaginationError, match="same next page twice"):
        await live.all()
