"""The Redis store's two steps as server-side Lua scripts: one round trip each.

`turnout._state.claim` and `turnout._health.settle` say what a `Claim` and a
`Settle` do; the scripts below do the same, line for line, inside Redis, so
that each step is one atomic `EVALSHA` however many keys it touches. The
functions keep the Python names (`availability`, `admit`, `failing`,
`on_success`, `failed`, `release`, `open_for`, `claim`, `settle`), and
tests/state/test_mirror.py runs both on the same generated inputs against a
real server and compares the results exactly.

Numbers: Lua's are doubles, as Python's floats are, and every operation is
written in Python's order; `min` and `max` keep Python's rule (the first of
equals). They cross the wire as text that reads back exactly: Python sends
`repr(float)`, the scripts send the shortest of 15, 16 or 17 significant
digits that reads back as the same double (`num`), never lua-cjson's
14-digit encoding, which would round timestamps.

Records: a deployment's state is the JSON object the previous version wrote
(fields at their default left out), so versions side by side read each
other's. `decode` accepts exactly what `turnout._redis_codec.decode_state`
accepts; anything else (corrupt, foreign) reads as the empty state.

The journal: each step of one store carries an operation number, and records
what it did in a small hash of that store (`{tag}ops:<store id>`, one of
`JOURNAL_SLOTS` fields, kept a minute). A step whose reply a broken
connection lost is sent again with the same number: it finds its entry and
replies as the first time, so nothing is applied twice. A claim the call's
deadline cut short is cancelled by number (`CANCEL`): its place is given back
if it was taken, and if it has not arrived yet it will find the cancellation
and do nothing.
"""

from __future__ import annotations

import hashlib

from attrs import field, frozen

from ._health import ERROR_HISTORY
from ._redis_codec import COUNT_LIMIT, MAX_TTL

__all__ = ["CANCEL", "CLAIM", "JOURNAL_SLOTS", "LOAD", "SETTLE", "Script"]

JOURNAL_SLOTS = 128
JOURNAL_TTL_MS = 60_000

_COMMON = r"""
local JOURNAL_SLOTS, JOURNAL_TTL_MS = @JOURNAL_SLOTS@, @JOURNAL_TTL_MS@
local COUNT_LIMIT, MAX_TTL, ERROR_HISTORY = @COUNT_LIMIT@, @MAX_TTL@, @ERROR_HISTORY@
local HUGE = math.huge

-- Python's max(a, b) and min(a, b): the first unless the second is beyond it.
local function max(a, b) if b > a then return b end return a end
local function min(a, b) if b < a then return b end return a end

-- A double as the shortest text that reads back as the same double.
local function num(x)
  local text = string.format('%.15g', x)
  if tonumber(text) ~= x then
    text = string.format('%.16g', x)
    if tonumber(text) ~= x then text = string.format('%.17g', x) end
  end
  return text
end

-- -- records ---------------------------------------------------------------------

local function empty()
  return {status = 'closed', consecutive = 0, window = {}, open_until = 0, trips = 0, probes = 0,
          probe_until = 0, cooldown_until = 0, cooldown_reason = '', exhausted_until = 0,
          inflight = 0, latency = nil, errors = {}}
end

local function copy(state)
  local new = {}
  for k, v in pairs(state) do new[k] = v end
  return new
end

local function finite(v) return type(v) == 'number' and v == v and v ~= HUGE and v ~= -HUGE end

local function list_of(v, kind)
  if type(v) ~= 'table' then return nil end
  local n = 0
  for k, x in pairs(v) do
    if type(k) ~= 'number' or type(x) ~= kind then return nil end
    n = n + 1
  end
  local out = {}
  for i = 1, n do
    if v[i] == nil then return nil end
    out[i] = v[i]
  end
  return out
end

local BAD = {}
-- What each kind of field accepts (BAD: the record is unreadable).
local KINDS = {
  status = function(v) if v == 'closed' or v == 'open' or v == 'half_open' then return v end return BAD end,
  count = function(v)
    if type(v) == 'number' and v >= 0 and v < COUNT_LIMIT and v == math.floor(v) then return v end
    return BAD
  end,
  time = function(v) if finite(v) then return v end return BAD end,
  latency = function(v)
    if v == cjson.null then return nil end
    if finite(v) then return v end
    return BAD
  end,
  text = function(v) if type(v) == 'string' then return v end return BAD end,
  flags = function(v) return list_of(v, 'boolean') or BAD end,
  texts = function(v) return list_of(v, 'string') or BAD end,
}

local function flags(list)
  local out = {}
  for i, flag in ipairs(list) do out[i] = flag and 'true' or 'false' end
  return '[' .. table.concat(out, ',') .. ']'
end

local function texts(list)
  local out = {}
  for i, text in ipairs(list) do out[i] = cjson.encode(text) end
  return '[' .. table.concat(out, ',') .. ']'
end

local ENCODE = {status = cjson.encode, count = num, time = num, latency = num, text = cjson.encode,
                flags = flags, texts = texts}

-- DeploymentState's fields in order, with their kinds.
local FIELDS = {
  {'status', 'status'}, {'consecutive', 'count'}, {'window', 'flags'}, {'open_until', 'time'},
  {'trips', 'count'}, {'probes', 'count'}, {'probe_until', 'time'}, {'cooldown_until', 'time'},
  {'cooldown_reason', 'text'}, {'exhausted_until', 'time'}, {'inflight', 'count'},
  {'latency', 'latency'}, {'errors', 'texts'},
}
local DEFAULT = empty()

-- UTF-8 as Python's strict decoder takes it: no overlong forms, no surrogates.
local function utf8(text)
  local i, n = 1, #text
  while i <= n do
    local c = text:byte(i)
    local size, low, high = 1, 0x80, 0xBF
    if c < 0x80 then size = 0
    elseif c >= 0xC2 and c <= 0xDF then size = 1
    elseif c >= 0xE0 and c <= 0xEF then
      size = 2
      if c == 0xE0 then low = 0xA0 elseif c == 0xED then high = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      size = 3
      if c == 0xF0 then low = 0x90 elseif c == 0xF4 then high = 0x8F end
    else return false end
    for j = 1, size do
      local b = text:byte(i + j)
      if b == nil then return false end
      if j == 1 then
        if b < low or b > high then return false end
      elseif b < 0x80 or b > 0xBF then return false end
    end
    i = i + size + 1
  end
  return true
end

local function decode(raw)
  if not raw then return empty() end
  if raw:find('[\128-\255]') and not utf8(raw) then return empty() end
  local ok, data = pcall(cjson.decode, raw)
  if not ok or type(data) ~= 'table' then return empty() end
  local state = empty()
  for _, f in ipairs(FIELDS) do
    local v = data[f[1]]
    if v ~= nil then
      v = KINDS[f[2]](v)
      if v == BAD then return empty() end
      state[f[1]] = v
    end
  end
  return state
end

local function encode(state)
  local out = {}
  for _, f in ipairs(FIELDS) do
    local name, v = f[1], state[f[1]]
    local default
    if type(v) == 'table' then default = #v == 0 else default = v == DEFAULT[name] end
    if not default then out[#out + 1] = '"' .. name .. '":' .. ENCODE[f[2]](v) end
  end
  return '{' .. table.concat(out, ',') .. '}'
end

local function tokens_of(raw, start)
  if not raw or not raw:find('^[%d%.eE%+%-]+$') then return start end
  local v = tonumber(raw)
  if not finite(v) then return start end
  return v
end

-- Kept `ttl` after the write, or `ttl` past the latest moment the record matters.
local function ttl_ms(state, now, ttl)
  local latest = max(max(max(state.open_until, state.cooldown_until), state.exhausted_until),
                     state.probe_until)
  return max(1, math.floor(min(max(ttl, latest - now + ttl), MAX_TTL) * 1000))
end

-- Write `new` unless the key already holds `old` and they are the same; its text.
local function store(key, raw, old, new, now, ttl)
  local text = encode(new)
  if raw and text == encode(old) then return text end
  redis.call('SET', key, text, 'PX', string.format('%d', ttl_ms(new, now, ttl)))
  return text
end

-- -- the journal -------------------------------------------------------------------

local function slot(op) return tostring(tonumber(op) % JOURNAL_SLOTS) end

local function entry(journal, op)
  local raw = redis.call('HGET', journal, slot(op))
  if not raw then return nil end
  local ok, found = pcall(cjson.decode, raw)
  if ok and type(found) == 'table' and found[1] == op then return found end
  return nil
end

local function journal_put(journal, op, record)
  redis.call('HSET', journal, slot(op), cjson.encode(record))
  redis.call('PEXPIRE', journal, JOURNAL_TTL_MS)
end

-- -- turnout._health -------------------------------------------------------------

local function availability(state, now, probes)
  local blocked_until = max(state.cooldown_until, state.exhausted_until)
  if state.status == 'open' then blocked_until = max(blocked_until, state.open_until) end
  if blocked_until > now then return false, blocked_until end
  if state.status ~= 'closed' and state.probes >= probes and now < state.probe_until then
    return false, now + 1.0
  end
  return true, now
end

local function admit(state, now, config)
  if not availability(state, now, config.probes) then return state, false end
  local new = copy(state)
  new.inflight = state.inflight + 1
  if state.status == 'closed' then return new, true end
  if now < state.probe_until then new.probes = state.probes + 1 else new.probes = 1 end
  new.status = 'half_open'
  new.probe_until = now + config.probe_timeout
  return new, true
end

local function failing(state) return state.status ~= 'closed' or state.consecutive > 0 end

local function ewma(old, sample, alpha)
  if old == nil then return sample end
  return old + alpha * (sample - old)
end

-- A call ends: its place (and its probe slot, if it held one) is given back.
local function finish(state) return max(0, state.inflight - 1), max(0, state.probes - 1) end

-- Python's (*items, item)[-limit:]: the last `limit` of them (all, when limit is 0).
local function pushed(items, item, limit)
  local all = {}
  for i = 1, #items do all[i] = items[i] end
  all[#all + 1] = item
  local first = 1
  if limit >= 1 and limit < #all then first = #all - limit + 1 end
  local out = {}
  for i = first, #all do out[#out + 1] = all[i] end
  return out
end

local function on_success(state, latency, config)
  local inflight = finish(state)
  local new = copy(state)
  new.latency = ewma(state.latency, latency, config.ewma_alpha)
  new.inflight = inflight
  if state.status == 'half_open' then
    new.status, new.consecutive, new.window, new.trips, new.probes = 'closed', 0, {}, 0, 0
    return new
  end
  if state.status == 'open' then return new end
  new.consecutive = 0
  new.window = pushed(state.window, false, config.window)
  return new
end

-- turnout._retry.backoff(trips - 1, base=open_for, cap=max_open, jitter="symmetric", ...)
local function open_for(trips, retry_after, config, draw)
  local delay = min(config.max_open, config.open_for * 2.0 ^ max(trips - 1, 0))
  local spread = delay * config.jitter
  local low, high = delay - spread, delay + spread
  local duration = max(0.0, min(config.max_open, low + (high - low) * draw))
  return max(duration, retry_after or 0.0)
end

local function failed(state, outcome, config)
  local inflight, probes = finish(state)
  local new = copy(state)
  new.errors = pushed(state.errors, outcome.error, ERROR_HISTORY)
  new.inflight = inflight
  local now = outcome.at
  if outcome.cooldown ~= 0 then
    new.cooldown_until = max(state.cooldown_until, now + outcome.cooldown)
    new.cooldown_reason = outcome.error
  end
  if outcome.rate_limited and outcome.retry_after ~= nil and outcome.retry_after ~= 0 then
    local untl = now + outcome.retry_after
    if untl > state.cooldown_until then
      new.cooldown_until, new.cooldown_reason = untl, outcome.error
    end
  end
  if not outcome.health_failure then
    new.probes = probes
    return new
  end
  if outcome.latency ~= nil then new.latency = ewma(state.latency, outcome.latency, config.ewma_alpha) end
  if state.status == 'open' then return new end
  local window = pushed(state.window, true, config.window)
  local consecutive = state.consecutive + 1
  local failures = 0
  for _, flag in ipairs(window) do if flag then failures = failures + 1 end end
  local trip = state.status == 'half_open'
    or consecutive >= config.consecutive_failures
    or (#window >= config.min_calls and failures / #window >= config.failure_rate)
  if trip then
    local trips = state.trips + 1
    new.status, new.trips = 'open', trips
    new.open_until = now + open_for(trips, outcome.retry_after, config, outcome.draw)
    new.consecutive, new.window, new.probes = 0, {}, 0
  else
    new.consecutive, new.window, new.probes = consecutive, window, probes
  end
  return new
end

local function release(state)
  local inflight, probes = finish(state)
  local new = copy(state)
  new.inflight = inflight
  if state.status ~= 'closed' then new.probes = probes else new.probes = 0 end
  return new
end

local SETTLE = {
  success = function(state, outcome, config) return on_success(state, outcome.latency or 0.0, config) end,
  failure = failed,
  release = function(state) return release(state) end,
  quota = function(state) return state end,
}

local function settle(state, outcome, config)
  local new = SETTLE[outcome.kind](state, outcome, config)
  if outcome.exhausted_until > new.exhausted_until then
    new = copy(new)
    new.exhausted_until = outcome.exhausted_until
  end
  return new
end

-- -- turnout._state ------------------------------------------------------------------

-- The tokens after the claim, the index claimed (0: none), whether the token due was
-- paid, and the claimed state.
local function claim(states, order, tokens, command)
  if command.deposit then tokens = min(command.burst, tokens + command.ratio) end
  for _, i in ipairs(order) do
    local state = states[i]
    local claimed, admitted = admit(state, command.at, command)
    if admitted then
      local due = command.spend == 'always' or (command.spend == 'if_failing' and failing(state))
      if due then
        if tokens < 1.0 then return tokens, 0, false, nil end
        tokens = tokens - 1.0
      end
      return tokens, i, true, claimed
    end
  end
  return tokens, 0, true, nil
end

local function optional(text) if text == '' then return nil end return tonumber(text) end
"""

# KEYS: journal, budget, the deployments of `names`.
# ARGV: op, now, ttl, budget_start, at, deposit, ratio, burst, spend, probes,
#       probe_timeout, then the candidates in order (1-based indexes into the deployments).
# Reply: index claimed (0: none), token paid (1/0), tokens, the claimed one's state
#        before ('' when none), then every deployment's state.
_CLAIM = r"""
local journal, op, now, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local budget_raw = redis.call('GET', KEYS[2])
local tokens = tokens_of(budget_raw, tonumber(ARGV[4]))
local raws, states = {}, {}
for i = 3, #KEYS do
  raws[i - 2] = redis.call('GET', KEYS[i])
  states[i - 2] = decode(raws[i - 2])
end
local reply = {0, 1, num(tokens), ''}
local done = entry(journal, op)
if done then
  -- Made already (its reply was lost), or cancelled before it arrived.
  if done[2] == 'claim' then reply[1], reply[2], reply[4] = done[3], done[4], done[5] end
  for i = 1, #states do reply[4 + i] = encode(states[i]) end
  return reply
end
local command = {at = tonumber(ARGV[5]), deposit = ARGV[6] == '1', ratio = tonumber(ARGV[7]),
                 burst = tonumber(ARGV[8]), spend = ARGV[9], probes = tonumber(ARGV[10]),
                 probe_timeout = tonumber(ARGV[11])}
local order = {}
for i = 12, #ARGV do order[#order + 1] = tonumber(ARGV[i]) end
local after, index, spent, claimed = claim(states, order, tokens, command)
if after ~= tokens or (not budget_raw and command.deposit) then
  redis.call('SET', KEYS[2], num(after), 'PX', string.format('%d', math.floor(ttl * 1000)))
end
reply[1], reply[3] = index, num(after)
if not spent then reply[2] = 0 end
for i = 1, #states do reply[4 + i] = encode(states[i]) end
if index > 0 then
  reply[4] = reply[4 + index]
  reply[4 + index] = store(KEYS[2 + index], raws[index], states[index], claimed, now, ttl)
end
journal_put(journal, op, {op, 'claim', reply[1], reply[2], reply[4]})
return reply
"""

# KEYS: journal, the deployment.
# ARGV: op, now, ttl, then the breaker (consecutive_failures, failure_rate, window,
#       min_calls, open_for, max_open, jitter, ewma_alpha), then the outcome (kind, at,
#       latency, error, health_failure, cooldown, rate_limited, retry_after, draw,
#       exhausted_until; '' for None).
# Reply: the state before, the state after.
_SETTLE = r"""
local journal, op, now, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local done = entry(journal, op)
if done and done[2] == 'settle' then return {done[3], done[4]} end
local config = {consecutive_failures = tonumber(ARGV[4]), failure_rate = tonumber(ARGV[5]),
                window = tonumber(ARGV[6]), min_calls = tonumber(ARGV[7]), open_for = tonumber(ARGV[8]),
                max_open = tonumber(ARGV[9]), jitter = tonumber(ARGV[10]), ewma_alpha = tonumber(ARGV[11])}
local outcome = {kind = ARGV[12], at = tonumber(ARGV[13]), latency = optional(ARGV[14]), error = ARGV[15],
                 health_failure = ARGV[16] == '1', cooldown = tonumber(ARGV[17]),
                 rate_limited = ARGV[18] == '1', retry_after = optional(ARGV[19]),
                 draw = tonumber(ARGV[20]), exhausted_until = tonumber(ARGV[21])}
local raw = redis.call('GET', KEYS[2])
local state = decode(raw)
local before = encode(state)
local after = store(KEYS[2], raw, state, settle(state, outcome, config), now, ttl)
journal_put(journal, op, {op, 'settle', before, after})
return {before, after}
"""

# KEYS: the deployments. Reply: their states.
_LOAD = r"""
local out = {}
for i = 1, #KEYS do out[i] = encode(decode(redis.call('GET', KEYS[i]))) end
return out
"""

# KEYS and ARGV[1..3] as the claim's. Reply: the index whose place was given back (0: none).
_CANCEL = r"""
local journal, op, now, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local done = entry(journal, op)
local index = 0
if done and done[2] == 'claim' and done[3] > 0 then
  index = done[3]
  local raw = redis.call('GET', KEYS[2 + index])
  local state = decode(raw)
  store(KEYS[2 + index], raw, state, release(state), now, ttl)
end
if not done or done[2] == 'claim' then journal_put(journal, op, {op, 'cancelled'}) end
return index
"""


@frozen
class Script:
    """One script: its name (for messages), its Lua source and the SHA1 Redis knows it by."""

    name: str
    source: str = field(repr=False)
    sha: str = field(init=False, repr=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


def _common() -> str:
    """The shared part, its constants filled in from the Python side's."""
    constants = {
        "JOURNAL_SLOTS": JOURNAL_SLOTS,
        "JOURNAL_TTL_MS": JOURNAL_TTL_MS,
        "COUNT_LIMIT": COUNT_LIMIT,
        "MAX_TTL": int(MAX_TTL),
        "ERROR_HISTORY": ERROR_HISTORY,
    }
    text = _COMMON
    for name, value in constants.items():
        text = text.replace(f"@{name}@", str(value))
    return text


CLAIM = Script("claim", _common() + _CLAIM)
SETTLE = Script("settle", _common() + _SETTLE)
LOAD = Script("load", _common() + _LOAD)
CANCEL = Script("cancel", _common() + _CANCEL)
