"""``edges``'s entry point: parse, open the client, run the command, map errors to statuses.

An error is printed as one line on stderr (``edges: <type>: <message>``) with
the exit status ``edges --help`` documents; the traceback only with ``-v``.
Ctrl-C cancels the command like any other cancellation — the waits stop
polling, the client closes, a file export stays resumable — and exits 130.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from typing import TYPE_CHECKING

import anyio

import edges_async as ea

from ._parser import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    build_parser,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from ._commands import Command
    from ._output import Output

__all__ = ["main"]

_WINDOWS = {"fixed": "fixed_minute", "sliding": "sliding_minute"}


def _configure_logging(verbose: bool) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("edges_async")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _innermost(error: BaseException) -> BaseException:
    """The error a task group wrapped, when it wrapped one (cancellations set aside)."""
    # (Base)ExceptionGroup, builtin from 3.11 and a backport on 3.10: known by its shape.
    # Read after anyio.run returned: no event loop to ask anyio about, and
    # the command line runs on asyncio, whose cancellation this is.
    while isinstance(inner := getattr(error, "exceptions", None), tuple):
        errors = [item for item in inner if not isinstance(item, asyncio.CancelledError)]
        if not errors:
            break
        error = errors[0]
    return error


def _one_line(error: BaseException) -> tuple[str, str]:
    """The error's type name and its message, on one line."""
    name = type(error).__name__
    errors = getattr(error, "errors", None)
    if callable(errors) and isinstance(error, ValueError) and name == "ValidationError":
        # pydantic's (an argument the SDK's models refused): its messages, as the ValueError it is
        name = "ValueError"
        text = "; ".join(
            str(item.get("msg", "")).removeprefix("Value error, ") for item in errors()
        )
    else:
        text = str(error)
    return name, " ".join(text.split()) or name


def _status_for(error: BaseException) -> int:
    if isinstance(error, ea.ConfigurationError | ValueError | OSError | UnicodeError):
        return EXIT_BAD_INPUT
    return EXIT_ERROR


async def _run(args: argparse.Namespace, output: Output, commands: dict[str, Command]) -> int:
    name = args.runs_command if args.command == "runs" else args.command
    async with ea.AsyncClient(args.api_key, plan=args.plan, base_url=args.base_url) as client:
        return await commands[name](args, client, output)


def _simulator(args: argparse.Namespace) -> int:
    try:
        from edges_async.testing.__main__ import DEFAULT_API_KEY, serve_simulator
    except ImportError as error:
        print(
            f"edges: the simulator needs the testing extra "
            f"(pip install 'edges-async[testing]'): {error}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    plan = (args.sim_plan or args.plan or ea.PlanTier.TRIAL.value).lower()
    if plan not in {tier.value for tier in ea.PlanTier}:
        print(f"edges: unknown plan {plan!r}", file=sys.stderr)
        return EXIT_USAGE
    return serve_simulator(
        host=args.sim_host,
        port=args.sim_port,
        api_key=args.sim_api_key or args.api_key or DEFAULT_API_KEY,
        plan=plan,
        window=_WINDOWS.get(args.sim_window, args.sim_window),
        seed=args.sim_seed,
    )


def _stdout_closed() -> int:
    """stdout's reader left (``edges runs list | head -1``): stop quietly, status 0."""
    # Python would flush stdout again at exit and complain: point it at devnull.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``edges`` command line with ``argv`` (default: ``sys.argv[1:]``); return its status.

    >>> main(["--json", "runs", "status", "4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11"])
    0
    """
    try:
        from ._commands import COMMANDS
        from ._output import Output
    except ImportError as error:  # rich, from the cli extra
        print(
            f"edges: the command line needs the cli extra (pip install 'edges-async[cli]'): "
            f"{error}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    if args.command == "simulator":
        return _simulator(args)
    output = Output(json_lines=args.json)
    try:
        return anyio.run(_run, args, output, COMMANDS)
    except KeyboardInterrupt:
        output.message("edges: interrupted")
        return EXIT_INTERRUPTED
    except Exception as raised:
        failure = _innermost(raised)
        if isinstance(failure, BrokenPipeError):
            return _stdout_closed()
        if args.verbose:
            traceback.print_exception(raised)
        name, text = _one_line(failure)
        output.message(f"edges: {name}: {text}")
        return _status_for(failure)
