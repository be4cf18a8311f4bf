"""Responses become typed errors, with the Edges error body read when there is one."""

from __future__ import annotations

import httpx
import pytest

import edges_async as ea

from .conftest import API_KEY, RUN_UID, ClientFactory

ERROR_TABLE = [
    (400, ea.BadRequestError),
    (401, ea.AuthenticationError),
    (402, ea.PaymentRequiredError),
    (403, ea.PermissionDeniedError),
    (404, ea.NotFoundError),
    (409, ea.ConflictError),
    (410, ea.APIStatusError),
    (422, ea.UnprocessableEntityError),
    (424, ea.FailedDependencyError),
    (429, ea.RateLimitError),
    (500, ea.InternalServerError),
    (502, ea.InternalServerError),
    (503, ea.InternalServerError),
    (504, ea.InternalServerError),
]

EDGES_BODY = {
    "error_label": "NO_RESULT",
    "error_scope": "input",
    "error_ref": "ref-42",
    "message": "No result for this input",
    "status_code": 424,
}


@pytest.mark.parametrize(("status", "error_class"), ERROR_TABLE)
async def test_status_maps_to_error_class_with_edges_body(
    mock_client: ClientFactory, status: int, error_class: type[ea.APIStatusError]
) -> None:
    """Each error status raises its own class, carrying the parsed Edges error body."""
    client = mock_client(lambda request: httpx.Response(status, json=EDGES_BODY), max_retries=0)
    with pytest.raises(error_class) as caught:
        await client.runs.get(RUN_UID)
    error = caught.value
    assert type(error) is error_class
    assert isinstance(error, ea.APIStatusError)
    assert isinstance(error, ea.EdgesError)
    assert error.status_code == status
    assert error.error_label == "NO_RESULT"
    assert error.error_scope == "input"
    assert error.error_ref == "ref-42"
    assert error.message == "No result for this input"
    assert error.response.status_code == status
    assert "NO_RESULT" in str(error)
    assert "ref-42" in str(error)
    assert f"/runs/{RUN_UID}" in str(error)


@pytest.mark.parametrize(("status", "error_class"), ERROR_TABLE)
async def test_non_json_error_body_gives_clear_error(
    mock_client: ClientFactory, status: int, error_class: type[ea.APIStatusError]
) -> None:
    """An error answered with HTML instead of JSON still maps by status and says so."""
    client = mock_client(
        lambda request: httpx.Response(status, text="<html><h1>Bad gateway</h1></html>"),
        max_retries=0,
    )
    with pytest.raises(error_class) as caught:
        await client.runs.get(RUN_UID)
    assert caught.value.error_label is None
    assert caught.value.body is None
    assert "not JSON" in str(caught.value)
    assert "<html><h1>Bad gateway" in str(caught.value)


async def test_json_that_is_not_an_error_object_is_reported(mock_client: ClientFactory) -> None:
    """A JSON error body of the wrong shape does not crash the mapping."""
    client = mock_client(lambda request: httpx.Response(400, json=["not", "an", "object"]))
    with pytest.raises(ea.BadRequestError) as caught:
        await client.runs.get(RUN_UID)
    assert caught.value.error_label is None


async def test_success_with_invalid_json_raises_response_validation_error(
    mock_client: ClientFactory,
) -> None:
    """A 200 whose body is not JSON raises APIResponseValidationError with the snippet."""
    client = mock_client(lambda request: httpx.Response(200, text='{"uid": "abc", "sta'))
    with pytest.raises(ea.APIResponseValidationError) as caught:
        await client.runs.get(RUN_UID)
    assert caught.value.status_code == 200
    assert '{"uid": "abc", "sta' in str(caught.value)


async def test_success_with_wrong_shape_raises_response_validation_error(
    mock_client: ClientFactory,
) -> None:
    """A 200 JSON body that is not a run raises APIResponseValidationError."""
    client = mock_client(lambda request: httpx.Response(200, json={"no_uid_here": True}))
    with pytest.raises(ea.APIResponseValidationError, match="unexpected Run shape"):
        await client.runs.get(RUN_UID)


async def test_error_never_shows_the_api_key(mock_client: ClientFactory) -> None:
    """Neither the message, the repr nor the attached request headers hold the key."""
    client = mock_client(lambda request: httpx.Response(401, json={"message": "bad key"}))
    with pytest.raises(ea.AuthenticationError) as caught:
        await client.runs.get(RUN_UID)
    error = caught.value
    for text in (str(error), repr(error), repr(error.request.headers), repr(error.response)):
        assert API_KEY not in text
    assert error.request.headers["x-api-key"] == "[redacted]"
    assert error.response.request.headers["x-api-key"] == "[redacted]"


async def test_connection_error_never_shows_the_api_key(mock_client: ClientFactory) -> None:
    """A transport failure's error carries a redacted request too."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = mock_client(refuse, max_retries=0)
    with pytest.raises(ea.APIConnectionError) as caught:
        await client.runs.get(RUN_UID)
    assert API_KEY not in str(caught.value)
    assert caught.value.request.headers["x-api-key"] == "[redacted]"


async def test_rate_limit_error_exposes_limit_headers(mock_client: ClientFactory) -> None:
    """RateLimitError tells which limit fired and what Retry-After said."""
    client = mock_client(
        lambda request: httpx.Response(
            429,
            headers={"X-RateLimit-Type": "/v1/runs/outputs", "Retry-After": "7"},
            json={"error_label": "STATUS_429", "message": "Too many requests"},
        ),
        max_retries=0,
    )
    with pytest.raises(ea.RateLimitError) as caught:
        await client.runs.get(RUN_UID)
    assert caught.value.rate_limit_type == "/v1/runs/outputs"
    assert caught.value.retry_after == "7"
    assert caught.value.error_label == "STATUS_429"


def test_wait_timeout_error_is_a_timeout_error() -> None:
    """WaitTimeoutError is caught by `except TimeoutError` and keeps the pending runs."""
    run = ea.Run(uid=RUN_UID, status="RUNNING")
    error = ea.WaitTimeoutError("deadline passed", runs=[run])
    assert isinstance(error, TimeoutError)
    assert isinstance(error, ea.EdgesError)
    assert error.runs == [run]
