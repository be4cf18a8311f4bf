"""The `edges` command line, run for real in subprocesses against the simulator on loopback.

The simulator is served from this process (a blocking portal's event loop in
a thread) so that each test can script its own runs; every test gets its own
Titanium workspace, so rate-limit windows never carry over between tests.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from edges_async.cli import main
from edges_async.cli._inputs import batches, read_inputs
from edges_async.cli._parser import parse_param
from edges_async.testing import EdgesSimulator, RunScript, Workspace

QUICK = RunScript(steps=(("QUEUED", 0.0), ("RUNNING", 0.2), ("SUCCEEDED", 0.8)), outputs=4)
QUICK_FAIL = RunScript(steps=(("QUEUED", 0.0), ("RUNNING", 0.2), ("FAILED", 0.8)), outputs=0)
ENDLESS = RunScript(steps=(("QUEUED", 0.0), ("RUNNING", 0.2), ("SUCCEEDED", 3600.0)), outputs=1)
# The command, with every warning shown: an unclosed socket or file would show on stderr.
EDGES = (sys.executable, "-W", "always", "-m", "edges_async.cli")


@dataclass
class Served:
    """The simulator served on loopback, driven from the test thread through the portal."""

    portal: anyio.from_thread.BlockingPortal
    simulator: EdgesSimulator
    base_url: str

    def workspace(self, plan: str = "titanium") -> tuple[Workspace, str]:
        """A fresh workspace and its API key."""
        key = f"cli-{uuid.uuid4().hex}"
        workspace = self.portal.call(lambda: self.simulator.add_workspace(api_key=key, plan=plan))
        return workspace, key

    def add_run(self, workspace: Workspace, script: RunScript, **options: Any) -> str:
        """Seed a run now (in the server's loop, on its clock); return its uid."""
        return self.portal.call(
            lambda: self.simulator.add_run(workspace, script=script, **options).uid
        )

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` in the server's event loop thread."""
        return self.portal.call(function)


def serve_simulator() -> Iterator[Served]:
    """Serve a fresh simulator on a loopback port while the generator is open."""
    with anyio.from_thread.start_blocking_portal() as portal:
        simulator = portal.call(lambda: EdgesSimulator(seed=11))
        with portal.wrap_async_context_manager(simulator.serve()) as base_url:
            yield Served(portal, simulator, base_url)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One simulator on loopback for the module's tests."""
    yield from serve_simulator()


def cli_env(served: Served, api_key: str | None, **extra: str) -> dict[str, str]:
    """The environment of an `edges` process: the simulator's URL, the key, Titanium."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("EDGES_")}
    env.update(EDGES_BASE_URL=served.base_url, EDGES_PLAN="titanium", COLUMNS="120")
    if api_key is not None:
        env["EDGES_API_KEY"] = api_key
    env.update(extra)
    return env


def edges(
    served: Served, api_key: str | None, *args: str, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``edges ARGS`` to completion (``python -W always -m edges_async.cli``)."""
    return subprocess.run(
        [*EDGES, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(served, api_key),
        timeout=timeout,
        check=False,
    )


@dataclass
class Invoked:
    """What ``main()`` called in this process returned and printed."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def invoke(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], served: Served
) -> Callable[..., Invoked]:
    """``edges_async.cli.main(args)`` in this process, against ``served`` (fast: no startup).

    The subprocess tests cover the console script itself; these the commands' output.
    """

    def run(api_key: str | None, *args: str, stdin: str = "") -> Invoked:
        for name, value in cli_env(served, api_key).items():
            if name.startswith("EDGES_"):
                monkeypatch.setenv(name, value)
        if api_key is None:
            monkeypatch.delenv("EDGES_API_KEY", raising=False)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            status = main(list(args))
        except SystemExit as exited:  # argparse exits on a usage error
            status = exited.code if isinstance(exited.code, int) else -1
        out, err = capsys.readouterr()
        return Invoked(status, out, err)

    return run


def edges_at_once(
    served: Served, api_key: str | None, *commands: tuple[str, ...], stdin: str = ""
) -> list[subprocess.CompletedProcess[str]]:
    """Run several independent ``edges`` commands side by side (startup is most of their time)."""
    processes = [
        subprocess.Popen(
            [*EDGES, *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(served, api_key),
        )
        for command in commands
    ]
    done = []
    for command, process in zip(commands, processes, strict=True):
        out, err = process.communicate(stdin, timeout=30)
        done.append(subprocess.CompletedProcess(list(command), process.returncode, out, err))
    return done


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line as a JSON object."""
    return [json.loads(line) for line in text.splitlines()]


def test_the_edges_console_script_is_installed() -> None:
    """`pip install` puts an `edges` console script pointing at edges_async.cli:main."""
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="edges")
    assert script.value == "edges_async.cli:main"
    from edges_async.cli import main

    assert script.load() is main


def test_wait_exits_0_and_prints_each_run_as_json_when_all_succeed(served: Served) -> None:
    """Every run SUCCEEDED: status 0, one JSON run per line on stdout, nothing on stderr."""
    workspace, key = served.workspace()
    uids = [served.add_run(workspace, QUICK) for _ in range(3)]
    done = edges(served, key, "--json", "runs", "wait", *uids, "--timeout", "20")
    assert done.returncode == 0, done.stderr
    runs = json_lines(done.stdout)
    assert sorted(run["uid"] for run in runs) == sorted(uids)
    assert {(run["status"], run["output_count"]) for run in runs} == {("SUCCEEDED", 4)}
    assert done.stderr == ""


def test_wait_exits_1_when_a_run_ends_otherwise_reading_uids_from_stdin(served: Served) -> None:
    """`--from -` reads uids (blank lines and repeats ignored); a FAILED run makes the status 1."""
    workspace, key = served.workspace()
    good, bad = served.add_run(workspace, QUICK), served.add_run(workspace, QUICK_FAIL)
    done = edges(
        served, key, "runs", "wait", good, "--from", "-", stdin=f"\n{bad}\n\n{good}\n{bad}\n"
    )
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert {line.split()[0]: line.split()[2] for line in lines} == {
        good: "SUCCEEDED",
        bad: "FAILED",
    }
    assert "1 of 2 runs did not succeed" in done.stderr


def test_wait_exits_2_on_timeout_and_lists_the_pending_runs(served: Served) -> None:
    """Past --timeout: status 2, the ended run on stdout, the pending one named on stderr."""
    workspace, key = served.workspace()
    quick, endless = served.add_run(workspace, QUICK), served.add_run(workspace, ENDLESS)
    done = edges(served, key, "--json", "runs", "wait", quick, endless, "--timeout", "1.5")
    assert done.returncode == 2, done.stderr
    assert [run["uid"] for run in json_lines(done.stdout)] == [quick]
    assert "Timed out: 1 of 2 runs still pending" in done.stderr
    assert f"{endless}  RUNNING" in done.stderr


def test_runs_list_prints_a_table_and_filters_by_status(
    served: Served, invoke: Callable[..., Invoked]
) -> None:
    """`runs list`: a header and one row per run; --status filters; --json one run per line."""
    workspace, key = served.workspace()
    ended = RunScript(steps=(("SUCCEEDED", 0.0),), outputs=7)
    blocked = RunScript(steps=(("BLOCKED", 0.0),), outputs=2)
    first = served.add_run(workspace, ended, age=60, action_name="linkedin-extract-people")
    second = served.add_run(workspace, blocked, action_name="linkedin-search-people")
    table = invoke(key, "runs", "list")
    only = invoke(key, "--json", "runs", "list", "--status", "SUCCEEDED", "FAILED")
    limited = invoke(key, "--json", "runs", "list", "--limit", "1")
    assert table.returncode == 0, table.stderr
    header, rule, *rows = table.stdout.splitlines()
    assert header.split() == ["uid", "action", "status", "outputs", "created", "updated"]
    assert set(rule) == {"─"}
    assert [row.split()[:4] for row in rows] == [  # newest first
        [second, "linkedin-search-people", "BLOCKED", "2"],
        [first, "linkedin-extract-people", "SUCCEEDED", "7"],
    ]
    assert [(run["uid"], run["output_count"]) for run in json_lines(only.stdout)] == [(first, 7)]
    assert [run["uid"] for run in json_lines(limited.stdout)] == [second]


def test_get_status_cancel_and_resume_print_the_run(
    served: Served, invoke: Callable[..., Invoked]
) -> None:
    """get (every field), status, cancel (RUNNING -> STOPPED) and resume (BLOCKED -> SCHEDULED)."""
    workspace, key = served.workspace()
    running = served.add_run(workspace, RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 3600.0))))
    blocked = served.add_run(
        workspace, RunScript(steps=(("RUNNING", 0.0), ("BLOCKED", 0.1)), outputs=1)
    )
    got = invoke(key, "--json", "runs", "get", running)
    fields = invoke(key, "runs", "get", running)
    status = invoke(key, "runs", "status", running)
    cancelled = invoke(key, "--json", "runs", "cancel", running)
    resumed = invoke(key, "--json", "runs", "resume", blocked)
    (run,) = json_lines(got.stdout)
    assert (run["uid"], run["execution_mode"], run["workspace_uid"]) == (
        running,
        "ASYNC",
        workspace.uid,
    )
    assert re.search(rf"^uid\s+{running}$", fields.stdout, re.MULTILINE)
    assert re.search(r"^output_count\s+\d+$", fields.stdout, re.MULTILINE)
    assert status.stdout.splitlines()[2].split()[:3] == [running, "-", "RUNNING"]
    assert json_lines(cancelled.stdout)[0]["status"] == "STOPPED"
    assert json_lines(resumed.stdout)[0]["status"] == "SCHEDULED"


ERRORS = {  # command (None: an ended run's uid) -> exit status, start of stderr's last line
    ("runs", "get", "not-a-uid"): (4, "edges: ValueError: run_uid must be a UUID"),
    ("runs", "get", str(uuid.UUID(int=1))): (3, "edges: NotFoundError: 404 Not Found from GET"),
    ("runs", "resume", None): (3, "edges: UnprocessableEntityError: 422 Unprocessable Entity"),
    ("launch", "a", "--inputs", "-", "--callback", "http://x"): (
        4,
        "edges: ValueError: callback URLs must be absolute https:// URLs",
    ),
    ("launch", "a", "--inputs", "-"): (4, "edges: ValueError: stdin, line 2: not JSON"),
    ("runs", "list", "--limit", "-1"): (64, "edges runs list: error: argument --limit"),
    ("runs", "wait"): (64, "edges runs wait: no run uid given"),
    # refused inside the wait's task group: the error it wraps, on one line
    ("runs", "wait", str(uuid.UUID(int=1)), "not-a-uid"): (
        4,
        "edges: ValueError: run_uid must be a UUID",
    ),
    ("--json", "runs", "export", None, "--format", "csv"): (
        4,
        "edges: ValueError: --json puts one JSON object per line on stdout: CSV needs -o FILE",
    ),
    ("runs", "export", None, "-o", "missing/dir/out.csv"): (
        4,
        "edges: ValueError: -o must name a file in an existing directory, got 'missing/dir/",
    ),
}


def test_each_error_is_one_line_on_stderr_with_its_documented_status(
    served: Served, invoke: Callable[..., Invoked]
) -> None:
    """Refused values 4, API errors 3, usage 64: one line naming the error, never a traceback."""
    workspace, key = served.workspace()
    run = served.add_run(workspace, RunScript(steps=(("SUCCEEDED", 0.0),), outputs=0))
    for command, (status, message) in ERRORS.items():
        argv = [run if arg is None else arg for arg in command]
        done = invoke(key, *argv, stdin='{"a": 1}\nnot json\n')
        assert (done.returncode, done.stdout) == (status, ""), (command, done.stderr)
        lines = done.stderr.splitlines()
        assert lines[-1].startswith(message), (command, done.stderr)
        assert "Traceback" not in done.stderr
        if status != 64:  # (argparse prints its usage first)
            assert len(lines) == 1, done.stderr


def test_ctrl_c_during_wait_exits_130_cleanly(served: Served) -> None:
    """SIGINT mid-wait: status 130, 'interrupted' and nothing else: no traceback, no warning."""
    workspace, key = served.workspace()
    run = served.add_run(workspace, ENDLESS)
    process = subprocess.Popen(
        [*EDGES, "runs", "wait", run],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(served, key),
    )
    try:
        deadline = time.monotonic() + 20
        while not served.call(
            lambda: sum(r.workspace_uid == workspace.uid for r in served.simulator.requests)
        ):
            assert time.monotonic() < deadline, "the wait never polled"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert (out, err) == ("", "edges: interrupted\n")


@dataclass(frozen=True)
class OnTerminal:
    """How a command run with stderr on a pseudo-terminal went."""

    returncode: int
    drawn: str
    """What it drew on the terminal (stderr), escape codes and all."""
    stdout: str


def run_on_terminal(command: list[str], env: dict[str, str]) -> OnTerminal:
    """Run ``command`` with stderr a pseudo-terminal, reading what it draws until it exits."""
    primary, secondary = os.openpty()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary, env=env) as process:
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other side closed: the process is gone
                break
            if not chunk:
                break
            drawn += chunk
        assert process.stdout is not None
        printed = process.stdout.read().decode()
    os.close(primary)
    return OnTerminal(process.returncode, drawn.decode(), printed)


def test_the_live_display_draws_counts_on_a_terminal(served: Served) -> None:
    """With stderr a (pseudo) terminal, the wait draws its bar, counts per status and 429s."""
    workspace, key = served.workspace()
    uids = [served.add_run(workspace, QUICK), served.add_run(workspace, QUICK_FAIL)]
    done = run_on_terminal([*EDGES, "runs", "wait", *uids], cli_env(served, key, TERM="xterm"))
    assert done.returncode == 1
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.drawn)
    last = screen.rsplit("runs ended", 2)[-2:]
    assert "2/2 runs ended" in screen
    assert re.search(r"(SUCCEEDED 1  FAILED 1|FAILED 1  SUCCEEDED 1)", last[-1])
    assert "429s 0" in last[-1]
    assert "requests " in screen
    assert "plan 600/min" in screen
    assert len(done.stdout.splitlines()) == 2  # the runs still go to stdout, not the terminal


def test_launch_reads_csv_parses_params_waits_and_exports(served: Served, tmp_path: Path) -> None:
    """launch: CSV inputs, --param as JSON or string, --export DIR/<uid>.jsonl once ended."""
    workspace, key = served.workspace()
    served.call(lambda: served.simulator.script_runs(QUICK))
    inputs = tmp_path / "people.csv"
    inputs.write_text("linkedin_profile_url,note\nhttps://x.test/a,\nhttps://x.test/b,hi\n")
    done = edges(
        served,
        key,
        "--json",
        "launch",
        "linkedin-extract-people",
        "--inputs",
        str(inputs),
        "--param",
        "max_results=3",
        "--param",
        "label=two words",
        "--param",
        'tags=["a"]',
        "--export",
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stderr
    (run,) = json_lines(done.stdout)
    assert (run["status"], run["output_count"]) == ("SUCCEEDED", 4)
    assert run["parameters"] == {"max_results": 3, "label": "two words", "tags": ["a"]}
    exported = (tmp_path / "out" / f"{run['uid']}.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in exported] == [0, 1, 2, 3]
    assert f"Launched run {run['uid']} of linkedin-extract-people (2 inputs)" in done.stderr
    launched = served.call(lambda: served.simulator.get_run(run["uid"]))
    assert launched.workspace.uid == workspace.uid


def test_launch_splits_more_than_100000_inputs_into_runs(served: Served, tmp_path: Path) -> None:
    """100,001 inputs from a JSON array: two runs, 100,000 and 1, printed as launched."""
    _, key = served.workspace()
    inputs = tmp_path / "many.json"
    inputs.write_text(json.dumps([{"n": n} for n in range(100_001)]))
    done = edges(served, key, "--json", "launch", "some-action", "--inputs", str(inputs))
    assert done.returncode == 0, done.stderr
    uids = [run["uid"] for run in json_lines(done.stdout)]
    assert len(uids) == 2
    counts = served.call(lambda: [served.simulator.get_run(uid).input_count for uid in uids])
    assert counts == [100_000, 1]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("in.jsonl", '{"a": 1}\n\n{"a": 2}\n'),
        ("in.json", '[{"a": 1}, {"a": 2}]'),
        ("in.csv", "a\n1\n2\n"),
        ("in.txt", '{"a": 1}\n{"a": 2}\n'),
        ("in.txt", '  [{"a": 1},\n {"a": 2}]'),
        ("in", "a,b\n1,\n2,\n"),
    ],
)
def test_inputs_are_read_from_json_lines_json_or_csv(tmp_path: Path, name: str, text: str) -> None:
    """Each format (by extension, else by content) gives one object per input."""
    path = tmp_path / name
    path.write_text(text)
    assert [str(item["a"]) for item in read_inputs(str(path))] == ["1", "2"]


def test_inputs_that_are_not_objects_are_refused_with_the_line(tmp_path: Path) -> None:
    """A line that is not JSON, or an input that is not an object, is a ValueError naming it."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\nnope\n')
    with pytest.raises(ValueError, match="line 2"):
        read_inputs(str(path))
    path.write_text('{"a": 1}\n[2]\n')
    with pytest.raises(ValueError, match="input 2 is not a JSON object"):
        read_inputs(str(path))
    assert [len(batch) for batch in batches([{}] * 5, size=2)] == [2, 2, 1]


def test_an_inputs_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    """Latin-1 bytes in an inputs file: a ValueError naming the file, not a decoding crash."""
    path = tmp_path / "in.csv"
    path.write_bytes("name\nJos\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"in\.csv: not UTF-8 text \(byte 8\)"):
        read_inputs(str(path))


def test_a_closed_stdin_is_a_bad_input_not_a_crash(served: Served) -> None:
    """`--from -` / `--inputs -` with stdin closed (`<&-`): one line, status 4."""
    _, key = served.workspace()
    for args in (("runs", "wait", "--from", "-"), ("launch", "act", "--inputs", "-")):
        done = subprocess.run(
            [*EDGES, *args],
            capture_output=True,
            text=True,
            env=cli_env(served, key),
            timeout=30,
            check=False,
            preexec_fn=lambda: os.close(0),  # the shell's `<&-`
        )
        assert (done.returncode, done.stdout) == (4, ""), done.stderr
        assert done.stderr == "edges: ValueError: stdin is closed: nothing to read with '-'\n"


def test_json_lines_inputs_keep_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    """U+2028, U+0085, form feed... are allowed raw in JSON strings: only newlines end a line."""
    path = tmp_path / "in.jsonl"
    texts = ["a\u2028b", "c\u2029d", "e\x85f", "g\x0ch", "i\x1ej"]
    path.write_text("".join(json.dumps({"q": text}, ensure_ascii=False) + "\r\n" for text in texts))
    assert [item["q"] for item in read_inputs(str(path))] == texts


def test_non_finite_numbers_are_refused_before_any_launch(tmp_path: Path) -> None:
    """NaN, Infinity, 1e999 are not JSON: an inputs file with one is refused, naming the line;
    a --param value with one is kept as a string (it cannot be sent as a number)."""
    path = tmp_path / "in.jsonl"
    for bad in ("NaN", "-Infinity", "1e999"):
        path.write_text(f'{{"a": 1}}\n{{"a": {bad}}}\n')
        with pytest.raises(ValueError, match="line 2"):
            read_inputs(str(path))
    array = tmp_path / "in.json"
    array.write_text('[{"a": 1}, {"a": Infinity}]')
    with pytest.raises(ValueError, match="not JSON"):
        read_inputs(str(array))
    assert [parse_param(f"a={bad}") for bad in ("NaN", "Infinity", "1e999", "2.5")] == [
        ("a", "NaN"),
        ("a", "Infinity"),
        ("a", "1e999"),
        ("a", 2.5),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("url\nhttp://x,extra\n", r"line 2: 2 cells under a header of 1"),
        ("a,a\n1,2\n", r"line 1: column 'a' appears twice"),
        (",b\n1,2\n", r"line 2: column 1 has no name but holds '1'"),
    ],
)
def test_csv_inputs_that_would_lose_cells_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    """A row longer than the header, a header naming a column twice or not at all: refused."""
    path = tmp_path / "in.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_inputs(str(path))


def test_ctrl_c_during_a_launch_request_still_reports_the_run_it_made(tmp_path: Path) -> None:
    """SIGINT once the launch request is sent: the run exists, so it is printed, then 130.

    A server that answers the launch slowly; Ctrl-C comes while it works. Cancelling the
    request there would lose the run (made on the server, printed nowhere) and a rerun
    would launch it twice. The batches not yet sent are named on stderr.
    """
    import http.server
    import threading

    uid = str(uuid.uuid4())
    received = threading.Event()

    class SlowLaunch(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            received.set()
            time.sleep(1.5)
            body = json.dumps({"run_uid": uid, "status": "CREATED", "action_name": "act"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowLaunch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"a": 1}\n' * 100_001)
    env = {name: value for name, value in os.environ.items() if not name.startswith("EDGES_")}
    env.update(
        EDGES_API_KEY="slow-key-123",
        EDGES_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}/v1",
    )
    process = subprocess.Popen(
        [*EDGES, "--json", "launch", "act", "--inputs", str(inputs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert received.wait(30)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        server.shutdown()
        server.server_close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert [run["uid"] for run in json_lines(out)] == [uid]
    assert err.splitlines() == [
        f"Launched run {uid} of act (100000 inputs).",
        "Not launched: inputs 100001 to 100001 of 100001.",
        "edges: interrupted",
    ]
