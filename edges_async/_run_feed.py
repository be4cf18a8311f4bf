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
  safety net's (when the list was empty then, the next pass reads it to its
  end). A whole page below the watermark that was all read already ends a
  pass too, so that runs ending on one instant are not read again at every
  pass: a row committed late behind such a page is left to the safety net.
- **Crowds.** When runs end so fast that half a page of them comes between
  two requests, paging back would trail behind: the pass is given up (the
  rows it did not reach are the safety net's, which then finds more per
  request and gets more of them)
  and every request reads the newest page, all new rows.
- **Shifting offsets.** Runs that end during a pass push the rows read down
  the list, by as many rows as ended (*arrivals*). A row read before and
  found again on a page measures them exactly; the next page is asked for
  where the last row read should be by then, ``_OVERLAP`` rows early, so
  that while runs end faster than a page holds, each page still brings
  about a page of rows not read (the arrivals are the next pass's). A page
  that finds no row read before either lies among the arrivals (read them,
  go deeper) or past the last row read (read them, step back a page). Rows
  handed on twice are ignored by the poller (it forgets a run it handed
  over). A row leaving the list (a run resumed) can make one slip: the
  poller's uid sweeps, its safety net, find it.
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
_CROWDED: Final = FEED_PAGE // 2  # arrivals between two pages past which a pass is given up
_MAX_STEPS_BACK: Final = 3  # pages past the last row read before a pass is given up
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
    """Where the next feed request reads, and which rows of its answer are new.

    Within a pass, every row read keeps its *position*: its offset when read
    less the rows that had ended since the pass began (``_arrivals``, always
    above every row read). One row read before and found again on a page
    tells the arrivals exactly; between pages they are foreseen from their
    rate (arrivals per second, as measured so between the last pages), a
    little short (two standard deviations of a Poisson count), so that a page
    rarely starts past the last row read. The rate is only ever measured
    between pages: a burst of endings on a first page says nothing of the
    next ones.
    """

    __slots__ = (
        "_arrivals",
        "_counted_at",
        "_cursor",
        "_cursor_time",
        "_looked",
        "_margin",
        "_near",
        "_positions",
        "_rate",
        "_right_after",
        "_steps_back",
        "_top",
        "_watermark",
        "crowded",
    )

    def __init__(self, *, margin: float) -> None:
        self._margin = margin
        self._watermark = -math.inf  # no pass finished yet
        self._top = -math.inf  # the newest row when the pass under way began
        self._positions: dict[str, int] = {}  # the rows the pass read, by uid
        self._cursor = -1  # the position of the last row the pass read (-1: none)
        self._cursor_time = -math.inf  # its updated_at
        self._right_after = False  # the last page was asked for right after it (no arrivals)
        self._arrivals = 0  # rows that ended since the pass began, at _counted_at
        self._counted_at = -math.inf
        self._rate = 0.0  # rows ending per second, lately
        self._near: dict[str, float] = {}  # rows read, newer than the watermark less the margin
        self._looked = False  # whether the first look was made (its list may have been empty)
        self._steps_back = 0  # pages in a row that found no row read before, past the last
        self.crowded = False
        """Whether the last pass was given up: runs end faster than it could page back."""

    @property
    def paging(self) -> bool:
        """Whether a pass is under way (its next page is not the first)."""
        return self._cursor >= 0

    def offset(self, now: float) -> int:
        """The offset to read at ``now`` (0: a new pass).

        When more runs have ended since the last page than ``_CROWDED``, a
        pass under way is given up: paging back would trail behind the
        arrivals, while the newest page is all new rows.
        """
        if self._cursor < 0:
            return 0
        expected = self._rate * max(0.0, now - self._counted_at)
        if expected >= _CROWDED:
            self._give_up()
            return 0
        foreseen = max(0.0, expected - 2.0 * math.sqrt(expected))
        # No arrivals since the last page: ask right after its last row, a
        # whole page of new rows (a burst reads a tenth faster); else a few
        # rows early, to find one read before and count the arrivals.
        self._right_after = expected == 0.0
        overlap = 0 if self._right_after else _OVERLAP
        return max(0, self._cursor + 1 + self._arrivals + int(foreseen) - overlap)

    def take(self, page: list[Any], offset: int, now: float) -> list[FeedRow]:
        """The rows of ``page`` (read at ``offset`` at ``now``) not read yet, newest first.

        Raises:
            FeedUntrusted: The page shows the list does not work as a feed.
        """
        rows = _rows(page)
        stepping_back = False
        if self._cursor < 0:  # a pass's first page
            self._top = rows[0].updated if rows else self._watermark
            self._arrivals, self._counted_at = 0, now
            fresh = self._read(rows, offset)
        else:
            fresh, stepping_back = self._follow(rows, offset, now)
        if not self._looked:
            self._looked = True
            self._end_pass()  # the first look: one page, the newest
            return fresh
        floor = self._watermark - self._margin
        new = [row for row in fresh if row.updated >= floor]
        if stepping_back:
            pass  # the rows skipped lie above: read them before judging the pass
        elif (
            len(new) < len(fresh)
            or len(rows) < FEED_PAGE
            or _all_read(rows, self._near, self._watermark)
        ):
            # Down to the watermark (or a whole page below it read already:
            # runs ending on the same instant need not be read at every pass),
            # or the list's end.
            self.crowded = False
            self._end_pass()
        for row in new:
            self._near[row.uid] = row.updated
        return new

    def _follow(self, rows: list[FeedRow], offset: int, now: float) -> tuple[list[FeedRow], bool]:
        """A later page of a pass: count the arrivals, read on after the last row read.

        The rows not read yet, and whether the page lay past the last row read
        (the pass then steps back a page before it may end).
        """
        positions = self._positions
        deepest = next(
            (index for index in range(len(rows) - 1, -1, -1) if rows[index].uid in positions),
            -1,
        )
        if deepest >= 0:  # a row read before: the arrivals, exactly
            self._steps_back = 0
            arrivals = offset + deepest - positions[rows[deepest].uid]
            elapsed = now - self._counted_at
            if elapsed > 0:
                self._rate = max(0.0, arrivals - self._arrivals) / elapsed
            self._arrivals, self._counted_at = arrivals, now
            # Rows of the pass above it not read (ties the list orders
            # differently from one page to the next), then the rows after it.
            skipped = [
                row
                for row in rows[:deepest]
                if row.uid not in positions and row.updated <= self._top
            ]
            return skipped + self._read(rows[deepest + 1 :], offset + deepest + 1), False
        if rows and rows[-1].updated > self._top:
            # Every row ended since the pass began: the rows of the pass lie
            # further down than runs ending this fast let a page reach.
            elapsed = now - self._counted_at
            if elapsed > 0:
                self._rate = max(self._rate, (offset + len(rows) - self._cursor) / elapsed)
            self._give_up()
            return rows, False
        if self._right_after and rows and rows[0].updated <= self._cursor_time:
            return self._read(rows, offset), False  # right after the last row, as asked
        # Past the last row read (fewer arrivals than foreseen), or rows left
        # the list: read these, and step back a page for any skipped.
        self._steps_back += 1
        if self._steps_back > _MAX_STEPS_BACK or offset == 0:
            self._give_up()  # the pass's rows are gone from the list: the safety net's
            return rows, False
        self._arrivals = max(0, offset - self._cursor - FEED_PAGE + _OVERLAP)
        self._rate = 0.0
        self._counted_at = now
        return rows, True

    def _read(self, rows: list[FeedRow], offset: int) -> list[FeedRow]:
        """Record ``rows``, read from ``offset`` on, as the pass's latest."""
        for index, row in enumerate(rows):
            self._positions[row.uid] = offset + index - self._arrivals
        if rows:
            self._cursor = offset + len(rows) - 1 - self._arrivals
            self._cursor_time = rows[-1].updated
        return rows

    def _give_up(self) -> None:
        self.crowded = True
        self._end_pass()

    def _end_pass(self) -> None:
        self._watermark = max(self._watermark, self._top)
        self._positions = {}
        self._cursor = -1
        self._steps_back = 0
        floor = self._watermark - self._margin
        self._near = {uid: updated for uid, updated in self._near.items() if updated >= floor}

    def restart(self) -> None:
        """Forget the position: the next request starts afresh, as the first did."""
        self._watermark = self._top = -math.inf
        self._positions = {}
        self._near = {}
        self._looked = False
        self._cursor = -1
        self._rate = 0.0
        self.crowded = False

    def __repr__(self) -> str:
        return f"<RunFeed cursor={self._cursor} watermark={self._watermark}>"


def _all_read(rows: list[FeedRow], near: dict[str, float], watermark: float) -> bool:
    """Whether every row of a full page is no newer than ``watermark`` and read already."""
    return bool(rows) and rows[0].updated <= watermark and all(row.uid in near for row in rows)
