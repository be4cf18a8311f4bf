"""The slot book in Redis: the Lua scripts, and typed calls to them.

Each route group of a workspace is one hash, ``edges:{<workspace>}:budget:<group>``,
holding the slot book of ``_slot_book`` (the same algorithm, in Lua)::

    next          the next free slot of the stream (Redis time, seconds)
    paused_until  no slot before it (after a 429)
    factor        the adaptive factor: steps down on 429s, recovers on successes
    refused_at    the factor of the latest 429
    last_success  the Redis time of the latest success (-1: none yet)
    share         the share of the plan foreign traffic leaves us
    epoch         bumped by each 429 that starts or extends a pause
    last          the latest slot given, while it is the last (-1: not known)
    free          one slot given back before the last one (-1: none)
    win cnt prev  grants in the current and the previous minute (our own traffic)
    sent          the Redis time of the latest grant (-inf: none yet)
    book          the book's random id, set by the call that creates the hash

Rules the scripts keep:

- the time is Redis ``TIME`` (never a process's clock: hosts disagree), unless
  a test passes ``now``: the first argument of every script, empty in production;
- every field has a default and is clamped: a missing key, a missing field or a
  garbage value (``nan``, ``inf``, text) never breaks a script;
- constant time: no loop over data, a fixed number of fields per call;
- times go out and are stored as ``%.6f`` text (a Lua number would reach the
  client truncated to an integer), so a slot handed back compares equal;
- each write refreshes the key's expiry: an idle workspace leaves nothing behind;
- a slot belongs to one book: a reservation carries the book's id, and a
  slot of another book (Redis lost its data: a restart without persistence,
  a flush, a failover to a replica behind), or one the book never issued, is
  neither confirmed nor given back. Its holder takes a new slot, behind the
  new book's callers, never the moment one of them already has.

redis-py's ``Script`` objects (``register_script``) run by SHA and load the
text again when Redis answers ``NOSCRIPT`` (a restart, ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "BUDGET_TTL",
    "BudgetScripts",
    "Pace",
    "Reservation",
    "new_book_id",
]

BUDGET_TTL = 3600  # seconds an idle budget hash lives on (every write renews it)

_PRELUDE = """
local EPS = 0.000001
local MIN_FACTOR = 0.25
local function num(value, default, low, high)
  local x = tonumber(value)
  if x == nil or x ~= x or x == math.huge or x == -math.huge then return default end
  if low ~= nil and x < low then return low end
  if high ~= nil and x > high then return high end
  return x
end
local function r6(x) return tonumber(string.format('%.6f', x)) end
local function f6(x) return string.format('%.6f', x) end
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- `candidate`: the id of the book this call creates if there is none (nil: none made)
local function load(key, candidate)
  local v = redis.call('HMGET', key, 'next', 'paused_until', 'factor', 'refused_at',
    'last_success', 'share', 'epoch', 'last', 'free', 'win', 'cnt', 'prev', 'book', 'sent')
  local book = v[13]
  if not book or book == '' then book = candidate end
  return {
    book = book,
    next = num(v[1], 0), paused_until = num(v[2], 0),
    factor = num(v[3], 1, MIN_FACTOR, 1), refused_at = num(v[4], 1, MIN_FACTOR, 1),
    last_success = num(v[5], -1), share = num(v[6], 1, MIN_FACTOR, 1),
    epoch = math.floor(num(v[7], 0, 0)), last = num(v[8], -1), free = num(v[9], -1),
    win = num(v[10], -1), cnt = num(v[11], 0, 0), prev = num(v[12], 0, 0),
    sent = num(v[14], -math.huge),
  }
end
local function save(key, s)
  redis.call('HSET', key, 'next', f6(s.next), 'paused_until', f6(s.paused_until),
    'factor', f6(s.factor), 'refused_at', f6(s.refused_at),
    'last_success', f6(s.last_success), 'share', f6(s.share),
    'epoch', string.format('%d', s.epoch), 'last', f6(s.last), 'free', f6(s.free),
    'win', f6(s.win), 'cnt', f6(s.cnt), 'prev', f6(s.prev), 'book', s.book,
    'sent', f6(s.sent))
  redis.call('EXPIRE', key, @TTL@)
end
-- requests per minute the group is paced at now
local function rate(s, per_minute, headroom)
  return per_minute * headroom * math.min(s.factor, s.share)
end
-- our grants of the last minute: two one-minute buckets, the older one pro rata
local function roll(s, now)
  local age = now - s.win
  if s.win < 0 or age >= 120 or age < 0 then
    s.prev = 0; s.cnt = 0; s.win = now
  elseif age >= 60 then
    s.prev = s.cnt; s.cnt = 0; s.win = s.win + 60
  end
end
local function granted(s, now)
  roll(s, now)
  s.cnt = s.cnt + 1
  s.sent = now
end
-- the least time between two grants: halfway between the stream's spacing and
-- the plan's (half the slack: the network's jitter)
local function gap(s, per_minute, headroom)
  return (60 / rate(s, per_minute, headroom) + 60 / per_minute) / 2
end
-- the next free slot: a given-back one still ahead, else the stream's next;
-- never closer than `gap` to the latest grant (a late caller's)
local function take(s, now, per_minute, headroom, min_wait)
  local earliest = math.max(now + min_wait, s.paused_until, s.sent + gap(s, per_minute, headroom))
  local slot
  if s.free >= earliest then
    slot = s.free
    s.free = -1
  else
    slot = r6(math.max(s.next, earliest))
    s.next = r6(slot + 60 / rate(s, per_minute, headroom))
    s.last = slot
  end
  if slot - now <= EPS then granted(s, now) end
  return slot
end
-- `wake`: when the caller may go, if later than its slot (nil: at its slot)
local function answer(s, now, slot, per_minute, headroom, wake)
  return {f6(math.max(0, (wake or slot) - now)), f6(slot), string.format('%d', s.epoch), s.book,
    f6(rate(s, per_minute, headroom)), f6(math.max(0, s.paused_until - now))}
end
"""

# KEYS[1] the budget hash. ARGV: now, per_minute, headroom, min_wait, new book id.
# Returns {wait, slot, epoch, book, rate, paused_for}; wait 0 means: go now.
_RESERVE = """
local now = clock(ARGV[1])
local per_minute, headroom = tonumber(ARGV[2]), tonumber(ARGV[3])
local s = load(KEYS[1], ARGV[5])
local slot = take(s, now, per_minute, headroom, math.max(0, tonumber(ARGV[4])))
save(KEYS[1], s)
return answer(s, now, slot, per_minute, headroom)
"""

# KEYS[1] the budget hash. ARGV: now, per_minute, headroom, slot, epoch, book,
# new book id. A caller woke for its slot: go (wait 0) if the slot still holds
# (this book issued it: same book, before its next free slot; same epoch; not
# paused) and the latest grant was `gap` ago at least (a late caller went just
# before: sleep on until then, the wait it leaves dies out over the next slots,
# each gap shorter than the stream's spacing); sleep on if it woke early. A
# caller late by up to one interval (a quarter second at least) still goes: a
# busy process waking a little late every time is served, not queued again at
# the end forever. Later than that (a stalled process: its request would land
# in the next minute, over its count), a new slot (a caller holding the last
# slot takes it again at once).
_CONFIRM = """
local now = clock(ARGV[1])
local per_minute, headroom = tonumber(ARGV[2]), tonumber(ARGV[3])
local slot, epoch = tonumber(ARGV[4]), tonumber(ARGV[5])
local s = load(KEYS[1], ARGV[7])
if ARGV[6] == s.book and epoch == s.epoch and slot < s.next and now >= s.paused_until then
  local due = math.max(slot, s.sent + gap(s, per_minute, headroom))
  if due - now > EPS then
    return answer(s, now, slot, per_minute, headroom, due)
  end
  local interval = 60 / rate(s, per_minute, headroom)
  if now <= due + math.max(0.25, interval) then
    granted(s, now)
    save(KEYS[1], s)
    return answer(s, now, now, per_minute, headroom)
  end
  if s.last == slot then
    s.next = slot
    s.last = -1
  end
end
slot = take(s, now, per_minute, headroom, 0)
save(KEYS[1], s)
return answer(s, now, slot, per_minute, headroom)
"""

# KEYS[1] the budget hash. ARGV: now, slot, epoch, book. A caller gives its
# slot back unused: the last one rolls the stream back, an earlier one is kept
# aside (one at a time: the earliest still ahead) for the next caller. A slot
# of another book (or of none: the hash is gone) is nobody's.
_RELEASE = """
local now = clock(ARGV[1])
local slot, epoch = tonumber(ARGV[2]), tonumber(ARGV[3])
local s = load(KEYS[1], nil)
if ARGV[4] ~= s.book or epoch ~= s.epoch or slot <= now or slot >= s.next then return 0 end
if s.last == slot then
  s.next = slot
  s.last = -1
elseif s.free < now or slot < s.free then
  s.free = slot
else
  return 0
end
save(KEYS[1], s)
return 1
"""

# KEYS[1] the budget hash. ARGV: now, per_minute, headroom, pause, new book id.
# A 429: pause for `pause` s; a longer pause bumps the epoch and restarts the
# stream after it; the factor steps down once per pause.
_REFUSE = """
local now = clock(ARGV[1])
local per_minute, headroom = tonumber(ARGV[2]), tonumber(ARGV[3])
local until_ = now + math.max(0, tonumber(ARGV[4]))
local s = load(KEYS[1], ARGV[5])
local already_paused = s.paused_until > now
if until_ > s.paused_until then
  s.paused_until = r6(until_)
  s.epoch = s.epoch + 1
  s.next = 0
  s.last = -1
  s.free = -1
end
if not already_paused then
  s.refused_at = s.factor
  s.factor = math.max(MIN_FACTOR, s.factor * 0.75)
end
save(KEYS[1], s)
return answer(s, now, now, per_minute, headroom)
"""

# KEYS[1] the budget hash. ARGV: now, per_minute, headroom, successes,
# remaining ('' if unknown), foreign_tolerance, new book id, unseen.
# `unseen`: grants of the last minute this book never counted (made while
# Redis failed, or before it lost its data), added to our own traffic: they
# are not foreign.
# Successes recover the factor (+0.02 each up to 90 % of the refused one,
# then 5 % per minute); X-RateLimit-Remaining below what the coordinated
# traffic of the last minute explains is foreign traffic: the share shrinks.
_ADJUST = """
local now = clock(ARGV[1])
local per_minute, headroom = tonumber(ARGV[2]), tonumber(ARGV[3])
local successes = math.max(0, tonumber(ARGV[4]))
local s = load(KEYS[1], ARGV[7])
local unseen = num(ARGV[8], 0, 0)
if unseen > 0 then
  roll(s, now)
  s.cnt = s.cnt + unseen
end
if successes > 0 then
  local safe = 0.9 * s.refused_at
  if s.factor < safe then
    s.factor = math.min(safe, s.factor + 0.02 * successes)
  elseif s.last_success >= 0 and now > s.last_success then
    s.factor = math.min(1, s.factor + (0.05 / 60) * (now - s.last_success))
  end
  s.last_success = now
end
local remaining = tonumber(ARGV[5])
if remaining ~= nil and remaining == remaining then
  roll(s, now)
  local own = s.prev * math.max(0, 1 - (now - s.win) / 60) + s.cnt
  local foreign = (per_minute - own) - remaining
  if foreign > tonumber(ARGV[6]) then
    s.share = math.max(MIN_FACTOR, math.min(1, (per_minute - foreign) / per_minute))
  else
    s.share = 1
  end
end
save(KEYS[1], s)
return answer(s, now, now, per_minute, headroom)
"""

# KEYS[1] the members set. ARGV: now, token, stale_after, ttl.
# This process is alive; returns how many processes were alive within `stale_after`.
_HEARTBEAT = """
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[3])))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return redis.call('ZCARD', KEYS[1])
"""

_PRELUDE = _PRELUDE.replace("@TTL@", str(BUDGET_TTL))
RESERVE = _PRELUDE + _RESERVE
CONFIRM = _PRELUDE + _CONFIRM
RELEASE = _PRELUDE + _RELEASE
REFUSE = _PRELUDE + _REFUSE
ADJUST = _PRELUDE + _ADJUST
HEARTBEAT = _HEARTBEAT


@final
@dataclass(frozen=True, slots=True)
class Pace:
    """What a script said of a group's budget: its rate, and how long it stays paused."""

    rate: float
    """Requests per minute the group is paced at, workspace-wide."""
    paused_for: float
    """Seconds the group stays paused after a 429 (0: not paused)."""
    book: str = ""
    """The id of the book that answered (a new one: Redis lost the previous one)."""


@final
@dataclass(frozen=True, slots=True)
class Reservation:
    """A slot: go when ``wait`` is 0, else sleep ``wait`` seconds and confirm it."""

    wait: float
    slot: str
    """The slot's Redis time, as the script wrote it (handed back verbatim)."""
    epoch: int
    book: str
    """The id of the book that issued the slot: no other book confirms it."""
    pace: Pace


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now(now: float | None) -> str:
    return "" if now is None else repr(float(now))


def _reservation(reply: Any) -> Reservation:
    wait, slot, epoch, book, rate, paused_for = (_text(item) for item in reply)
    pace = Pace(float(rate), float(paused_for), book)
    return Reservation(float(wait), slot, int(epoch), book, pace)


def new_book_id() -> str:
    """A fresh random id for a book a call may create (64 bits: no two books share one)."""
    return secrets.token_hex(8)


def _pace(reply: Any) -> Pace:
    return _reservation(reply).pace


@final
class BudgetScripts:
    """The scripts registered on one Redis client, called with typed arguments.

    ``now`` (Redis time, seconds) is for tests only: without it the scripts
    read Redis ``TIME``. ``book_ids`` makes the id each call hands a script
    for the book it creates when the hash is missing (a fresh random one).
    """

    __slots__ = (
        "_adjust",
        "_book_ids",
        "_confirm",
        "_heartbeat",
        "_refuse",
        "_release",
        "_reserve",
    )

    def __init__(self, redis: Redis, *, book_ids: Callable[[], str] = new_book_id) -> None:
        self._book_ids = book_ids
        self._reserve = redis.register_script(RESERVE)
        self._confirm = redis.register_script(CONFIRM)
        self._release = redis.register_script(RELEASE)
        self._refuse = redis.register_script(REFUSE)
        self._adjust = redis.register_script(ADJUST)
        self._heartbeat = redis.register_script(HEARTBEAT)

    async def reserve(
        self,
        key: str,
        *,
        per_minute: float,
        headroom: float,
        min_wait: float = 0.0,
        now: float | None = None,
    ) -> Reservation:
        """The next free slot, no sooner than ``min_wait`` seconds from now."""
        reply = await self._reserve(
            keys=[key],
            args=[_now(now), per_minute, headroom, max(0.0, min_wait), self._book_ids()],
        )
        return _reservation(reply)

    async def confirm(
        self,
        key: str,
        reservation: Reservation,
        *,
        per_minute: float,
        headroom: float,
        now: float | None = None,
    ) -> Reservation:
        """After sleeping for ``reservation``: go (``wait`` 0), sleep on, or a new slot."""
        args: list[str | float] = [
            _now(now),
            per_minute,
            headroom,
            reservation.slot,
            reservation.epoch,
            reservation.book,
            self._book_ids(),
        ]
        return _reservation(await self._confirm(keys=[key], args=args))

    async def release(
        self, key: str, reservation: Reservation, *, now: float | None = None
    ) -> bool:
        """Give an unused slot back; whether the book took it (it was void or past otherwise)."""
        args: list[str | float] = [
            _now(now),
            reservation.slot,
            reservation.epoch,
            reservation.book,
        ]
        return bool(await self._release(keys=[key], args=args))

    async def refuse(
        self,
        key: str,
        *,
        pause: float,
        per_minute: float,
        headroom: float,
        now: float | None = None,
    ) -> Pace:
        """A 429: pause the group for ``pause`` seconds and step its rate down (once per pause)."""
        args: list[str | float] = [_now(now), per_minute, headroom, pause, self._book_ids()]
        return _pace(await self._refuse(keys=[key], args=args))

    async def adjust(
        self,
        key: str,
        *,
        successes: int,
        remaining: int | None,
        foreign_tolerance: float,
        per_minute: float,
        headroom: float,
        unseen: int = 0,
        now: float | None = None,
    ) -> Pace:
        """Successes recover the rate; ``remaining`` (``X-RateLimit-Remaining``) sizes the share.

        ``unseen``: this process's grants of the last minute the book never
        counted (while Redis failed, or before it lost its data): our traffic.
        """
        args: list[str | float] = [
            _now(now),
            per_minute,
            headroom,
            successes,
            "" if remaining is None else remaining,
            foreign_tolerance,
            self._book_ids(),
            max(0, unseen),
        ]
        return _pace(await self._adjust(keys=[key], args=args))

    async def heartbeat(
        self, key: str, token: str, *, stale_after: float, ttl: int, now: float | None = None
    ) -> int:
        """Mark ``token`` alive in the members set; how many members are alive."""
        reply = await self._heartbeat(keys=[key], args=[_now(now), token, stale_after, ttl])
        return int(reply)
