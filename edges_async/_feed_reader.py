"""When the poller reads the change feed, and reading it (see :mod:`._run_feed`).

- **When.** With more than 100 runs pending (fewer fit one uid request, which
  also shows every status change), unless ``PollingPolicy.change_feed`` is
  off or the feed was found wanting less than ``_PAUSE`` ago.
- **Share.** Of the poll requests, ``safety_net`` go on asking about the
  pending runs by uid, the most urgent first; the rest read the feed, one
  request at a time (each page follows from the last). When the uid requests
  find more ended runs per request than the feed does (the feed left rows
  unread while runs ended faster than it could page back, and the pending
  runs are full of ended ones), they get a larger share, in proportion, up
  to ``_MAX_NET_SHARE``; at least ``_SWAMPED_NET_SHARE`` while others' runs
  crowd the feed; none while a pass pages back through a burst (callbacks'
  confirmations aside). The first request is the safety net's.
- **Falling back.** A page that shows the list is not a feed (the filter or
  the sort ignored), an error other than a transient one, or a feed crowded
  for ``feed_saturation`` mostly by runs this client does not wait for (more
  of them end than it can show) sends the poller back to uid requests for
  ``_PAUSE``; then the feed is tried afresh. The first fallback is a
  warning, later ones are logged at INFO.
- **Afresh.** A feed set aside because the runs pending fell to 100 or
  fewer starts again with one page: uid requests covered every run
  meanwhile. An outage (backing off) keeps its position.
"""

from __future__ import annotations

import logging
import math
from typing import Final, final

import httpx

from ._backoff import to_seconds
from ._poll_requests import PollRequests
from ._poll_schedule import MAX_BATCH
from ._polling_policy import PollingPolicy
from ._run_feed import FeedRow, FeedUntrusted, RunFeed

__all__ = ["FeedReader"]

logger = logging.getLogger("edges_async")

_SWAMPED_NET_SHARE: Final = 0.5  # the safety net's least share while others' runs swamp the feed
_MAX_NET_SHARE: Final = 0.9  # the most of the requests the safety net takes
_YIELD_WEIGHT: Final = 0.1  # of each request in the running mean of runs found per request
_PAUSE: Final = 600.0  # seconds of uid polling after the feed was found wanting
_MARGIN: Final = 2.0  # seconds below the watermark read again: ties, clock steps, late commits


@final
class FeedReader:
    """The change feed's position, its share of the poll requests, and the fallback."""

    __slots__ = (
        "_busy",
        "_credit",
        "_crowded_since",
        "_dormant",
        "_feed",
        "_feed_yield",
        "_foreign",
        "_net_yield",
        "_off_until",
        "_own",
        "_policy",
        "_requests",
        "_warned",
        "batch",
    )

    def __init__(self, requests: PollRequests, policy: PollingPolicy) -> None:
        self._requests = requests
        self._policy = policy
        self._feed = RunFeed(margin=_MARGIN)
        self._busy = False  # a feed request is under way
        # The safety net's share, accrued: the first request is its own, to
        # learn at once whether runs ended before the wait (the feed's first
        # look reads one page) and take a larger share if so.
        self._credit = 1.0
        self._feed_yield = self._net_yield = 0.0  # runs found ended per request, lately
        self._off_until = -math.inf  # loop time the feed may be tried again
        self._dormant = False  # set while too few runs are pending for the feed
        self._warned = False  # the first fallback warns, later ones only inform
        self._own = self._foreign = 0  # rows read since the feed was crowded: ours, or not
        self._crowded_since = math.inf
        self.batch = MAX_BATCH
        """The most runs one uid request asks about (1 once the list refused uid filters)."""

    def in_use(self, pending: int, now: float) -> bool:
        """Whether the feed carries the polling now, with ``pending`` runs waited for."""
        if pending <= self.batch:
            self._dormant = True  # uid requests cover every run: the position goes stale
            return False
        return self._policy.change_feed and now >= self._off_until

    @property
    def paging(self) -> bool:
        """Whether a pass pages back through more than a page of endings (not a crowd)."""
        return self._feed.paging and not self._feed.crowded

    @property
    def busy(self) -> bool:
        """Whether a feed request is under way (the next page follows from its answer)."""
        return self._busy

    def net_turn(self) -> bool:
        """Whether this request, with runs due, is the safety net's (else the feed's)."""
        self._credit += self._net_share()
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False

    def found(self, *, by_feed: bool, ended: int) -> None:
        """A request found ``ended`` runs ended: the feed's, or the safety net's."""
        if by_feed:
            self._feed_yield += _YIELD_WEIGHT * (ended - self._feed_yield)
        else:
            self._net_yield += _YIELD_WEIGHT * (ended - self._net_yield)

    def _net_share(self) -> float:
        """The safety net's share: ``safety_net``, more while its requests find more."""
        floor = self._policy.safety_net
        if self._feed.crowded and self._foreign > self._own:
            floor = max(floor, _SWAMPED_NET_SHARE)  # the feed shows few of ours: ask by uid
        total = self._net_yield + self._feed_yield
        if total <= 0:
            return floor
        return min(max(floor, _MAX_NET_SHARE), max(floor, self._net_yield / total))

    async def read(self, now: float) -> tuple[list[FeedRow], httpx.Response] | None:
        """The next feed page's new rows; ``None`` when the feed was found wanting.

        Raises:
            Exception: A transient failure (connection, 429, 5xx), to back off on.
        """
        if self._dormant:  # out of use for a while: the way back may be long, and covered
            self._dormant = False
            self._feed.restart()
        offset = self._feed.offset(now)
        self._busy = True
        try:
            page, response = await self._requests.feed_page(offset)
            rows = self._feed.take(page, offset, now)
        except FeedUntrusted as exc:
            self.fall_back(now, str(exc))
            return None
        finally:
            self._busy = False
        return rows, response

    def tally(self, own: int, foreign: int, now: float) -> None:
        """Count a page's rows of runs waited for and not; fall back when others swamp it.

        Swamped: the feed crowded (runs ending faster than it pages back) for
        ``feed_saturation``, with more of the rows read others' than ours.
        """
        if not self._feed.crowded:
            self._crowded_since = math.inf
            return
        if self._crowded_since == math.inf:
            self._crowded_since = now
            self._own = self._foreign = 0
        self._own += own
        self._foreign += foreign
        saturation = to_seconds(self._policy.feed_saturation)
        if now - self._crowded_since >= saturation and self._foreign > self._own:
            self.fall_back(now, f"others' runs end faster than it can show, for {saturation:g} s")

    def fall_back(self, now: float, reason: str) -> None:
        """Ask about runs by uid for ``_PAUSE``, then try the feed afresh."""
        logger.log(
            logging.INFO if self._warned else logging.WARNING,
            "The runs list does not serve as a change feed (%s): polling runs by uid "
            "for %d minutes",
            reason,
            round(_PAUSE / 60),
        )
        self._warned = True
        self._off_until = now + _PAUSE
        self._feed.restart()
        self._credit = 0.0  # uid requests carry everything meanwhile
        self._feed_yield = self._net_yield = 0.0
        self._crowded_since = math.inf

    def __repr__(self) -> str:
        return f"<FeedReader {self._feed!r} off_until={self._off_until}>"
