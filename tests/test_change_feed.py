"""The change feed: above 100 pending runs, the runs list sorted by -updated_at finds ended runs.

Every test runs on fake time against the simulator in process. A *feed
request* is ``GET /v1/runs`` sorted by ``-updated_at`` with no ``uid``; a *uid
request* names runs (``uid=`` on the list, or ``/v1/runs/{uid}/status``).
:class:`FeedWire` stands between the client and the simulator to make the
list misbehave as a real API might (a parameter ignored, a row hidden, an
answer held back on the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async.callbacks import DEFAULT_SECRET_HEADER, CallbackReceiver
from edges_async.testing import (
    EdgesSimulator,
    Fault,
    RecordedRequest,
    RunScript,
    WindowKind,
    Workspace,
)

from .conftest import SIM_START

TERMINAL = sorted(status.value for status in ea.TERMINAL_STATUSES)
UNKNOWN_UID = "0b7b6c1e-1111-4222-8333-444455556666"

Rows = list[dict[str, Any]]


def ending(status: str, at: float) -> RunScript:
    """A run that is CREATED, RUNNING from 1 s (or at once), and shows ``status`` at ``at`` s."""
    return RunScript(steps=(("CREATED", 0.0), ("RUNNING", min(1.0, at)), (status, at)), outputs=1)


def seed(
    simulator: EdgesSimulator, workspace: Workspace, scripts: Iterable[RunScript]
) -> list[str]:
    """Seed runs created now with these lifecycles; their uids."""
    return [simulator.add_run(workspace, script=script).uid for script in scripts]


def seed_ending(
    simulator: EdgesSimulator,
    workspace: Workspace,
    status: str,
    at: Iterable[float],
    *,
    since: float = 0.0,
) -> dict[str, float]:
    """Seed a run ending in ``status`` at each of ``at`` seconds; when each ends, by uid.

    The times are given from now, and returned from ``since``.
    """
    return {
        simulator.add_run(workspace, script=ending(status, moment)).uid: since + moment
        for moment in at
    }


def is_feed(url: httpx.URL | RecordedRequest) -> bool:
    """Whether a request reads the change feed: the list sorted by -updated_at, no uid."""
    if isinstance(url, RecordedRequest):
        path, query = url.path, url.query
    else:
        path, query = url.path, url.params.multi_items()
    return (
        path == "/v1/runs"
        and ("sort", "-updated_at") in query
        and not any(name == "uid" for name, _ in query)
    )


def uids_asked(request: RecordedRequest) -> list[str]:
    """The run uids a uid request named (none for any other request)."""
    if request.path.startswith("/v1/runs/") and request.path.endswith("/status"):
        return [request.path.split("/")[-2]]
    if request.path == "/v1/runs":
        return [value for name, value in request.query if name == "uid"]
    return []


def feed_requests(simulator: EdgesSimulator) -> list[RecordedRequest]:
    """The feed requests the simulator answered."""
    return [request for request in simulator.requests if is_feed(request)]


def uid_requests(simulator: EdgesSimulator) -> list[RecordedRequest]:
    """The uid requests the simulator answered."""
    return [request for request in simulator.requests if uids_asked(request)]


def offset_of(request: RecordedRequest) -> int:
    """The ``offset`` a list request read at (0 when none)."""
    return next((int(value) for name, value in request.query if name == "offset"), 0)


def feed_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The WARNING records of logger edges_async about the change feed."""
    return [
        record
        for record in caplog.records
        if record.name == "edges_async"
        and record.levelno == logging.WARNING
        and "change feed" in record.getMessage()
    ]


class FeedWire(httpx.AsyncBaseTransport):
    """The simulator's transport; feed requests and their answers pass through hooks.

    ``query`` rewrites a feed request's parameters before it is sent; ``rows``
    rewrites (and may hold back) the rows of a feed answer; ``answer`` replaces
    the answer altogether. ``sent`` keeps the loop time of every feed request;
    ``paging`` is set at the first one that reads past the first page.
    """

    def __init__(
        self,
        simulator: EdgesSimulator,
        *,
        query: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
        rows: Callable[[Rows], Awaitable[Rows]] | None = None,
        answer: Callable[[httpx.Request], httpx.Response | None] | None = None,
    ) -> None:
        self.inner = simulator.transport()
        self.query = query
        self.rows = rows
        self.answer = answer
        self.sent: list[float] = []
        self.paging = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request to the simulator, through the hooks if it reads the feed."""
        if not is_feed(request.url):
            return await self.inner.handle_async_request(request)
        self.sent.append(anyio.current_time())
        if "offset" in request.url.params:
            self.paging.set()
        if self.answer is not None and (replaced := self.answer(request)) is not None:
            return replaced
        if self.query is not None:
            request.url = request.url.copy_with(params=self.query(request.url.params.multi_items()))
        response = await self.inner.handle_async_request(request)
        if self.rows is None or response.status_code != 200:
            return response
        rows = await self.rows(json.loads(await response.aread()))
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-length", "content-encoding")
        ]
        return httpx.Response(200, headers=headers, json=rows, request=request)

    async def aclose(self) -> None:
        """Close the simulator's transport."""
        await self.inner.aclose()


@contextlib.asynccontextmanager
async def sdk(
    simulator: EdgesSimulator,
    *,
    plan: str = "trial",
    transport: httpx.AsyncBaseTransport | None = None,
    polling: ea.PollingPolicy | None = None,
    max_retries: int = 3,
) -> AsyncIterator[tuple[ea.AsyncClient, Workspace]]:
    """A client on a new workspace of ``plan``, through ``transport`` (the simulator's).

    Its backoff has no jitter: every test is deterministic.
    """
    key = f"sk-{plan}-{len(simulator.workspaces)}"
    workspace = simulator.add_workspace(api_key=key, plan=plan)
    async with (
        httpx.AsyncClient(transport=transport or simulator.transport()) as http,
        ea.AsyncClient(
            key,
            plan=plan,
            http_client=http,
            polling=polling,
            backoff=ea.Backoff(jitter=0),
            max_retries=max_retries,
        ) as client,
    ):
        yield client, workspace


async def reported(
    client: ea.AsyncClient, uids: list[str], **kwargs: Any
) -> list[tuple[ea.Run, float]]:
    """Each run watch_runs yields, with the loop time it was yielded at."""
    return [(run, anyio.current_time()) async for run in client.watch_runs(uids, **kwargs)]


def delays(got: list[tuple[ea.Run, float]], ends: dict[str, float]) -> list[float]:
    """Seconds from each run's end to its report, sorted."""
    return sorted(at - ends[run.uid] for run, at in got)


# -- finding runs ------------------------------------------------------------------------


async def test_the_feed_finds_runs_no_uid_request_named(simulator: EdgesSimulator) -> None:
    """1,000 runs ending over 250 s on Trial: most are noticed with no uid request naming them."""
    # Seeded in the reverse order of their ends: the uid sweep reaches the first ending last.
    at = [10.0 + (999 - i) / 4 for i in range(1000)]
    async with sdk(simulator) as (client, workspace):
        uids = seed(simulator, workspace, (ending(TERMINAL[i % 6], at[i]) for i in range(1000)))
        ends = dict(zip(uids, at, strict=True))
        got = await reported(client, [uid.upper() for uid in uids])
    assert sorted(run.uid for run, _ in got) == sorted(ends)
    named: dict[str, list[float]] = {}
    for request in uid_requests(simulator):
        for uid in uids_asked(request):
            named.setdefault(uid, []).append(request.time)
    never_named = [run.uid for run, at in got if not any(t <= at for t in named.get(run.uid, []))]
    by_feed = [
        run.uid
        for run, at in got
        if not any(ends[run.uid] <= t <= at for t in named.get(run.uid, []))
    ]
    assert len(never_named) >= 300
    assert len(by_feed) >= 850  # the rest: the safety net's uid requests got there first
    late = delays(got, ends)
    assert statistics.median(late) < 3.0  # one feed request every ~2.6 s
    assert late[989] < 8.0  # p99
    assert len(feed_requests(simulator)) > 3 * len(uid_requests(simulator))
    assert all(run.output_count == 1 and run.action_name for run, _ in got)  # full run objects
    for request in feed_requests(simulator):
        assert sorted(value for name, value in request.query if name == "status") == TERMINAL
        assert ("limit", "100") in request.query
    assert not [request for request in simulator.requests if request.status_code == 429]


@pytest.mark.parametrize("spread", [0.001, 0.0], ids=["within-a-second", "same-millisecond"])
@pytest.mark.parametrize("in_flight", [1, 4, 8])
async def test_a_burst_larger_than_a_page_loses_nothing(
    simulator: EdgesSimulator, spread: float, in_flight: int
) -> None:
    """500 of 600 runs end within one second: each is reported once, with its status, in time."""
    polling = ea.PollingPolicy(max_in_flight=in_flight)
    async with sdk(simulator, polling=polling) as (client, workspace):
        plan = [(TERMINAL[i % 6], 30.0 + spread * i) for i in range(500)]
        plan += [(TERMINAL[i % 6], 10.0 + 2 * i) for i in range(100)]
        uids = seed(simulator, workspace, (ending(status, at) for status, at in plan))
        ends = {uid: at for uid, (_, at) in zip(uids, plan, strict=True)}
        got = await reported(client, uids)
    assert len(got) == len({run.uid for run, _ in got}) == 600
    wanted = {uid: status for uid, (status, _) in zip(uids, plan, strict=True)}
    assert {run.uid: run.status for run, _ in got} == wanted
    assert max(delays(got, ends)) <= 60.0
    assert max(offset_of(request) for request in feed_requests(simulator)) >= 380  # paged


@pytest.mark.parametrize("second", [3, 60, 150])
async def test_runs_ending_in_the_middle_of_a_pass_shift_no_row_out_of_sight(
    simulator: EdgesSimulator, second: int
) -> None:
    """A second burst lands between two pages of a pass: offsets shift, no run is missed."""
    async with sdk(simulator) as (client, workspace):
        plan = [(TERMINAL[i % 6], 30.0 + 0.001 * i) for i in range(400)]
        plan += [(TERMINAL[i % 6], 33.0 + 0.001 * i) for i in range(second)]
        plan += [(TERMINAL[i % 6], 5.0 + i) for i in range(100)]  # from 5 s: the first look
        uids = seed(simulator, workspace, (ending(status, at) for status, at in plan))
        ends = {uid: at for uid, (_, at) in zip(uids, plan, strict=True)}
        got = await reported(client, uids)
    assert len(got) == len({run.uid for run, _ in got}) == len(plan)
    assert {run.uid: run.status for run, _ in got} == {
        uid: status for uid, (status, _) in zip(uids, plan, strict=True)
    }
    pages = [(r.time, offset_of(r)) for r in feed_requests(simulator)]
    assert [t for t, offset in pages if offset == 0 and 30.0 < t < 33.0]  # a pass began
    assert [t for t, offset in pages if offset > 0 and 33.0 < t < 36.0]  # and went on after
    assert max(delays(got, ends)) <= 60.0


async def test_foreign_runs_do_not_delay_ours(simulator: EdgesSimulator) -> None:
    """As many runs nobody waits for, ending at the same pace, leave our delays as they were."""

    async def median_delay(sim: EdgesSimulator, foreign: bool) -> float:
        async with sdk(sim) as (client, workspace):
            start = anyio.current_time()
            ours = seed_ending(
                sim, workspace, "SUCCEEDED", [10.0 + i / 2 for i in range(300)], since=start
            )
            if foreign:
                seed(sim, workspace, (ending("FAILED", 10.25 + i / 2) for i in range(300)))
            return statistics.median(delays(await reported(client, list(ours)), ours))

    alone = await median_delay(EdgesSimulator(start_time=SIM_START, seed=2), foreign=False)
    shared = await median_delay(simulator, foreign=True)
    assert shared <= 1.3 * alone + 0.3
    assert not [request for request in simulator.requests if request.status_code == 429]


async def test_the_safety_net_catches_a_run_the_feed_never_shows(
    simulator: EdgesSimulator,
) -> None:
    """A run whose row never shows in the feed (its updated_at did not move) is found by uid."""
    hidden: set[str] = set()

    async def hide(rows: Rows) -> Rows:
        return [row for row in rows if row["uid"] not in hidden]

    wire = FeedWire(simulator, rows=hide)
    async with sdk(simulator, transport=wire) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 5.0 + i) for i in range(200)))
        hidden.update(uids[:3])
        got = await reported(client, uids)
    assert len(got) == 200
    for run, at in got:
        if run.uid in hidden:
            assert run.status is ea.RunStatus.SUCCEEDED
            named = [r.time for r in uid_requests(simulator) if run.uid in uids_asked(r)]
            assert any(5.0 <= t <= at for t in named)  # a uid request after its end found it
            assert at < 300.0


async def test_each_run_is_reported_once_across_feed_safety_net_and_callbacks(
    simulator: EdgesSimulator,
) -> None:
    """Feed, uid sweeps, final callbacks and a second waiter: each run ends once per waiter."""
    changes: dict[str, list[object]] = {}

    def changed(run: ea.Run) -> None:
        changes.setdefault(run.uid, []).append(run.status)

    async with sdk(simulator, plan="gold") as (client, workspace):
        plan = [(TERMINAL[i % 6], 3.0 + (i * 37) % 120 / 2) for i in range(300)]
        uids = seed(simulator, workspace, (ending(status, at) for status, at in plan))
        receiver = CallbackReceiver(client, secret="s3cret-s3cret-s3cret")
        edges = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=receiver),
            base_url="https://app.example/callbacks",
            headers={DEFAULT_SECRET_HEADER: "s3cret-s3cret-s3cret"},
        )

        async def post_final_callbacks() -> None:
            for index in sorted(range(0, 300, 3), key=lambda i: plan[i][1]):
                status, at = plan[index]
                await anyio.sleep(max(0.0, at - anyio.current_time()))
                body = {
                    "callback_ref_uid": f"ref-{index}",
                    "run": {"run_uid": uids[index], "batch_uid": "b", "status": status},
                    "input": {},
                    "custom_data": None,
                    "error": None,
                    "results": None,
                }
                assert (await edges.post("", json=body)).status_code == 200

        second: list[ea.Run] = []
        async with edges, anyio.create_task_group() as group:
            group.start_soon(post_final_callbacks)

            async def second_waiter() -> None:
                second.extend(await client.wait_for_runs(uids[::2]))

            group.start_soon(second_waiter)
            got = await reported(client, uids, on_status_change=changed)
    assert len(got) == len({run.uid for run, _ in got}) == 300
    wanted = {uid: status for uid, (status, _) in zip(uids, plan, strict=True)}
    assert {run.uid: run.status for run, _ in got} == wanted
    assert all(run.output_count == 1 for run, _ in got)  # the full run, not a callback's skeleton
    assert [run.status for run in second] == [wanted[uid] for uid in uids[::2]]
    assert set(changes) == set(uids)
    for uid, statuses in changes.items():
        terminal = {status for status in statuses if status in ea.TERMINAL_STATUSES}
        assert terminal == {wanted[uid]}  # no other end, even for a moment
        assert statuses[-1] == wanted[uid]


# -- when the feed is not used ------------------------------------------------------------


@pytest.mark.parametrize("pending", [100, 101])
async def test_the_feed_is_read_only_above_100_pending_runs(
    simulator: EdgesSimulator, pending: int
) -> None:
    """With 100 runs pending, polling is by uid only; with 101, the feed is read."""
    async with sdk(simulator) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 30.0 + i) for i in range(pending)))
        await client.wait_for_runs(uids)
    assert bool(feed_requests(simulator)) is (pending > 100)


async def test_the_feed_can_be_turned_off(simulator: EdgesSimulator) -> None:
    """PollingPolicy(change_feed=False): 300 runs are polled by uid only."""
    polling = ea.PollingPolicy(change_feed=False)
    async with sdk(simulator, polling=polling) as (client, workspace):
        uids = seed(simulator, workspace, (ending("FAILED", 10.0 + i) for i in range(300)))
        runs = await client.wait_for_runs(uids)
    assert {run.status for run in runs} == {ea.RunStatus.FAILED}
    assert feed_requests(simulator) == []


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("safety_net", 0),
        ("safety_net", 0.001),
        ("safety_net", 1.5),
        ("safety_net", -0.1),
        ("safety_net", float("nan")),
        ("safety_net", True),
        ("safety_net", "x"),
        ("safety_net", None),
        ("feed_saturation", 0),
        ("feed_saturation", -1),
        ("feed_saturation", float("inf")),
        ("feed_saturation", float("nan")),
        ("feed_saturation", timedelta(0)),
        ("feed_saturation", "x"),
        ("feed_saturation", "30"),
        ("feed_saturation", True),
        ("change_feed", "yes"),
        ("change_feed", 1),
        ("change_feed", None),
    ],
)
def test_polling_policy_refuses_bad_feed_settings(setting: str, value: object) -> None:
    """A nonsensical or mistyped feed setting is a ValueError naming it, at construction."""
    with pytest.raises(ValueError, match=setting):
        ea.PollingPolicy(**{setting: value})  # type: ignore[arg-type]


def test_polling_policy_takes_sensible_feed_settings() -> None:
    """The edges of the documented ranges are accepted, durations as timedelta too."""
    ea.PollingPolicy(safety_net=0.01, feed_saturation=timedelta(minutes=5), change_feed=False)
    ea.PollingPolicy(safety_net=1, feed_saturation=0.5)


# -- a list that is no feed -----------------------------------------------------------------


def _drop(name: str) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
    def query(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(key, value) for key, value in params if key != name]

    return query


async def _no_updated_at(rows: Rows) -> Rows:
    return [{key: value for key, value in row.items() if key != "updated_at"} for row in rows]


async def _shuffled(rows: Rows) -> Rows:
    return rows[::-1]


def _not_a_list(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"data": []}, request=request)


def _bad_request(request: httpx.Request) -> httpx.Response:
    body = {
        "error_label": "BAD_PARAMETERS",
        "error_scope": "querystring",
        "error_ref": "ref-1",
        "message": "querystring/sort/0 must name a field",
        "status_code": 400,
    }
    return httpx.Response(400, json=body, request=request)


@pytest.mark.parametrize(
    "wire",
    [
        lambda sim: FeedWire(sim, query=_drop("sort")),
        lambda sim: FeedWire(sim, query=_drop("status")),
        lambda sim: FeedWire(sim, rows=_no_updated_at),
        lambda sim: FeedWire(sim, rows=_shuffled),
        lambda sim: FeedWire(sim, answer=_bad_request),
        lambda sim: FeedWire(sim, answer=_not_a_list),
    ],
    ids=["sort-ignored", "filter-ignored", "no-updated-at", "rows-out-of-order", "400", "object"],
)
async def test_a_list_that_is_no_feed_falls_back_to_uid_batches(
    simulator: EdgesSimulator,
    caplog: pytest.LogCaptureFixture,
    wire: Callable[[EdgesSimulator], FeedWire],
) -> None:
    """The feed found wanting: one WARNING, then uid batches for 10 minutes; every wait ends."""
    feed = wire(simulator)
    async with sdk(simulator, transport=feed) as (client, workspace):
        plan = [(TERMINAL[i % 6], 20.0 + (i * 7) % 300) for i in range(300)]
        uids = seed(simulator, workspace, (ending(status, at) for status, at in plan))
        runs = await client.wait_for_runs(uids)
    assert [run.status for run in runs] == [status for status, _ in plan]
    assert len(feed_warnings(caplog)) == 1
    # Empty pages (no run ended before 20 s) show nothing wrong; the first rows that do give
    # it away, and no feed request follows within 10 minutes.
    assert feed.sent
    assert max(feed.sent) < 60.0
    assert 300.0 < anyio.current_time() < 600.0
    assert len(uid_requests(simulator)) >= 100  # uid batches carried the load


async def test_the_feed_is_tried_again_after_ten_minutes(
    simulator: EdgesSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """After a fallback, the feed is read again once 10 minutes have passed."""
    refuse = [True, True]  # with the tie-breaking sort, then without it

    def first_refused(request: httpx.Request) -> httpx.Response | None:
        if refuse:
            refuse.pop()
            return _bad_request(request)
        return None

    feed = FeedWire(simulator, answer=first_refused)
    polling = ea.PollingPolicy(reserve=0.9)  # 3 polls a minute: fewer requests to wait through
    async with sdk(simulator, transport=feed, polling=polling) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 620.0 + i / 10) for i in range(150)))
        await client.wait_for_runs(uids)
    assert len(feed_warnings(caplog)) == 1
    assert 600.0 <= feed.sent[2] - feed.sent[1] < 625.0  # refused twice: with, without -id
    assert len(feed.sent) >= 3


@pytest.mark.parametrize("status", [429, 503])
async def test_transient_feed_failures_back_off_without_falling_back(
    simulator: EdgesSimulator, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """A 429 or 503 on feed requests is a pause, not a reason to give up the feed."""
    failures = [status] * 5

    def failing(request: httpx.Request) -> httpx.Response | None:
        if failures and anyio.current_time() > 20.0:
            failures.pop()
            headers = {"Retry-After": "2"} if status == 429 else {}
            body = {"status_code": status}
            return httpx.Response(status, headers=headers, json=body, request=request)
        return None

    feed = FeedWire(simulator, answer=failing)
    async with sdk(simulator, transport=feed, max_retries=1) as (client, workspace):
        ends = seed_ending(simulator, workspace, "SUCCEEDED", [60.0 + i / 4 for i in range(300)])
        got = await reported(client, list(ends))
    assert failures == []
    assert len(got) == 300
    assert feed_warnings(caplog) == []
    # The feed carried on; after five 429s the limiter paces slower for a while (~8 s).
    assert max(delays(got, ends)) < 20.0
    assert len([t for t in feed.sent if t > 60.0]) >= 5


async def test_a_list_refusing_the_uid_filter_still_serves_the_feed(
    simulator: EdgesSimulator,
) -> None:
    """Uid filters refused (400): runs are asked about alone, and the feed still finds the ends."""

    class NoUidFilter(FeedWire):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/runs" and "uid" in request.url.params:
                return _bad_request(request)
            return await super().handle_async_request(request)

    async with sdk(simulator, transport=NoUidFilter(simulator)) as (client, workspace):
        ends = seed_ending(simulator, workspace, "STOPPED", [20.0 + i / 2 for i in range(300)])
        got = await reported(client, list(ends))
    assert {run.status for run, _ in got} == {ea.RunStatus.STOPPED}
    # While more than 100 are pending (the first 200 to end), the feed finds them.
    first = sorted(got, key=lambda item: ends[item[0].uid])[:200]
    assert statistics.median(delays(first, ends)) < 3.0
    assert any(request.path.endswith("/status") for request in simulator.requests)


async def test_runs_nobody_waits_for_swamping_the_feed_lose_none_of_ours(
    simulator: EdgesSimulator,
) -> None:
    """Others' runs ending faster than the feed can read: every run of ours still ends right."""
    async with sdk(simulator) as (client, workspace):
        # 60 a second for a minute: the feed reads under 40 a second on Trial.
        seed(simulator, workspace, (ending("SUCCEEDED", 5.0 + i / 60) for i in range(3600)))
        plan = [(TERMINAL[i % 6], 10.0 + i / 2) for i in range(150)]
        uids = seed(simulator, workspace, (ending(status, at) for status, at in plan))
        got = await reported(client, uids)
    assert len(got) == len({run.uid for run, _ in got}) == 150
    assert {run.uid: run.status for run, _ in got} == {
        uid: status for uid, (status, _) in zip(uids, plan, strict=True)
    }


async def test_runs_nobody_waits_for_swamping_the_feed_fall_back(
    simulator: EdgesSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Others' runs ending faster than the feed can read for feed_saturation: one WARNING."""
    polling = ea.PollingPolicy(feed_saturation=20.0)
    async with sdk(simulator, polling=polling) as (client, workspace):
        # 60 a second for a minute: the feed reads under 40 a second on Trial.
        seed(simulator, workspace, (ending("SUCCEEDED", 5.0 + i / 60) for i in range(3600)))
        plan = [(TERMINAL[i % 6], 10.0 + i) for i in range(150)]
        uids = seed(simulator, workspace, (ending(status, at) for status, at in plan))
        runs = await client.wait_for_runs(uids)
    assert [run.status for run in runs] == [status for status, _ in plan]
    (warning,) = feed_warnings(caplog)
    assert "others' runs end faster than it can show" in warning.getMessage()


async def test_runs_nobody_waits_for_do_not_make_ours_later_than_uid_polling(
    simulator: EdgesSimulator,
) -> None:
    """Others' runs ending 60 a second: our runs are noticed about as fast as by uid batches."""
    async with sdk(simulator) as (client, workspace):
        seed(simulator, workspace, (ending("SUCCEEDED", 5.0 + i / 60) for i in range(5400)))
        plan = [10.0 + i / 3 for i in range(240)]
        uids = seed(simulator, workspace, (ending("FAILED", at) for at in plan))
        late = delays(await reported(client, uids), dict(zip(uids, plan, strict=True)))
    # By uid batches (change_feed=False): p90 ~5 s.
    assert late[int(0.9 * len(late))] < 15.0


# -- resumed runs ---------------------------------------------------------------------------


class HeldFeed:
    """Holds back the first feed answer showing ``uid`` BLOCKED until ``release`` is set."""

    def __init__(self) -> None:
        self.uid = ""
        self.caught = anyio.Event()
        self.release = anyio.Event()

    async def rows(self, rows: Rows) -> Rows:
        if not self.caught.is_set() and any(
            row["uid"] == self.uid and row["status"] == "BLOCKED" for row in rows
        ):
            self.caught.set()
            await self.release.wait()
        return rows


async def test_a_blocked_row_read_before_a_resume_does_not_end_the_wait(
    simulator: EdgesSimulator,
) -> None:
    """The run is resumed while a feed answer showing it BLOCKED is on its way: the wait goes on."""
    held = HeldFeed()
    wire = FeedWire(simulator, rows=held.rows)
    polling = ea.PollingPolicy(max_in_flight=1)
    async with sdk(simulator, plan="titanium", transport=wire, polling=polling) as (
        client,
        workspace,
    ):
        others = seed(simulator, workspace, (ending("SUCCEEDED", 300.0) for _ in range(150)))
        (held.uid,) = seed(simulator, workspace, [ending("BLOCKED", 5.0)])
        async with anyio.create_task_group() as group:
            group.start_soon(client.wait_for_runs, others)
            waiter = asyncio.ensure_future(client.wait_for_run(held.uid))
            await held.caught.wait()
            resumed = await client.runs.resume(held.uid)
            assert resumed.status is ea.RunStatus.SCHEDULED
            held.release.set()
            run = await waiter
            ended_at = anyio.current_time()
            group.cancel_scope.cancel()
    assert run.status is ea.RunStatus.SUCCEEDED  # the simulator ends a resumed run 5 s later
    assert ended_at >= 10.0


async def test_a_wait_started_after_a_resume_ignores_a_blocked_row_read_before_it(
    simulator: EdgesSimulator,
) -> None:
    """A feed answer sent before the resume, read after a new wait began, does not end it."""
    held = HeldFeed()
    wire = FeedWire(simulator, rows=held.rows)
    async with sdk(simulator, plan="titanium", transport=wire) as (client, workspace):
        others = seed(simulator, workspace, (ending("SUCCEEDED", 300.0) for _ in range(150)))
        (held.uid,) = seed(simulator, workspace, [ending("BLOCKED", 5.0)])
        async with anyio.create_task_group() as group:
            group.start_soon(client.wait_for_runs, others)
            await held.caught.wait()
            await client.runs.resume(held.uid)
            waiter = asyncio.ensure_future(client.wait_for_run(held.uid))
            await asyncio.sleep(0)  # the wait is registered
            held.release.set()
            run = await waiter
            group.cancel_scope.cancel()
    assert run.status is ea.RunStatus.SUCCEEDED


async def test_a_final_callback_before_the_first_poll_reaches_on_status_change_once(
    simulator: EdgesSimulator,
) -> None:
    """A run ends, its final callback arrives before any uid request named it: one change."""
    async with sdk(simulator, plan="titanium") as (client, workspace):
        others = seed(simulator, workspace, (ending("SUCCEEDED", 300.0) for _ in range(150)))
        (uid,) = seed(simulator, workspace, [ending("BLOCKED", 0.6)])
        receiver = CallbackReceiver(client, secret="s3cret-s3cret-s3cret")
        seen: list[object] = []
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=receiver),
                base_url="https://app.example/callbacks",
                headers={DEFAULT_SECRET_HEADER: "s3cret-s3cret-s3cret"},
            ) as edges,
            anyio.create_task_group() as group,
        ):
            group.start_soon(client.wait_for_runs, others)
            await anyio.sleep(0.5)  # past the first request, the safety net's
            waiter = asyncio.ensure_future(
                client.wait_for_run(uid, on_status_change=lambda run: seen.append(run.status))
            )
            await anyio.sleep(0.2)
            assert not [r for r in uid_requests(simulator) if uid in uids_asked(r)]
            body = {
                "callback_ref_uid": "ref-1",
                "run": {"run_uid": uid, "batch_uid": "b", "status": "BLOCKED"},
                "input": {},
                "custom_data": None,
                "error": None,
                "results": None,
            }
            assert (await edges.post("", json=body)).status_code == 200
            run = await waiter
            group.cancel_scope.cancel()
    assert run.status is ea.RunStatus.BLOCKED
    assert seen == [ea.RunStatus.BLOCKED]


# -- what the waits promised before the feed ------------------------------------------------


async def test_runs_that_ended_before_the_wait_are_reported_as_fast_as_by_uid(
    simulator: EdgesSimulator,
) -> None:
    """500 runs ended before the wait began: reported within what a uid sweep takes."""
    async with sdk(simulator) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 1.0 + 0.5 * i) for i in range(500)))
        await anyio.sleep(300.0)
        start = anyio.current_time()
        await client.wait_for_runs(uids)
    # uid batches (change_feed=False): 5 requests of 100 uids, one every 2.6 s: ~11 s.
    assert anyio.current_time() - start < 20.0


async def test_a_missing_run_among_many_still_fails_alone(simulator: EdgesSimulator) -> None:
    """A uid the API never knows, among 150 runs: NotFoundError after the grace; the rest end."""
    async with sdk(simulator) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 5.0 + i / 2) for i in range(150)))
        outcome: list[float] = []

        async def wait_for_the_unknown() -> None:
            with pytest.raises(ea.NotFoundError):
                await client.wait_for_run(UNKNOWN_UID)
            outcome.append(anyio.current_time())

        async with anyio.create_task_group() as group:
            group.start_soon(wait_for_the_unknown)
            runs = await client.wait_for_runs(uids)
    assert {run.status for run in runs} == {ea.RunStatus.SUCCEEDED}
    (failed_at,) = outcome
    assert 30.0 <= failed_at < 120.0  # the grace, then maybe a little later than by uid


async def test_a_missing_run_does_not_hold_back_the_others_during_its_grace(
    simulator: EdgesSimulator,
) -> None:
    """Runs that end while an unknown uid is in its 404 grace are reported in time."""
    async with sdk(simulator) as (client, workspace):
        ends = seed_ending(simulator, workspace, "SUCCEEDED", [5.0 + i / 10 for i in range(150)])
        got: list[tuple[ea.Run, float]] = []

        async def watch() -> None:
            async for run in client.watch_runs([*ends, UNKNOWN_UID]):
                got.append((run, anyio.current_time()))  # noqa: PERF401 (the runs before the error are the point)

        with pytest.raises(ea.NotFoundError):
            await watch()
    assert len(got) == 150  # all of them ended by 20 s, before the 30 s grace is over
    assert max(delays(got, ends)) < 10.0


async def test_the_deadline_still_holds_with_the_feed(simulator: EdgesSimulator) -> None:
    """timeout raises WaitTimeoutError on time, naming the runs still pending as last seen."""
    async with sdk(simulator) as (client, workspace):
        quick = seed(simulator, workspace, (ending("SUCCEEDED", 5.0 + i / 10) for i in range(150)))
        slow = seed(simulator, workspace, (ending("SUCCEEDED", 900.0) for _ in range(50)))
        with pytest.raises(ea.WaitTimeoutError) as caught:
            await client.wait_for_runs([*quick, *slow], timeout=120)
    assert anyio.current_time() == pytest.approx(120.0, abs=0.01)
    assert sorted(run.uid for run in caught.value.runs) == sorted(slow)
    assert {run.status for run in caught.value.runs} <= {ea.RunStatus.RUNNING, None}


async def test_a_postponed_run_is_not_asked_about_before_its_time(
    simulator: EdgesSimulator,
) -> None:
    """postponed_until still holds uid requests back; the run's end is still reported."""
    wall = ea.PollingPolicy(wall_clock=lambda: SIM_START + timedelta(seconds=anyio.current_time()))
    async with sdk(simulator, polling=wall) as (client, workspace):
        postponed = simulator.add_run(
            workspace,
            script=RunScript(
                steps=(("CREATED", 0.0), ("SCHEDULED", 1.0), ("RUNNING", 120.0), ("FAILED", 130.0)),
                postponed_until=timedelta(seconds=120),
            ),
        ).uid
        others = seed(simulator, workspace, (ending("SUCCEEDED", 200.0) for _ in range(150)))
        got = await reported(client, [postponed, *others])
    ((run, at),) = [(run, at) for run, at in got if run.uid == postponed]
    assert run.status is ea.RunStatus.FAILED
    assert 130.0 <= at < 140.0
    asked = [r.time for r in uid_requests(simulator) if postponed in uids_asked(r)]
    assert all(time >= 119.0 for time in asked[1:])  # seen once, then left alone until its time


async def test_no_429_with_the_feed_on_trial(simulator: EdgesSimulator) -> None:
    """500 runs on Trial, fixed or sliding minute: the feed stays within the budget."""
    for window in (WindowKind.SLIDING_MINUTE, WindowKind.FIXED_MINUTE):
        sim = EdgesSimulator(start_time=SIM_START, seed=3, window=window)
        async with sdk(sim) as (client, workspace):
            uids = seed(sim, workspace, (ending("SUCCEEDED", 5.0 + i / 4) for i in range(500)))
            await client.wait_for_runs(uids)
        assert feed_requests(sim)
        assert not [request for request in sim.requests if request.status_code == 429]
        times = [request.time for request in sim.requests]
        # Polling keeps to (1 - reserve) of Trial's 30 a minute.
        assert all(sum(start <= t < start + 60.0 for t in times) <= 25 for start in times)


async def test_closing_the_client_in_the_middle_of_a_pass(simulator: EdgesSimulator) -> None:
    """aclose() while the feed pages through a burst ends every wait; no task is left."""
    mine = asyncio.current_task()
    wire = FeedWire(simulator)
    async with sdk(simulator, transport=wire) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 30.0) for _ in range(300)))
        uids += seed(simulator, workspace, (ending("SUCCEEDED", 900.0) for _ in range(150)))
        waiter = asyncio.ensure_future(client.wait_for_runs(uids))
        await wire.paging.wait()
        await client.aclose()
        with pytest.raises(ea.ClientClosedError):
            await waiter
    assert asyncio.all_tasks() == {mine}


async def test_runs_leaving_the_list_mid_pass_lose_none_of_ours(
    simulator: EdgesSimulator,
) -> None:
    """Others' BLOCKED runs resumed while a pass pages through a burst: every run of ours ends."""
    wire = FeedWire(simulator)
    async with sdk(simulator, transport=wire) as (client, workspace):
        plan = [(TERMINAL[i % 6], 30.0 + 0.002 * i) for i in range(500)]
        uids = seed(simulator, workspace, (ending(status, at) for status, at in plan))
        blocked = [ending("BLOCKED", 30.0005 + 0.02 * i) for i in range(50)]
        resumed = seed(simulator, workspace, blocked)
        ends = {uid: at for uid, (_, at) in zip(uids, plan, strict=True)}

        async def resume_mid_pass() -> None:
            await wire.paging.wait()
            for uid in resumed:
                await client.runs.resume(uid)

        async with anyio.create_task_group() as group:
            group.start_soon(resume_mid_pass)
            got = await reported(client, uids)
    assert len(got) == len({run.uid for run, _ in got}) == 500
    assert {run.uid: run.status for run, _ in got} == {
        uid: status for uid, (status, _) in zip(uids, plan, strict=True)
    }
    assert max(delays(got, ends)) < 300.0


@pytest.mark.parametrize("share", [0.01, 1.0])
async def test_extreme_safety_nets_still_end_every_wait(
    simulator: EdgesSimulator, share: float
) -> None:
    """safety_net at either end of its range: every run reported once, promptly."""
    polling = ea.PollingPolicy(safety_net=share)
    async with sdk(simulator, polling=polling) as (client, workspace):
        ends = seed_ending(simulator, workspace, "SUCCEEDED", [10.0 + i / 2 for i in range(300)])
        got = await reported(client, list(ends))
    assert len(got) == len({run.uid for run, _ in got}) == 300
    assert max(delays(got, ends)) < 30.0


@pytest.mark.parametrize("share", [0.1, 0.3])
async def test_the_safety_net_takes_its_share_of_the_requests(
    simulator: EdgesSimulator, share: float
) -> None:
    """While more than 100 runs are pending, about safety_net of the poll requests name runs."""
    polling = ea.PollingPolicy(safety_net=share)
    async with sdk(simulator, polling=polling) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 200.0 + i / 4) for i in range(300)))
        await client.wait_for_runs(uids)
    busy = [request for request in simulator.requests if request.time < 200.0]
    by_uid = sum(1 for request in busy if uids_asked(request))
    assert by_uid + sum(1 for request in busy if is_feed(request)) == len(busy)
    assert share * 0.8 <= by_uid / len(busy) <= share * 1.25


async def test_leaving_watch_runs_early_stops_the_feed_too(simulator: EdgesSimulator) -> None:
    """Breaking out of watch_runs over 300 runs stops every poll request, feed or uid."""
    async with sdk(simulator) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 5.0 + i * 100) for i in range(300)))
        watched = client.watch_runs(uids)
        async for run in watched:
            assert run.uid == uids[0]
            break
        await watched.aclose()
        before = len(simulator.requests)
        await anyio.sleep(120)
        assert len(simulator.requests) == before


async def test_an_authentication_error_still_ends_the_waits(simulator: EdgesSimulator) -> None:
    """A 401 on every list request: the feed is dropped, then the waits end with the 401."""
    async with sdk(simulator) as (client, workspace):
        uids = seed(simulator, workspace, (ending("SUCCEEDED", 50.0) for _ in range(150)))
        simulator.faults.add(Fault(path="^/v1/runs$", status=401, times=None))
        with pytest.raises(ea.AuthenticationError):
            await client.wait_for_runs(uids)
    assert anyio.current_time() < 10.0
