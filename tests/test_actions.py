"""Launching runs: the body sent, and bad arguments refused before anything is sent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import edges_async as ea

from .conftest import LAUNCH_RESPONSE, RUN_UID, ClientFactory, Recorder

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
