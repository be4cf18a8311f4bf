"""The runs list as a change feed: the workspace's runs that ended since the last look.

``GET /v1/runs`` filtered on the six terminal statuses and sorted by
``-updated_at`` lists the runs that ended most recently first, whatever the
number of runs waited for. :class:`RunFeed` keeps the reading position; the
poller sends the requests and hands the rows on:

- **Passes.** A pass starts at offset 0 and pages on while every row is
  newer than the *watermark* (the newest ``updated_at`` a finished pass read,
  less ``margin`` for ties, clock granularity and late commits). When a page
  reaches it, the pass ends and its first row becomes the new watermark. The
  first pass reads one page: what ended before the feed started is the
  safety net's.
- **Shifting offsets.** Runs that end during a pass push the rows down the
  list. Each page after the first starts ``_OVERLAP`` rows before where the
  last one stopped and goes on after its last row (the *anchor*), so a shift
  never skips a row and costs only the rows it repeats; rows a shift brings
  back are handed on again, which the poller ignores (it forgets a run it
  handed over). A row leaving the list (a run resumed) can make one slip:
  the poller's uid sweeps, its safety net, find it.
- **Trust.** The API does not document how the feed behaves, so each page is
  checked: a row with a status that is not terminal (the filter ignored), rows
  out of order (the sort ignored) or a row without a readable ``updated_at``
  raise :class:`FeedUntrusted`, and the poller goes back to uid sweeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, final

from ._models import TERMINAL_STATUSES

__all__ = ["FEED_PAGE", "FeedRow", "FeedUntrusted", "RunFeed", "feed_time"]

FEED_PAGE: Final = 100  # the runs list's largest page
_OVERLAP: Final = 5  # rows each later page of a pass repeats, to find where the last one ended
_TERMINAL: Final = frozenset(status.value for status in TERMINAL_STATUSES)


@final
class FeedUntrusted(Exception):
    """The runs list does not behave as a change feed (a filter or the sort ignored)."""


@final
@dataclass(frozen=True, slots=True)
class FeedRow:
    """One run of a feed page: enough to match it, and its object to hand on."""

    uid: str
    """Lower-case."""
    updated: float
    """Its ``updated_at``, in seconds since the epoch."""
    item: dict[str, Any]


def feed_time(value: object) -> float | None:
    """An ``updated_at`` value in seconds since the epoch (``None`` when it is not a time)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # the API writes UTC with a zone; a bare time cannot be ordered safely
    return moment.timestamp()


def _rows(page: list[Any]) -> list[FeedRow]:
    """The page's rows, checked: terminal, with a time, newest first."""
    rows: list[FeedRow] = []
    previous = math.inf
    for item in page:
        if not isinstance(item, dict):
            raise FeedUntrusted("a row is not a run object")
        uid = item.get("uid", item.get("run_uid"))
        if not isinstance(uid, str):
            raise FeedUntrusted("a row has no uid")
        if item.get("status") not in _TERMINAL:
            raise FeedUntrusted(f"the status filter was ignored (a {item.get('status')!r} run)")
        updated = feed_time(item.get("updated_at"))
        if updated is None:
            raise FeedUntrusted("a row has no readable updated_at")
        if updated > previous:
            raise FeedUntrusted("the rows are not sorted by -updated_at")
        previous = updated
        rows.append(FeedRow(uid.lower(), updated, item))
    return rows


@final
class RunFeed:
    """Where the next feed request reads, and which rows of its answer are new."""

    __slots__ = ("_anchor", "_margin", "_next", "_top", "_watermark")

    def __init__(self, *, margin: float) -> None:
        self._margin = margin
        self._watermark = -math.inf  # no pass finished yet
        self._top = -math.inf  # the newest row of the pass under way
        self._anchor: FeedRow | None = None  # the last row the pass read
        self._next = 0  # the offset of the next request

    @property
    def offset(self) -> int:
        """The offset the next request reads at (0: a new pass)."""
        return self._next

    @property
    def paging(self) -> bool:
        """Whether a pass is under way (its next page is not the first)."""
        return self._anchor is not None

    def take(self, page: list[Any], offset: int) -> list[FeedRow]:
        """The rows of ``page`` (read at ``offset``) not read yet, newest first.

        Raises:
            FeedUntrusted: The page shows the list does not work as a feed.
        """
        rows = _rows(page)
        anchor = self._anchor
        if anchor is None:  # a pass's first page
            fresh = rows
            self._top = rows[0].updated if rows else self._watermark
        else:
            fresh = _after(rows, anchor)
        if self._watermark == -math.inf:
            self._end_pass()  # the first look: one page, the newest
            return fresh
        floor = self._watermark - self._margin
        new = [row for row in fresh if row.updated >= floor]
        if len(new) < len(fresh) or len(rows) < FEED_PAGE:
            self._end_pass()  # down to the watermark, or the list's end
        else:
            if fresh:
                self._anchor = rows[-1]
            # else: shifted down past the anchor, every row on it read: go on deeper
            self._next = offset + len(rows) - _OVERLAP
        return new

    def _end_pass(self) -> None:
        self._watermark = max(self._watermark, self._top)
        self._anchor = None
        self._next = 0

    def restart(self) -> None:
        """Forget the position: the next request starts afresh, as the first did."""
        self._watermark = self._top = -math.inf
        self._anchor = None
        self._next = 0

    def __repr__(self) -> str:
        return f"<RunFeed offset={self._next} watermark={self._watermark}>"


def _after(rows: list[FeedRow], anchor: FeedRow) -> list[FeedRow]:
    """The rows after ``anchor``: after it on the page, else no newer than it."""
    for index, row in enumerate(rows):
        if row.uid == anchor.uid:
            return rows[index + 1 :]
    # The anchor is not on the page: it shifted further down (every row is
    # newer: read already), or it left the list; rows no newer are new.
    return [row for row in rows if row.updated <= anchor.updated]
