"""The Lua scripts of :class:`~brace.state.RedisLimiter`.

Each operation is one script call, atomic on the server, timed by Redis ``TIME``
(the instances' monotonic clocks differ).  The limiter hash holds ``r`` (request
TAT), ``t`` (token TAT) and ``b`` (blocked until), as absolute server seconds
formatted with ``%.17g``; its TTL is ``2 × max(horizon - now, 1 s)``, refreshed on
every write, so a key vanishes only once forgetting it changes nothing.  Waits are
returned as strings (a Lua number would be truncated to an integer reply).

The arithmetic is :mod:`._gcra`'s; keep the two in step.
"""

from __future__ import annotations

__all__ = ["ADJUST", "BLOCK", "HEARTBEAT", "RESERVE", "SPENT"]

_PRELUDE = """
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
local function load(key)
  local h = redis.call('HMGET', key, 'r', 't', 'b')
  return tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
end
local function save(key, now, r, t, b)
  local horizon = now
  local args = {}
  if r then args[#args + 1] = 'r'; args[#args + 1] = fmt(r); horizon = math.max(horizon, r) end
  if t then args[#args + 1] = 't'; args[#args + 1] = fmt(t); horizon = math.max(horizon, t) end
  if b then args[#args + 1] = 'b'; args[#args + 1] = fmt(b); horizon = math.max(horizon, b) end
  if #args == 0 then return end
  redis.call('HSET', key, unpack(args))
  redis.call('PEXPIRE', key, math.ceil(2000 * math.max(horizon - now, 1)))
end
"""

RESERVE = (
    _PRELUDE
    + """
-- KEYS[1] limiter hash
-- ARGV: request interval, request tau, token interval, token tau, tokens, max_wait, book (1/0)
local now = now_s()
local r, t, b = load(KEYS[1])
local ri, rtau = tonumber(ARGV[1]), tonumber(ARGV[2])
local ti, ttau = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, max_wait = tonumber(ARGV[5]), tonumber(ARGV[6])
local start = math.max(now, b or now)
if ri > 0 then start = math.max(start, math.max(r or now, now) + ri - rtau) end
local cost = tokens * ti
if ti > 0 and tokens > 0 then
  start = math.max(start, math.max(t or now, now) + math.min(cost, ttau) - ttau)
end
local wait = start - now
if ARGV[7] == '1' and wait <= max_wait then
  if ri > 0 then r = math.max(r or now, start) + ri end
  if ti > 0 and tokens > 0 then t = math.max(t or now, start) + cost end
  save(KEYS[1], now, r, t, b)
  return {1, fmt(wait)}
end
return {0, fmt(wait)}
"""
)

ADJUST = (
    _PRELUDE
    + """
-- KEYS[1] limiter hash; ARGV: token interval, token delta
local ti, delta = tonumber(ARGV[1]), tonumber(ARGV[2])
if ti <= 0 or delta == 0 then return 0 end
local now = now_s()
local r, t, b = load(KEYS[1])
if delta < 0 then
  if not t or t <= now then return 0 end
  t = math.max(t + delta * ti, now)
else
  t = math.max(t or now, now) + delta * ti
end
save(KEYS[1], now, r, t, b)
return 1
"""
)

BLOCK = (
    _PRELUDE
    + """
-- KEYS[1] limiter hash; ARGV: seconds
local now = now_s()
local r, t, b = load(KEYS[1])
local until_ = now + tonumber(ARGV[1])
b = math.max(b or until_, until_)
r = math.max(r or until_, until_)
t = math.max(t or until_, until_)
save(KEYS[1], now, r, t, b)
return 1
"""
)

SPENT = (
    _PRELUDE
    + """
-- KEYS[1] limiter hash; ARGV: request interval, request tau, requests left (-1: unknown),
-- token interval, token tau, tokens left (-1: unknown)
local ri, rtau, nreq = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ti, ttau, ntok = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_s()
local r, t, b = load(KEYS[1])
if ri > 0 and nreq >= 0 then r = math.max(r or now, now + rtau - nreq * ri) end
if ti > 0 and ntok >= 0 then t = math.max(t or now, now + ttau - ntok * ti) end
save(KEYS[1], now, r, t, b)
return 1
"""
)

HEARTBEAT = """
-- KEYS[1] instances zset; ARGV: instance id, stale after (s), ttl (ms)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], string.format('%.17g', now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('ZCARD', KEYS[1])
"""
