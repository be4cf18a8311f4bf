"""Live action results, and the cursors that page through a large answer.

A live action's results are a pure function of its input (and of the count
``sim.script_live`` set for the action, if any): one to three records by
default. An answer longer than a page continues at the ``X-Pagination-Next``
URL, which the client POSTs the same body to. Its cursor names the next index
and a digest of the action and body, sealed with a keyed hash, and stamped
with the clock reading it was issued at: a cursor used with another body, a
forged one, or one older than 24 hours is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from typing import TYPE_CHECKING, Any

from ._outputs import output_page
from ._sealing import Sealer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._validation import LiveLaunch

__all__ = ["CURSOR_LIFETIME", "LiveCursors", "live_count", "live_page"]

#: Seconds a live cursor stays valid.
CURSOR_LIFETIME = 24 * 3600.0


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def _seed(input_object: Any) -> int:
    digest = hashlib.blake2b(_canonical(input_object), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def live_count(launch: LiveLaunch, scripted: int | None) -> int:
    """How many results the live run answers: scripted, else 1-3 by input; capped by max_results."""
    count = scripted if scripted is not None else 1 + _seed(launch.input) % 3
    if launch.max_results is not None:
        count = min(count, launch.max_results)
    return max(0, count)


def live_page(launch: LiveLaunch, start: int, stop: int) -> list[dict[str, Any]]:
    """Results ``start`` (inclusive) to ``stop`` (exclusive) of a live run."""
    return output_page(_seed(launch.input), start, stop)


class LiveCursors:
    """Opaque live-results cursors: (body digest, next index, issue time), sealed.

    The wire form is 43 URL-safe base64 characters (32 bytes, unpadded).
    """

    __slots__ = ("_sealer",)

    _PAYLOAD = struct.Struct(">8sQd")

    def __init__(self, key: bytes) -> None:
        self._sealer = Sealer(key, person=b"live-cursors")

    @staticmethod
    def _digest(action: str, body: Mapping[str, Any]) -> bytes:
        return hashlib.blake2b(_canonical([action, body]), digest_size=8).digest()

    def encode(self, action: str, body: Mapping[str, Any], index: int, issued: float) -> str:
        """The cursor of result ``index`` of the live request ``body`` to ``action``."""
        return self._sealer.seal(self._PAYLOAD.pack(self._digest(action, body), index, issued))

    def decode(self, cursor: str, action: str, body: Mapping[str, Any], now: float) -> int:
        """The index a cursor points at for this request; ``ValueError`` saying why if none."""
        payload = self._sealer.open(cursor, self._PAYLOAD.size)
        digest, index, issued = self._PAYLOAD.unpack(payload)
        if not hmac.compare_digest(digest, self._digest(action, body)):
            raise ValueError(
                "cursor belongs to another request: POST the same body to the X-Pagination-Next URL"
            )
        if now - issued > CURSOR_LIFETIME:
            raise ValueError("cursor has expired: live cursors last 24 hours")
        return int(index)

    def __repr__(self) -> str:
        return "LiveCursors(<key>)"
