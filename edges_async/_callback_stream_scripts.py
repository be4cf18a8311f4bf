"""The Lua scripts of the per-run callback streams kept in Redis (see ``._shared_run_streams``).

Each runs in one round trip, on Redis' clock (``TIME``), over the keys of one
run and the workspace's totals (one hash tag: a Redis Cluster keeps them on
one node).
"""

from __future__ import annotations

from typing import Any, final

__all__ = ["Scripts"]

_PRELUDE = """
local function num(value)
  local x = tonumber(value)
  if x == nil or x ~= x or x == math.huge or x == -math.huge then return 0 end
  return math.floor(x)
end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function count(keys, n, r, s)
  for _, key in ipairs(keys) do
    if n ~= 0 then redis.call('HINCRBY', key, 'bytes', n) end
    if r ~= 0 then redis.call('HINCRBY', key, 'results', r) end
    if s ~= 0 then redis.call('HINCRBY', key, 'finals', s) end
  end
end
"""

# KEYS: partials, finals, state, buffered, runs.
# ARGV: uid, '1' if final, body, slim body, results, max bytes, max results,
# the finals' share in bytes, seconds kept, how many lapsed runs to return.
# Returns {1 taken / 0 refused, the lapsed runs (for _REAP_SCRIPT)}.
_APPEND = (
    _PRELUDE
    + """
local t = now()
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', t, 'LIMIT', 0, num(ARGV[10]))
local held = redis.call('HMGET', KEYS[4], 'bytes', 'results', 'finals')
local body, r, final = ARGV[3], num(ARGV[5]), ARGV[2] == '1'
local n, s = #body, 0
local fits = math.max(num(held[1]), 0) + n <= num(ARGV[6])
  and math.max(num(held[2]), 0) + r <= num(ARGV[7])
if not fits then
  if r > 0 or not final then return {0, lapsed} end
  body, n = ARGV[4], 0
elseif final and r == 0 and redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[2]) == 0
    and redis.call('HEXISTS', KEYS[3], 'head') == 0 then
  if math.max(num(held[3]), 0) + n <= num(ARGV[8]) then s = n else body, n = ARGV[4], 0 end
end
redis.call('XADD', final and KEYS[2] or KEYS[1], '*', 'b', body, 'n', n, 'r', r, 's', s)
count({KEYS[3], KEYS[4]}, n, r, s)
redis.call('ZADD', KEYS[5], t + num(ARGV[9]), ARGV[1])
return {1, lapsed}
"""
)

# KEYS: partials, finals, state, reader, ended, buffered, runs.
# ARGV: mode ('next': hold the lease, acknowledge, return the next callback;
# 'ack': acknowledge, renew the lease; 'release': acknowledge, keep the rest,
# give the lease up), token, lease ms, acknowledged kind ('', 'p', 'f', 'h')
# and id, the rest of it ('': none) and its results, seconds kept, uid,
# '1' if a final was read from the process's own buffer.
# Returns {'busy'}, {'ok'}, {kind, id, body} or {'none', 1 if the run ended}.
_READ = (
    _PRELUDE
    + """
local t = now()
local holder = redis.call('GET', KEYS[4])
local mine = (not holder) or holder == ARGV[2]
local kind, id, rest = ARGV[4], ARGV[5], ARGV[6]
local ended = ARGV[10] == '1'
-- Acknowledge (idempotent): a reader that lost the lease leaves a half-read event whole.
if rest == '' or mine then
  local taken = nil
  if kind == 'p' or kind == 'f' then
    local key = kind == 'p' and KEYS[1] or KEYS[2]
    local got = redis.call('XRANGE', key, id, id)
    if #got > 0 then
      local f = got[1][2]
      redis.call('XDEL', key, id)
      taken = {num(f[4]), num(f[6]), num(f[8]), kind == 'f'}
    end
  elseif kind == 'h' then
    local h = redis.call('HMGET', KEYS[3], 'head_id', 'head_n', 'head_r', 'head_f')
    if h[1] == id then
      redis.call('HDEL', KEYS[3], 'head', 'head_id', 'head_n', 'head_r', 'head_f')
      taken = {num(h[2]), num(h[3]), 0, h[4] == '1'}
    end
  end
  if taken then
    count({KEYS[3], KEYS[6]}, -taken[1], -taken[2], -taken[3])
    if rest ~= '' then
      local n, r = 0, num(ARGV[7])
      if taken[1] > 0 then n = #rest end
      redis.call('HSET', KEYS[3], 'head', rest, 'head_id', id .. '.' .. r,
        'head_n', n, 'head_r', r, 'head_f', taken[4] and '1' or '0')
      count({KEYS[3], KEYS[6]}, n, r, 0)
    elseif taken[4] then
      ended = true
    end
  end
end
if ended then redis.call('SET', KEYS[5], '1', 'EX', math.max(1, num(ARGV[8]))) end
if ARGV[1] == 'release' then
  if holder == ARGV[2] then redis.call('DEL', KEYS[4]) end
elseif not mine then
  return {'busy'}
else
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
end
local head = redis.call('HMGET', KEYS[3], 'head', 'head_id')
if head[1] or redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[2]) > 0 then
  redis.call('ZADD', KEYS[7], t + num(ARGV[8]), ARGV[9])
else
  -- Nothing unread: nothing left but the lease and the end (what it still counts is drift).
  local st = redis.call('HMGET', KEYS[3], 'bytes', 'results', 'finals')
  count({KEYS[6]}, -num(st[1]), -num(st[2]), -num(st[3]))
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[7], ARGV[9])
end
if ARGV[1] ~= 'next' then return {'ok'} end
if head[1] then return {'h', head[2], head[1]} end
local p = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #p > 0 then return {'p', p[1][1], p[1][2][2]} end
local f = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #f > 0 then return {'f', f[1][1], f[1][2][2]} end
return {'none', redis.call('EXISTS', KEYS[5])}
"""
)

# KEYS: partials, finals, state, reader, buffered, runs. ARGV: uid, seconds kept.
# Drops a run nobody touched for the time kept (unless a reader holds it), freeing its share.
_REAP_SCRIPT = (
    _PRELUDE
    + """
local t = now()
local score = redis.call('ZSCORE', KEYS[6], ARGV[1])
if not score or tonumber(score) > t then return 0 end
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('ZADD', KEYS[6], t + num(ARGV[2]), ARGV[1])
  return 0
end
local st = redis.call('HMGET', KEYS[3], 'bytes', 'results', 'finals')
count({KEYS[5]}, -num(st[1]), -num(st[2]), -num(st[3]))
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[6], ARGV[1])
return 1
"""
)


@final
class Scripts:
    """The scripts, registered on one Redis client (one per event loop)."""

    __slots__ = ("append", "read", "reap", "redis")

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.append: Any = redis.register_script(_APPEND)
        self.read: Any = redis.register_script(_READ)
        self.reap: Any = redis.register_script(_REAP_SCRIPT)
