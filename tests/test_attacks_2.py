"""Second attacks on the hardening: readers coming back, live answers read twice, closed exports."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest

import edges_async as ea
from edges_async.callbacks import CallbackReceiver

from .conftest import RUN_UID, ClientFactory
from .test_live import LIVE
from .test_receiver_memory import SECRET, callback, deliver, run_uid

# -- callback receiver: readers that leave early and come back ---------------------


async def fed_receiver() -> CallbackReceiver:
    """A receiver holding two partials of run 1, with results [1, 2] and [3]."""
    receiver = CallbackReceiver(secret=SECRET)
    assert await deliver(receiver, callback(1, 1, "RUNNING", results=[1, 2])) == 200
    assert await deliver(receiver, callback(2, 1, "RUNNING", results=[3])) == 200
    return receiver


async def test_an_events_reader_left_with_break_can_be_followed_at_once() -> None:
    """A reader that breaks out of events() lets the next reader of the run start right away."""
    receiver = await fed_receiver()
    async for event in receiver.events(run_uid(1)):
        assert event.results == [1, 2]
        break
    assert await deliver(receiver, callback(3, 1, "SUCCEEDED")) == 200
    assert [event.results async for event in receiver.events(run_uid(1))] == [[3], None]
    assert receiver._streams.buffered_bytes == 0


async def test_a_results_reader_left_mid_event_leaves_the_rest_to_the_next() -> None:
    """Results of an event not yet handed out when a reader breaks go to the next reader."""
    receiver = await fed_receiver()
    async for result in receiver.results(run_uid(1)):
        assert result == 1
        break
    assert await deliver(receiver, callback(3, 1, "SUCCEEDED", results=[4])) == 200
    assert [result async for result in receiver.results(run_uid(1))] == [2, 3, 4]
    assert receiver._streams.buffered_bytes == 0
    assert [result async for result in receiver.results(run_uid(1))] == []


async def test_a_reader_closed_with_aclose_frees_the_run_for_the_next() -> None:
    """A second reader at the same time is refused; once the first is aclose()d, one may start."""
    receiver = await fed_receiver()
    first = receiver.events(run_uid(1))
    assert (await anext(first)).results == [1, 2]
    with pytest.raises(RuntimeError, match="already being read"):
        await anext(receiver.events(run_uid(1)))
    await first.aclose()
    assert await deliver(receiver, callback(3, 1, "SUCCEEDED")) == 200
    assert [event.results async for event in receiver.events(run_uid(1))] == [[3], None]


# -- live answers ------------------------------------------------------------------


async def test_a_live_answer_iterated_twice_yields_the_same_results(
    mock_client: ClientFactory,
) -> None:
    """Iterating a LiveResult again follows its links afresh instead of calling them a loop."""

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("cursor", "0"))
        headers = {"X-Pagination-Next": f"{LIVE}?cursor={page + 1}"} if page < 2 else {}
        return httpx.Response(200, json=[{"n": page}], headers=headers)

    live = await mock_client(handler).actions.run_live("a", input={"x": 1})
    first = [result async for result in live]
    assert first == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [result async for result in live] == first


# -- a closed client -----------------------------------------------------------------


async def test_an_export_on_a_closed_client_touches_no_file(
    mock_client: ClientFactory, tmp_path: Path
) -> None:
    """export_outputs on a closed client raises ClientClosedError and leaves no .part behind."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    client = mock_client(handler)
    await client.aclose()
    with pytest.raises(ea.ClientClosedError):
        await client.runs.export_outputs(RUN_UID, tmp_path / "outputs.jsonl")
    assert (sent, os.listdir(tmp_path)) == ([], [])


async def test_a_key_with_spaces_sent_in_a_query_is_scrubbed_in_its_plus_form(
    mock_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A key echoed in a query (a space written ``+``) shows nowhere: error, request, logs."""
    key = "sk live key+with/slash&x=1"
    caplog.set_level(logging.DEBUG)
    client = mock_client(lambda request: httpx.Response(400, json={"message": "bad"}), api_key=key)
    with pytest.raises(ea.BadRequestError) as raised:
        async for _ in client.runs.list(action_name=key):
            pass
    shown = [str(raised.value), str(raised.value.request.url), caplog.text]
    plus = "sk+live+key%2Bwith%2Fslash%26x%3D1"
    for text in shown:
        assert plus.lower() not in text.lower()
        assert key not in text
