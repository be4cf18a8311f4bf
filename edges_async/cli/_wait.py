"""Waiting for runs with a live display: ``edges runs wait`` and ``edges launch --wait``.

One ``client.watch_runs`` (the SDK's single poller) waits for every run; each
run is printed on stdout as it ends. When stderr is a terminal, a display
redrawn four times a second (``Output.showing``) shows a done/total bar, the count of runs per
status, elapsed time and ETA, the request rate against the plan and the 429s
so far (``client.limiter.statistics()``).
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

import anyio
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

import edges_async as ea

from ._output import status_name
from ._parser import EXIT_OK, EXIT_RUNS_FAILED, EXIT_TIMED_OUT

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from rich.console import RenderableType

    from ._output import Output

__all__ = ["WaitDisplay", "wait_for_runs"]

_WAITING = "waiting"  # a run whose status has not been seen yet


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class WaitDisplay:
    """What the live display shows of a wait: rendered by rich from the current state."""

    def __init__(
        self, client: ea.AsyncClient[ea.WorkspaceRateLimiter], uids: Sequence[str]
    ) -> None:
        self._client = client
        self._statuses: dict[str, str] = {uid.lower(): _WAITING for uid in uids}
        self._ended: set[str] = set()
        self._started = time.monotonic()  # wall time, for display only
        self._requests_before = client.limiter.statistics().requests_sent

    @property
    def total(self) -> int:
        """How many runs are awaited."""
        return len(self._statuses)

    @property
    def done(self) -> int:
        """How many of them have ended."""
        return len(self._ended)

    def status_changed(self, run: ea.Run) -> None:
        """Note a run's new status (the ``on_status_change`` hook of the wait)."""
        self._statuses[run.uid.lower()] = status_name(run.status)

    def ended(self, run: ea.Run) -> None:
        """Note a run that reached a terminal status."""
        self.status_changed(run)
        self._ended.add(run.uid.lower())

    def counts(self) -> list[tuple[str, int]]:
        """Runs per status, the most frequent first."""
        return collections.Counter(self._statuses.values()).most_common()

    def __rich__(self) -> RenderableType:
        """The display's current frame: progress, counts per status, requests."""
        elapsed = time.monotonic() - self._started
        done, total = self.done, self.total
        if done == total:
            eta = "done"
        elif done:
            eta = _duration(elapsed / done * (total - done))
        else:
            eta = "-:--"
        head = Table.grid(padding=(0, 2))
        head.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=32),
            Text(f"{done}/{total} runs ended"),
            Text(f"elapsed {_duration(elapsed)}"),
            Text(f"ETA {eta}"),
        )
        counts = "  ".join(f"{status} {count}" for status, count in self.counts())
        stats = self._client.limiter.statistics()
        sent = stats.requests_sent - self._requests_before
        per_minute = sent / max(elapsed, 1.0) * 60
        requests = (
            f"requests {sent} ({per_minute:.1f}/min; plan {stats.nominal_rate:g}/min, "
            f"paced at {stats.current_rate:.1f}/min)  429s {stats.rate_limited}"
        )
        return Group(head, Text(counts), Text(requests))


async def wait_for_runs(
    client: ea.AsyncClient[ea.WorkspaceRateLimiter],
    uids: Sequence[str],
    output: Output,
    *,
    give_up_after: float | None,
    on_ended: Callable[[ea.Run], Coroutine[Any, Any, None]] | None = None,
) -> int:
    """Wait for ``uids``, print each run as it ends; return the exit status (0, 1 or 2).

    ``on_ended`` (an export, say) runs as a task for each run that ended; the
    wait returns once all of them are done. On timeout the runs still pending
    are listed on stderr. ``give_up_after`` is the wait's timeout in seconds.
    """
    display = WaitDisplay(client, uids)
    not_succeeded = 0
    pending: list[ea.Run] | None = None
    async with output.showing(display), anyio.create_task_group() as follow_ups:
        try:
            async with client.watch_runs(
                uids, timeout=give_up_after, on_status_change=display.status_changed
            ) as runs:
                async for run in runs:
                    display.ended(run)
                    output.run(run)
                    if run.status is not ea.RunStatus.SUCCEEDED:
                        not_succeeded += 1
                    if on_ended is not None:
                        follow_ups.start_soon(on_ended, run)
        except ea.WaitTimeoutError as timed_out:
            pending = timed_out.runs
    if pending is not None:
        output.message(f"Timed out: {len(pending)} of {display.total} runs still pending:")
        for run in pending:
            output.message(f"  {run.uid}  {status_name(run.status)}")
        return EXIT_TIMED_OUT
    if not_succeeded:
        output.message(f"{not_succeeded} of {display.total} runs did not succeed.")
        return EXIT_RUNS_FAILED
    return EXIT_OK
