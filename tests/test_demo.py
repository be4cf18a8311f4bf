"""The README's first command: the demo launches, waits, exports and sums up, with no 429."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def exported(directory: Path) -> tuple[int, int]:
    """How many JSON Lines files ``directory`` holds, and how many outputs in all."""
    files = sorted(directory.glob("*.jsonl"))
    return len(files), sum(len(path.read_text().splitlines()) for path in files)


async def test_the_demo_waits_exports_every_output_and_sums_up_the_cost(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """200 inputs as 5 runs on Trial: every run ends, every output exported, within budget."""
    spec = importlib.util.spec_from_file_location("edges_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    sys.modules["edges_demo"] = demo
    try:
        spec.loader.exec_module(demo)
        await demo.main(tmp_path)  # fake time (looptime): the simulator's clock is the loop's
    finally:
        del sys.modules["edges_demo"]
    printed = capsys.readouterr().out
    assert "Launched 200 inputs as 5 runs" in printed
    assert len(re.findall(r"\d/5 ended", printed)) == 5
    assert "runs:      5 over 200 inputs, all ended: 4 SUCCEEDED, 1 PARTIAL_SUCCEEDED" in printed
    assert exported(tmp_path) == (5, 360)
    assert f"outputs:   360 exported to 5 JSON Lines files in {tmp_path}" in printed
    sent = re.search(r"requests:  (\d+) on /v1/runs .* allows ([\d.]+) in", printed, re.DOTALL)
    assert sent is not None
    assert int(sent.group(1)) <= float(sent.group(2)) + 1  # within the plan, first request free
    assert "; 0 refused (429)" in printed
    vendor = re.search(r"up to (\d+)/min while they ran together: ([\d.]+)x", printed)
    assert vendor is not None
    assert float(vendor.group(2)) > 1  # the vendor's pattern would have gone over the budget
    elapsed = re.search(r"time:      ([\d.]+) s", printed)
    assert elapsed is not None
    assert float(elapsed.group(1)) < 60
