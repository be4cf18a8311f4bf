"""The project's workflow: `nox` runs lint, typecheck and tests; `nox -s demo` the demo."""

from __future__ import annotations

import pathlib

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = pathlib.Path(__file__).parent


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (fake time, simulator in-process and on loopback)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


# 3.10 is supported but not in this list: looptime, which fakes time for the
# suite, needs 3.11 from version 0.9 on, and 0.7 (the last for 3.10) freezes on
# sleeps that end between two of its microsecond ticks.
@nox.session(python=["3.11", "3.12", "3.13"])
def compat(session: nox.Session) -> None:
    """Run the test suite on every Python the fake-time tooling supports (3.11+)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package, tests, benchmarks and examples with mypy --strict."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict")


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ and print their tables."""
    session.install("-e", ".[dev]")
    scripts = sorted(ROOT.glob("benchmarks/bench_*.py"))
    if session.posargs:
        scripts = [path for path in scripts if any(arg in path.name for arg in session.posargs)]
    for script in scripts:
        session.run("python", str(script))


@nox.session
def demo(session: nox.Session) -> None:
    """200 inputs as 5 runs on a simulated Trial workspace: watched, exported, cost summed up."""
    session.install("-e", ".[testing,cli]")  # cli: rich, for the live display on a terminal
    session.run("python", "examples/demo.py", *session.posargs)
