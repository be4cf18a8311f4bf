"""The README's main job: the demo runs on the embedded simulator and ends cleanly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


async def test_the_demo_waits_for_every_run_and_prints_their_outputs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Four runs launched, each seen ending, outputs printed, no request refused."""
    spec = importlib.util.spec_from_file_location("edges_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    sys.modules["edges_demo"] = demo
    try:
        spec.loader.exec_module(demo)
        await demo.main()
    finally:
        del sys.modules["edges_demo"]
    printed = capsys.readouterr().out
    assert "Launched 4 runs" in printed
    for status in ("SUCCEEDED, 3 outputs", "PARTIAL_SUCCEEDED, 3 outputs", "FAILED, 0 outputs"):
        assert status in printed
    assert "last_error: NO_RESULT" in printed
    assert "0 refused by the rate limit (429)" in printed
