"""AsyncClient: configuration, environment fallbacks, lifecycle, and keeping the key secret."""

from __future__ import annotations

import httpx
import pytest

import edges_async as ea

from .conftest import API_KEY, RUN_UID, ClientFactory, Recorder

RUN_BODY = {"uid": RUN_UID, "status": "SUCCEEDED"}


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=RUN_BODY)


def test_missing_key_is_a_configuration_error() -> None:
    """Without api_key or EDGES_API_KEY the client refuses to be built."""
    with pytest.raises(ea.ConfigurationError, match="EDGES_API_KEY"):
        ea.AsyncClient()


def test_blank_key_is_a_configuration_error() -> None:
    """A key of white space is as good as none."""
    with pytest.raises(ea.ConfigurationError):
        ea.AsyncClient("   ")


def test_environment_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """EDGES_API_KEY, EDGES_PLAN and EDGES_BASE_URL are used when arguments are omitted."""
    monkeypatch.setenv("EDGES_API_KEY", API_KEY)
    monkeypatch.setenv("EDGES_PLAN", "Platinum")
    monkeypatch.setenv("EDGES_BASE_URL", "http://127.0.0.1:8765/v1/")
    client = ea.AsyncClient()
    assert client.plan is ea.PlanTier.PLATINUM
    assert str(client.base_url) == "http://127.0.0.1:8765/v1"


def test_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit arguments take precedence over the environment."""
    monkeypatch.setenv("EDGES_PLAN", "titanium")
    monkeypatch.setenv("EDGES_BASE_URL", "https://elsewhere.example/v1")
    client = ea.AsyncClient(API_KEY, plan=ea.PlanTier.BRONZE, base_url="https://api.edges.run/v1")
    assert client.plan is ea.PlanTier.BRONZE
    assert client.base_url.host == "api.edges.run"


def test_defaults() -> None:
    """The plan defaults to Trial and the base URL to the public API."""
    client = ea.AsyncClient(API_KEY)
    assert client.plan is ea.PlanTier.TRIAL
    assert str(client.base_url) == "https://api.edges.run/v1"


@pytest.mark.parametrize("plan", ["gold", "GOLD", "Gold", ea.PlanTier.GOLD])
def test_plan_is_case_insensitive(plan: str) -> None:
    """Plan names are accepted in any case."""
    assert ea.AsyncClient(API_KEY, plan=plan).plan is ea.PlanTier.GOLD


def test_unknown_plan_is_a_configuration_error() -> None:
    """An unknown plan name is refused with the list of valid ones."""
    with pytest.raises(ea.ConfigurationError, match="titanium"):
        ea.AsyncClient(API_KEY, plan="unobtainium")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.edges.run/v1",
        "http://10.0.0.5/v1",
        "ftp://api.edges.run/v1",
        "api.edges.run/v1",
        "https://api.edges.run/v1?x=1",
        "https://user:pw@api.edges.run/v1",
    ],
)
def test_unsafe_base_url_is_refused(base_url: str) -> None:
    """Plain http off loopback, other schemes and URLs with extras are refused."""
    with pytest.raises(ea.ConfigurationError):
        ea.AsyncClient(API_KEY, base_url=base_url)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8765/v1", "http://localhost/v1", "http://[::1]:9000/v1", "https://x.io/v1"],
)
def test_loopback_http_and_any_https_are_accepted(base_url: str) -> None:
    """http is fine on loopback; https anywhere."""
    assert ea.AsyncClient(API_KEY, base_url=base_url).base_url.host


@pytest.mark.parametrize("max_retries", [-1, 1.5, True])
def test_bad_max_retries_is_refused(max_retries: int) -> None:
    """max_retries must be a non-negative integer."""
    with pytest.raises(ea.ConfigurationError):
        ea.AsyncClient(API_KEY, max_retries=max_retries)


@pytest.mark.parametrize(
    "timeout",
    [0, -1, -0.5, float("nan"), float("inf"), float("-inf"), "30", "abc", True, False, None, []],
)
def test_bad_timeout_is_refused(timeout: object) -> None:
    """A timeout must be a finite number of seconds > 0: anything else is a ConfigurationError."""
    with pytest.raises(ea.ConfigurationError, match="timeout"):
        ea.AsyncClient(API_KEY, timeout=timeout)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("timeout", "sent"),
    [
        (12, {"connect": 12.0, "read": 12.0, "write": 12.0, "pool": 12.0}),
        (0.25, {"connect": 0.25, "read": 0.25, "write": 0.25, "pool": 0.25}),
        (
            httpx.Timeout(60.0, connect=2.0, pool=None),
            {"connect": 2.0, "read": 60.0, "write": 60.0, "pool": None},
        ),
        (httpx.Timeout(None), {"connect": None, "read": None, "write": None, "pool": None}),
    ],
)
async def test_timeout_applies_to_every_request(
    mock_client: ClientFactory, timeout: float | httpx.Timeout, sent: dict[str, float | None]
) -> None:
    """Seconds apply to every phase of a request; an httpx.Timeout is used as given."""
    recorder = Recorder(httpx.Response(200, json=RUN_BODY))
    client = mock_client(recorder, timeout=timeout)
    await client.runs.get(RUN_UID)
    assert recorder.requests[0].extensions["timeout"] == sent


def test_limiter_without_the_protocol_is_refused() -> None:
    """A limiter lacking acquire/feedback is refused at construction."""
    with pytest.raises(ea.ConfigurationError, match="limiter"):
        ea.AsyncClient(API_KEY, limiter=object())  # type: ignore[call-overload]


def test_repr_never_shows_the_key() -> None:
    """The client's repr shows plan, URL and state but not the key."""
    client = ea.AsyncClient(API_KEY, plan="silver")
    text = repr(client)
    assert API_KEY not in text
    assert "silver" in text
    assert "api.edges.run" in text


async def test_requests_carry_key_and_user_agent(mock_client: ClientFactory) -> None:
    """Every request has X-API-Key and User-Agent: edges-async/<version>."""
    recorder = Recorder(httpx.Response(200, json=RUN_BODY))
    client = mock_client(recorder)
    await client.runs.get(RUN_UID)
    seen = recorder.requests
    assert seen[0].headers["x-api-key"] == API_KEY
    assert seen[0].headers["user-agent"] == f"edges-async/{ea.__version__}"
    assert "authorization" not in seen[0].headers


async def test_closed_client_refuses_requests(mock_client: ClientFactory) -> None:
    """After aclose, requests raise ClientClosedError and send nothing."""
    recorder = Recorder(httpx.Response(200, json=RUN_BODY))
    client = mock_client(recorder)
    async with client:
        await client.runs.get(RUN_UID)
    assert client.is_closed
    with pytest.raises(ea.ClientClosedError):
        await client.runs.get(RUN_UID)
    assert len(recorder.requests) == 1


async def test_closed_client_cannot_be_reopened(mock_client: ClientFactory) -> None:
    """Entering a closed client again is refused; closing twice is harmless."""
    client = mock_client(ok)
    await client.aclose()
    await client.aclose()
    with pytest.raises(ea.ClientClosedError):
        async with client:
            pass


async def test_client_cannot_be_entered_twice(mock_client: ClientFactory) -> None:
    """An open client cannot be entered again."""
    client = mock_client(ok)
    async with client:
        with pytest.raises(RuntimeError, match="already open"):
            await client.__aenter__()


async def test_injected_http_client_is_left_open() -> None:
    """Closing the SDK client does not close an httpx client it was given."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as http:
        async with ea.AsyncClient(API_KEY, http_client=http) as client:
            await client.runs.get(RUN_UID)
        assert client.is_closed
        assert not http.is_closed
        assert (await http.get("https://api.edges.run/v1/anything")).status_code == 200


async def test_own_http_client_is_closed() -> None:
    """The pool the client made itself is closed with it."""
    client = ea.AsyncClient(API_KEY)
    http = client._core.http
    async with client:
        pass
    assert http.is_closed


async def test_key_is_only_sent_to_the_base_url_host(mock_client: ClientFactory) -> None:
    """An absolute URL on another host is refused before anything is sent."""
    recorder = Recorder(httpx.Response(200, json=RUN_BODY))
    client = mock_client(recorder)
    with pytest.raises(ValueError, match="not the base URL"):
        await client._core.get(httpx.URL("https://evil.example/v1/runs"))
    assert recorder.requests == []
