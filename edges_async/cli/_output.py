"""Where the ``edges`` command's words go: results on stdout, everything else on stderr.

stdout carries results only — a table or run lines, or with ``--json`` one JSON
object per line — so pipes work. stderr carries messages, and live displays
only when it is a terminal (rich draws them). While a live display is on
screen and stdout is the same terminal, result lines are printed above it
through the display, so the two do not garble each other.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

import anyio
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from rich.console import RenderableType

    import edges_async as ea

__all__ = ["RUN_COLUMNS", "Output", "run_cells", "status_name"]

RUN_COLUMNS = ("uid", "action", "status", "outputs", "created", "updated")
REFRESH_SECONDS = 0.25


def status_name(status: object) -> str:
    """A run status as printed: the enum's value, an unknown raw string, or ``-`` for none."""
    if status is None:
        return "-"
    return str(getattr(status, "value", status))


def _timestamp(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def run_cells(run: ea.Run) -> tuple[str, ...]:
    """The cells of ``run`` under :data:`RUN_COLUMNS` (times in UTC)."""
    outputs = "-" if run.output_count is None else str(run.output_count)
    return (
        run.uid,
        run.action_name or "-",
        status_name(run.status),
        outputs,
        _timestamp(run.created_at),
        _timestamp(run.updated_at),
    )


async def _redraw(live: Live) -> None:
    while True:
        await anyio.sleep(REFRESH_SECONDS)
        live.refresh()


class Output:
    """The command's two streams: results (``stdout``) and messages/display (``stderr``)."""

    def __init__(
        self, *, json_lines: bool, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_lines = json_lines
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.console = Console(file=self.stderr, highlight=False)
        """The stderr console: messages, and live displays when it is a terminal."""
        self.live: Live | None = None
        """The live display on screen now, if any (set by the displays)."""

    @property
    def interactive(self) -> bool:
        """Whether stderr is a terminal, where live displays are drawn."""
        return self.console.is_terminal

    @contextlib.asynccontextmanager
    async def showing(self, renderable: RenderableType) -> AsyncIterator[None]:
        """Draw ``renderable`` live on stderr while the block runs, if stderr is a terminal.

        It is redrawn every 0.25 s by a task of the block's own, and its last
        frame stays on screen. Off a terminal, nothing is drawn.
        """
        if not self.interactive:
            yield
            return
        live = Live(
            renderable,
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        async with anyio.create_task_group() as redraws:
            live.start(refresh=True)
            self.live = live
            redraws.start_soon(_redraw, live)
            try:
                yield
            finally:
                redraws.cancel_scope.cancel()
                live.refresh()
                live.stop()
                self.live = None

    def message(self, text: str) -> None:
        """One line for the user on stderr (never a result)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def line(self, text: str) -> None:
        """One result line on stdout, above the live display when both share a terminal."""
        if self.live is not None and self.live.is_started and self.stdout.isatty():
            self.live.console.print(text, markup=False, highlight=False, soft_wrap=True)
            return
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def json(self, value: Any) -> None:
        """One JSON object as one stdout line."""
        self.line(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def run(self, run: ea.Run) -> None:
        """A run on stdout: its JSON (the fields the API sent), or its cells on one line."""
        if self.json_lines:
            self.json(run.model_dump(mode="json", exclude_unset=True))
        else:
            self.line("  ".join(run_cells(run)))

    def run_fields(self, run: ea.Run) -> None:
        """Every field the API sent of a run: its JSON, or one ``field  value`` line each."""
        fields = run.model_dump(mode="json", exclude_unset=True)
        if self.json_lines:
            self.json(fields)
            return
        width = max(len(name) for name in fields)
        for name, value in fields.items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            self.line(f"{name:<{width}}  {shown}")

    def runs_table(self, runs: Iterable[ea.Run]) -> int:
        """Runs as a table on stdout (or JSON lines); returns how many."""
        count = 0
        if self.json_lines:
            for run in runs:
                self.run(run)
                count += 1
            return count
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for column in RUN_COLUMNS:
            table.add_column(column, justify="right" if column == "outputs" else "left")
        for run in runs:
            table.add_row(*run_cells(run))
            count += 1
        if self.stdout.isatty():
            Console(file=self.stdout, highlight=False).print(table)
        else:  # plain text as wide as the rows need (never wrapped), no trailing blanks
            rendering = Console(file=io.StringIO(), width=1000, no_color=True, highlight=False)
            with rendering.capture() as captured:
                rendering.print(table)
            for row in captured.get().splitlines():
                self.stdout.write(row.rstrip() + "\n")
        self.stdout.flush()
        return count
