"""The ``edges`` command line's grammar: global options, subcommands, and the exit statuses.

argparse (standard library) reads the global options before the subcommand
natively. Its own exit status for a usage error (2) is moved to 64
(``EX_USAGE``), so that 2 only ever means "timed out" (``runs wait``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from ._inputs import loads

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUNS_FAILED",
    "EXIT_TIMED_OUT",
    "EXIT_USAGE",
    "build_parser",
    "parse_param",
]

EXIT_OK = 0
EXIT_RUNS_FAILED = 1
EXIT_TIMED_OUT = 2
EXIT_ERROR = 3
EXIT_BAD_INPUT = 4
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130

EPILOG = f"""\
exit statuses:
  {EXIT_OK}    success (waiting: every run SUCCEEDED)
  {EXIT_RUNS_FAILED}    waiting: every run ended, some not SUCCEEDED
  {EXIT_TIMED_OUT}    waiting: --timeout passed (the runs still pending are listed on stderr)
  {EXIT_ERROR}    the Edges API or the network failed (HTTP error, connection, incomplete export)
  {EXIT_BAD_INPUT}    a value refused before any request (malformed uid, bad inputs file,
       no API key, non-HTTPS callback...)
  {EXIT_USAGE}   the command line itself is wrong (unknown option, missing argument)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C): polling stopped, the client closed, a file export
       left resumable (run it again to go on)

environment: EDGES_API_KEY, EDGES_PLAN, EDGES_BASE_URL (the client's fallbacks);
EDGES_LOG=debug|info prints the SDK's logs on stderr
"""

# Runs answered by ``runs list`` when --limit is not given: one request.
DEFAULT_LIST_LIMIT = 100


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit with 64, not 2 (2 is "timed out")."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and the error on stderr, then exit with ``EXIT_USAGE``."""
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_param(text: str) -> tuple[str, Any]:
    """``K=V`` as ``(K, V)``, V parsed as JSON when it parses, else kept as a string.

    NaN, Infinity and numbers out of a float's range do not parse: they stay strings.

    >>> parse_param("max_results=10"), parse_param("query=data engineer")
    (('max_results', 10), ('query', 'data engineer'))
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, loads(value)
    except ValueError:
        return key, value


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return seconds


def _non_negative(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return number


def _port(text: str) -> int:
    number = _non_negative(text)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return number


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="S",
        help="give up after S seconds: exit 2, the pending runs listed on stderr",
    )


def _runs_commands(runs: argparse.ArgumentParser) -> None:
    commands = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "list",
        help="list the workspace's runs, newest first",
        description="List runs: a table (uid, action, status, outputs, created, updated), "
        "or one JSON run per line with --json.",
    )
    listing.add_argument(
        "--status",
        nargs="+",
        action="extend",
        metavar="S",
        help="only runs in one of these statuses (RUNNING, SUCCEEDED...)",
    )
    listing.add_argument(
        "--action", action="append", metavar="A", help="only runs of this action (repeatable)"
    )
    listing.add_argument(
        "--mode", action="append", metavar="M", help="only runs of this execution mode: ASYNC, LIVE"
    )
    listing.add_argument(
        "--sort",
        action="append",
        metavar="F",
        help="sort field, '-' first for descending (repeatable; default -created_at)",
    )
    listing.add_argument(
        "--limit",
        type=_non_negative,
        default=DEFAULT_LIST_LIMIT,
        metavar="N",
        help=f"at most N runs (default {DEFAULT_LIST_LIMIT}; 0 for every matching run)",
    )

    for name, text in (
        ("get", "show a run, every field"),
        ("status", "show a run's status (the light endpoint)"),
        ("cancel", "cancel a run"),
        ("resume", "resume a BLOCKED run"),
    ):
        command = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        command.add_argument("uid", metavar="UID", help="the run's uid")

    wait = commands.add_parser(
        "wait",
        help="wait for runs to end, with live progress",
        description="Wait until every run ends; print each as it ends (stdout) and, when stderr "
        "is a terminal, live progress there. Exit 0 if all SUCCEEDED, 1 if some ended "
        "otherwise, 2 on timeout.",
    )
    wait.add_argument("uids", nargs="*", metavar="UID", help="run uids")
    wait.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="read more uids from FILE, one per line ('-' for stdin); blank lines and "
        "duplicates are ignored",
    )
    _add_wait_options(wait)

    export = commands.add_parser(
        "export",
        help="write a run's outputs as JSON Lines or CSV",
        description="Write every output of a run. To a file (-o) the export is resumable and "
        "atomic: interrupted, run the same command again and it goes on where it stopped; "
        "FILE appears only once complete. To stdout it is neither.",
    )
    export.add_argument("uid", metavar="UID", help="the run's uid")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    export.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        default=None,
        help="jsonl (default) or csv: one row per output, a column per key, nested values "
        "as JSON (default: from FILE's extension)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole ``edges`` command line."""
    parser = _Parser(
        prog="edges",
        description="The Edges runs API on the command line: list, watch, export and launch runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--api-key", metavar="K", help="the API key (default: $EDGES_API_KEY)")
    parser.add_argument(
        "--plan",
        metavar="P",
        help="the workspace's plan, which sets the rate (default: $EDGES_PLAN, else trial)",
    )
    parser.add_argument(
        "--base-url",
        metavar="U",
        help="the API's base URL (default: $EDGES_BASE_URL, else https://api.edges.run/v1)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="stdout: one JSON object per line (a run, or an output) instead of tables",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logs on stderr, tracebacks on errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    runs = commands.add_parser("runs", help="list, show, wait for, export, cancel runs")
    _runs_commands(runs)

    launch = commands.add_parser(
        "launch",
        help="launch an action on inputs from a file",
        description="Launch async runs of ACTION: one per 100,000 inputs. Prints the runs "
        "launched, or with --wait the runs as they end.",
    )
    launch.add_argument("action", metavar="ACTION", help="the action's slug")
    launch.add_argument(
        "--inputs",
        required=True,
        metavar="FILE",
        help="JSON Lines, a JSON array, or CSV (a header, one input per row); by extension, "
        "else by content; '-' for stdin",
    )
    launch.add_argument(
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="K=V",
        help="a parameter (repeatable); V is parsed as JSON when it parses, else a string",
    )
    launch.add_argument(
        "--callback", metavar="URL", help="HTTPS URL Edges POSTs the final result to"
    )
    launch.add_argument("--wait", action="store_true", help="wait for the runs, as `runs wait`")
    launch.add_argument(
        "--export",
        metavar="DIR",
        help="write each finished run's outputs to DIR/<run uid>.jsonl (implies --wait)",
    )
    _add_wait_options(launch)

    simulator = commands.add_parser(
        "simulator",
        help="serve the Edges simulator on a local port",
        description="Serve a simulated Edges runs API on loopback, as `python -m "
        "edges_async.testing` does (needs the testing extra). The key and plan default to "
        "the global --api-key / --plan, else sim-key / trial.",
    )
    simulator.add_argument("--host", dest="sim_host", default="127.0.0.1", help="address to bind")
    simulator.add_argument(
        "--port", dest="sim_port", type=_port, default=8765, help="port, 0 for any free one"
    )
    simulator.add_argument("--plan", dest="sim_plan", metavar="P", help="the workspace's plan")
    simulator.add_argument("--api-key", dest="sim_api_key", metavar="K", help="its API key")
    simulator.add_argument(
        "--window",
        dest="sim_window",
        default="sliding",
        choices=("fixed", "sliding", "fixed_minute", "sliding_minute", "per_second", "unlimited"),
        help="the rate-limit window (default sliding)",
    )
    simulator.add_argument("--seed", dest="sim_seed", type=int, default=0, help="random seed")
    return parser
