"""Claiming a callback in Redis, so that a callback Edges delivers to two workers counts once.

A process taking a callback claims its ``callback_ref_uid`` (by digest)
first: *pending* for ``PENDING_SECONDS`` while it keeps the callback, then
*done* for ``DONE_SECONDS`` once the callback is on the workspace's stream.
Another process's delivery meanwhile is *busy* (answer 503: if the first
process died, Edges' next delivery is taken) or *done* (a duplicate: 200).
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["CLAIM", "DONE_SECONDS", "PENDING_SECONDS", "claim_answer"]

DONE_SECONDS = 3600  # Edges' redeliveries come within minutes
PENDING_SECONDS = 30

# KEYS[1] the claim; ARGV[1] seconds a pending claim lasts.
CLAIM = """
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], 'pending', 'EX', ARGV[1])
  return 'ours'
end
if held == 'pending' then return 'busy' end
return 'done'
"""


def claim_answer(answer: Any) -> Literal["ours", "busy", "done"]:
    """The :data:`CLAIM` script's answer, typed."""
    if answer in (b"busy", "busy"):
        return "busy"
    if answer in (b"done", "done"):
        return "done"
    return "ours"
