"""The poller's requests: asking the API about many runs, one run, or one run in full.

- ``GET /v1/runs?uid=..&uid=..`` refreshes up to 100 runs in one request.
  Most of these polls ask only for the runs among the batch that ended
  (``&status=<each terminal status>``): the answer is a few bytes instead of
  100 run objects (~57 kB), to send, parse and look through. A full answer is
  needed for runs never seen (a run missing from it is then checked alone, as
  a 404 says more than silence) and for runs whose every status change is
  wanted; every ``_FULL_EVERY``-th poll is full anyway, which refreshes the
  last states and postponements and keeps waits correct even on a server that
  would ignore the status filter.
- ``GET /v1/runs?status=<each terminal status>&sort=-updated_at&limit=100``
  (and ``&offset=``) reads the change feed (:mod:`._run_feed`): the
  workspace's runs that ended most recently, whichever they are.
- ``GET /v1/runs/{uid}/status``, the light view, serves a run asked about alone.
- ``GET /v1/runs/{uid}`` fetches in full a run the light view shows ended.

Failures reach the caller as ``EdgesError`` (or as whatever a custom
transport or limiter raised); :func:`is_transient` tells the ones to retry
later (connection, 408, 429, 5xx) from the ones that end a wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, final

import httpx
import pydantic

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    BadRequestError,
    InternalServerError,
    RateLimitError,
)
from ._http import HTTPCore
from ._models import TERMINAL_STATUSES, Run
from ._params import uid_filter_query
from ._responses import decode_json, invalid_response, parse_model
from ._run_feed import FEED_PAGE

__all__ = ["ListAnswer", "PollRequests", "is_transient", "parse_run"]

_FULL_EVERY = 10  # one list poll in this many asks for every run, ended or not
_TERMINAL_VALUES: Final = tuple(sorted(status.value for status in TERMINAL_STATUSES))
_FEED_QUERY: Final = "&".join(
    [*(f"status={name}" for name in _TERMINAL_VALUES), "sort=-updated_at", f"limit={FEED_PAGE}"]
)
# Rows ending on one instant in one order on every page (else offsets could
# skip some); a list that refuses to sort by id is read without it.
_TIE_BREAK: Final = "&sort=-id"


@final
@dataclass(frozen=True, slots=True)
class ListAnswer:
    """What one list poll showed: the run objects found, by lower-case uid."""

    items: dict[str, dict[str, Any]]
    """The first object the answer holds for each uid asked about."""
    full: bool
    """Whether every run was asked for; if not, only the runs that ended were."""
    response: httpx.Response
    """The response, for the errors built from it."""


@final
class PollRequests:
    """Sends the poller's requests through the client's HTTP layer and parses the answers."""

    __slots__ = ("_core", "_list_polls", "_list_url", "_tie_break")

    def __init__(self, core: HTTPCore) -> None:
        self._core = core
        self._list_url = core.url("/runs")
        self._list_polls = 0
        self._tie_break = _TIE_BREAK

    async def list_runs(self, uids: list[str], *, need_full: bool) -> ListAnswer:
        """Ask the runs list about ``uids`` (at most 100, lower-case).

        Only the ones that ended are asked for unless ``need_full`` (or it is
        the periodic full poll's turn).

        Raises:
            BadRequestError: The list refuses the uid filter.
            EdgesError: Any other failure, or an answer that is not a JSON array.
        """
        self._list_polls += 1
        full = need_full or self._list_polls % _FULL_EVERY == 0
        statuses = () if full else _TERMINAL_VALUES
        query = uid_filter_query(uids, limit=len(uids), statuses=statuses)
        response = await self._core.get(self._list_url.copy_with(query=query.encode()))
        found = decode_json(response)
        if not isinstance(found, list):
            raise invalid_response(response, "expected a JSON array")
        items: dict[str, dict[str, Any]] = {}
        for item in found:
            uid = item.get("uid", item.get("run_uid")) if isinstance(item, dict) else None
            if isinstance(uid, str):
                items.setdefault(uid.lower(), item)
        return ListAnswer(items, full, response)

    async def feed_page(self, offset: int) -> tuple[list[Any], httpx.Response]:
        """One page of the change feed: ended runs, most recently updated first.

        Raises:
            EdgesError: The request failed, or the answer is not a JSON array.
        """
        paging = "" if offset == 0 else f"&offset={offset}"
        while True:
            query = f"{_FEED_QUERY}{self._tie_break}{paging}"
            try:
                response = await self._core.get(self._list_url.copy_with(query=query.encode()))
            except BadRequestError:
                if not self._tie_break:
                    raise
                self._tie_break = ""  # sorted by -updated_at alone, then
                continue
            break
        found = decode_json(response)
        if not isinstance(found, list):
            raise invalid_response(response, "expected a JSON array")
        return found, response

    async def status(self, uid: str) -> tuple[dict[str, Any], httpx.Response]:
        """The light view of one run, and the response it came in.

        Raises:
            NotFoundError: The API does not know the run (yet).
            EdgesError: Any other failure, or an answer that is not a JSON object.
        """
        response = await self._core.get(f"/runs/{uid}/status")
        item = decode_json(response)
        if not isinstance(item, dict):
            raise invalid_response(response, "expected a JSON object")
        return item, response

    async def full_run(self, uid: str) -> Run:
        """The full run object.

        Raises:
            APIResponseValidationError: The answer is not a run.
            EdgesError: The request failed.
        """
        return parse_model(Run, await self._core.get(f"/runs/{uid}"))


def parse_run(uid: str, item: dict[str, Any], response: httpx.Response) -> Run:
    """``item``, a run object from ``response``, as a ``Run``.

    Raises:
        APIResponseValidationError: It is not one.
    """
    try:
        return Run.model_validate(item)
    except pydantic.ValidationError as exc:
        # Built here, raised outside: the error carries no chained context.
        error = invalid_response(response, f"unexpected run {uid}", exc)
    raise error


def is_transient(exc: Exception) -> bool:
    """Whether polling should go on after ``exc``, later: connection, 408, 429 or 5xx."""
    if isinstance(exc, (APIConnectionError, RateLimitError, InternalServerError)):
        return True
    return isinstance(exc, APIStatusError) and exc.status_code == 408
