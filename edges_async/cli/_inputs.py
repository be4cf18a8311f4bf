"""Reading ``edges launch --inputs FILE``: JSON Lines, a JSON array, or CSV; and run uids.

The format comes from the extension (``.jsonl``/``.ndjson``, ``.json``,
``.csv``), else from the content: ``[`` opens a JSON array, ``{`` one JSON
object or JSON Lines, anything else is CSV. A CSV has a header row and one
input per row, its cells as strings (empty cells left out; a cell past the header, under
a column without a name or under a repeated name is refused). Every input must
be a JSON object. ``-`` reads stdin.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["MAX_INPUTS_PER_RUN", "batches", "loads", "read_inputs", "read_uids"]

MAX_INPUTS_PER_RUN = 100_000
"""The API's most inputs in one async launch: more are split into several runs."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def loads(text: str) -> Any:
    """``json.loads``, refusing what cannot be sent back as JSON: NaN, Infinity, 1e999.

    Python's parser accepts them, and the launch would fail only when its body
    is encoded, after the earlier batches were launched.
    """
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def _read_text(source: str) -> str:
    if source == "-":
        if sys.stdin is None:  # started with stdin closed (`<&-`)
            raise ValueError("stdin is closed: nothing to read with '-'")
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None


def _json_lines(text: str, source: str) -> list[Any]:
    items = []
    # Lines end at "\n" only: str.splitlines() also cuts at U+2028, U+0085, form feed...,
    # which JSON allows raw inside strings (json.dumps(..., ensure_ascii=False) writes them).
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                items.append(loads(line))
            except ValueError as error:
                raise ValueError(f"{source}, line {number}: not JSON ({error})") from None
    return items


def _json_array(text: str, source: str) -> list[Any]:
    try:
        value = loads(text)
    except ValueError as error:
        raise ValueError(f"{source}: not JSON ({error})") from None
    return value if isinstance(value, list) else [value]


def _csv_rows(text: str, source: str) -> list[Any]:
    """One input per row under the header; a cell that would be lost is a ``ValueError``.

    Lost: a cell past the header's last column, under a column without a name,
    or under a name the header gives twice. Empty cells are left out (so the
    trailing commas of a spreadsheet's export are fine).
    """
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise ValueError(f"{source}, line 1: column {name!r} appears twice")
        seen.add(name)
    items = []
    for row in reader:
        if not row:  # a blank line
            continue
        if len(row) > len(header) and any(row[len(header) :]):
            raise ValueError(
                f"{source}, line {reader.line_num}: {len(row)} cells under a header of "
                f"{len(header)}"
            )
        item = {}
        for number, (name, cell) in enumerate(zip(header, row, strict=False), start=1):
            if not cell:
                continue
            if not name:
                raise ValueError(
                    f"{source}, line {reader.line_num}: column {number} has no name "
                    f"but holds {cell!r:.40}"
                )
            item[name] = cell
        items.append(item)
    return items


def _guess(text: str, source: str) -> list[Any]:
    start = text.lstrip()[:1]
    if start == "[":
        return _json_array(text, source)
    if start == "{":
        try:
            return [loads(text)]  # one object, maybe over several lines
        except ValueError:
            return _json_lines(text, source)
    return _csv_rows(text, source)


def read_inputs(source: str) -> list[dict[str, Any]]:
    """The inputs in ``source`` (a path, or ``-`` for stdin), each a JSON object.

    Raises ``ValueError`` (with the line when it can) for content that is not
    inputs, and ``OSError`` for a file that cannot be read.
    """
    text = _read_text(source)
    name = "stdin" if source == "-" else source
    suffix = Path(source).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        items = _json_lines(text, name)
    elif suffix == ".json":
        items = _json_array(text, name)
    elif suffix == ".csv":
        items = _csv_rows(text, name)
    else:
        items = _guess(text, name)
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"{name}: input {number} is not a JSON object: {item!r:.60}")
    if not items:
        raise ValueError(f"{name}: no inputs")
    return items


def batches(
    inputs: list[dict[str, Any]], size: int = MAX_INPUTS_PER_RUN
) -> list[list[dict[str, Any]]]:
    """``inputs`` cut into runs of at most ``size`` (100,000: the API's most per launch)."""
    return [inputs[start : start + size] for start in range(0, len(inputs), size)]


def read_uids(arguments: list[str], source: str | None) -> list[str]:
    """Run uids from the command line, then from ``source`` (one per line, ``-`` for stdin).

    Blank lines and repeats are left out; the first occurrence keeps its place.
    """
    uids = [uid.strip() for uid in arguments]
    if source is not None:
        uids.extend(line.strip() for line in _read_text(source).splitlines())
    return list(dict.fromkeys(uid for uid in uids if uid))
