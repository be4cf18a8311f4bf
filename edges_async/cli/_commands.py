"""The ``edges runs ...`` and ``edges launch`` commands, each on one open ``AsyncClient``.

Each command takes the parsed arguments, the client and the :class:`Output`,
and returns the exit status; errors are raised and turned into a line and a
status by ``_app``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import edges_async as ea

from ._export import export_run
from ._inputs import batches, read_inputs, read_uids
from ._parser import EXIT_OK, EXIT_USAGE
from ._wait import wait_for_runs

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Coroutine

    from ._output import Output

    Client = ea.AsyncClient[ea.WorkspaceRateLimiter]
    Command = Callable[[argparse.Namespace, Client, Output], Awaitable[int]]

__all__ = ["COMMANDS", "Command"]


async def _list(args: argparse.Namespace, client: Client, output: Output) -> int:
    runs = client.runs.list(
        status=args.status,
        action_name=args.action,
        execution_mode=args.mode,
        sort=args.sort or "-created_at",
        page_size=min(args.limit or 100, 100),
        max_items=args.limit or None,
    )
    output.runs_table([run async for run in runs])
    return EXIT_OK


async def _get(args: argparse.Namespace, client: Client, output: Output) -> int:
    output.run_fields(await client.runs.get(args.uid))
    return EXIT_OK


async def _status(args: argparse.Namespace, client: Client, output: Output) -> int:
    output.runs_table([await client.runs.status(args.uid)])
    return EXIT_OK


async def _cancel(args: argparse.Namespace, client: Client, output: Output) -> int:
    output.runs_table([await client.runs.cancel(args.uid)])
    return EXIT_OK


async def _resume(args: argparse.Namespace, client: Client, output: Output) -> int:
    output.runs_table([await client.runs.resume(args.uid)])
    return EXIT_OK


async def _wait(args: argparse.Namespace, client: Client, output: Output) -> int:
    uids = read_uids(args.uids, args.from_file)
    if not uids:
        output.message("edges runs wait: no run uid given (arguments or --from FILE)")
        return EXIT_USAGE
    return await wait_for_runs(client, uids, output, give_up_after=args.timeout)


async def _export(args: argparse.Namespace, client: Client, output: Output) -> int:
    await export_run(client, args.uid, output, path=args.output, file_format=args.format)
    return EXIT_OK


async def _launch_to_the_end(
    launch: Coroutine[Any, Any, ea.Run], record: Callable[[ea.Run, int], None], size: int
) -> None:
    """Await ``launch``, ``record`` its run (of ``size`` inputs), even if Ctrl-C comes meanwhile.

    Once the request is sent the server may well have made the run: cancelling
    there would leave a run that nothing printed, launched again by a rerun. So
    the request is left to finish and its run recorded before the interruption
    goes on (a second Ctrl-C stops at once). This is asyncio's shield: Ctrl-C
    cancels the main task natively, which no anyio cancel scope holds back.
    """
    task = asyncio.ensure_future(launch)
    try:
        run = await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            run = await task
        except Exception:  # interrupted all the same: the cancellation goes on
            raise asyncio.CancelledError from None
        record(run, size)
        raise
    record(run, size)


async def _launch(args: argparse.Namespace, client: Client, output: Output) -> int:
    callback = ea.Callback(url=args.callback) if args.callback is not None else None
    parameters: dict[str, Any] = dict(args.param)
    inputs = read_inputs(args.inputs)
    export_dir = Path(args.export) if args.export is not None else None
    if export_dir is not None:
        export_dir.mkdir(parents=True, exist_ok=True)
    waiting = args.wait or export_dir is not None
    launched: list[ea.Run] = []
    sent = 0

    def record(run: ea.Run, size: int) -> None:
        nonlocal sent
        launched.append(run)
        sent += size
        output.message(f"Launched run {run.uid} of {args.action} ({size} inputs).")
        if not waiting:
            output.run(run)

    try:
        for batch in batches(inputs):
            await _launch_to_the_end(
                client.actions.run_async(
                    args.action, inputs=batch, parameters=parameters or None, callback=callback
                ),
                record,
                len(batch),
            )
    except BaseException:
        if 0 < sent < len(inputs):  # say which inputs a rerun must launch, and only those
            output.message(f"Not launched: inputs {sent + 1} to {len(inputs)} of {len(inputs)}.")
        raise
    if not waiting:
        return EXIT_OK

    async def export(run: ea.Run) -> None:
        assert export_dir is not None
        path = export_dir / f"{run.uid}.jsonl"
        count = await client.runs.export_outputs(run.uid, path)
        output.message(f"Exported {count} outputs of run {run.uid} to {path}.")

    return await wait_for_runs(
        client,
        [run.uid for run in launched],
        output,
        give_up_after=args.timeout,
        on_ended=export if export_dir is not None else None,
    )


COMMANDS: dict[str, Command] = {
    "list": _list,
    "get": _get,
    "status": _status,
    "cancel": _cancel,
    "resume": _resume,
    "wait": _wait,
    "export": _export,
    "launch": _launch,
}
"""The command functions by name (``runs`` subcommands, and ``launch``)."""
