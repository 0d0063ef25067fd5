"""The Lua scripts of the ingest path: APPLY (pings into per-slot user hashes) and CLOSE (windows of a
partition's users at slot close). One call per batch, atomic, idempotent under replay.

Keys are built inside the scripts from the prefix, so these target a single Redis (not a cluster).
"""

# ARGV: root "<app>:", partition, ttl seconds, JSON [[city, slot, [uid...], ["ts_ms|cell"...]], ...]
# (pings grouped by city and slot), the partition's max event time ('' = none yet), its first closed
# slot ('' = already recorded). Latest event time wins per (user, slot), ties to the larger cell,
# so applying the same pings twice, or in another order, leaves the same hash. The common case (a
# user's first ping in a slot) costs one HSETNX; set members and expiries go out once per key.
# Pings and the clock land in one atomic call: one round trip per batch, and no MULTI.
APPLY = r"""
local root, part, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = 0
local cities = {}
for _, g in ipairs(cjson.decode(ARGV[4])) do
  cities[g[1]] = true
  local cp, slot, uids, vals = root .. g[1] .. ':', g[2], g[3], g[4]
  local key = cp .. 'cells:' .. slot
  for i = 1, #uids do
    if redis.call('HSETNX', key, uids[i], vals[i]) == 0 then
      local ct, cc = string.match(redis.call('HGET', key, uids[i]), '^(%-?%d+)|(%-?%d+)$')
      local nt, nc = string.match(vals[i], '^(%-?%d+)|(%-?%d+)$')
      ct, cc, nt, nc = tonumber(ct), tonumber(cc), tonumber(nt), tonumber(nc)
      if ct < nt or (ct == nt and cc < nc) then redis.call('HSET', key, uids[i], vals[i]) end
    end
  end
  redis.call('EXPIRE', key, ttl)
  local ak = cp .. 'act:' .. slot .. ':p' .. part
  for k = 1, #uids, 4000 do redis.call('SADD', ak, unpack(uids, k, math.min(k + 3999, #uids))) end
  redis.call('EXPIRE', ak, ttl)
  n = n + #uids
end
for city in pairs(cities) do redis.call('SADD', root .. 'cities', city) end
if next(cities) then redis.call('EXPIRE', root .. 'cities', ttl) end
if ARGV[5] ~= '' then
  redis.call('HSET', root .. 'wm', part, ARGV[5])
  redis.call('EXPIRE', root .. 'wm', ttl)
end
-- Only the first clock of a partition lands here; later progress goes through ADVANCE.
if ARGV[6] ~= '' then redis.call('HSETNX', root .. 'closed', part, ARGV[6]) end
return n
"""

# ARGV: "<app>:<city>:", partition, slot, full (1/0). Returns JSON [uids, cells]: the users the
# partition saw in the slot and, 8 per user, their cells in slots slot-7 .. slot (-1 = not seen).
# With full = 0 (no embedder needs whole windows) it reads backwards and stops for each user at the
# most recent earlier observation, all the flows need: older slots then read -1. Reads only.
CLOSE = r"""
local cp, part, slot, full = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local uids = redis.call('SMEMBERS', cp .. 'act:' .. ARGV[3] .. ':p' .. part)
if #uids == 0 then return '[[],[]]' end
local out = {}
for i = 1, 8 * #uids do out[i] = -1 end
local todo = {}
for i = 1, #uids do todo[i] = i end
for col = 8, 1, -1 do
  if #todo == 0 then break end
  local key = cp .. 'cells:' .. (slot - 8 + col)
  local left = {}
  for k = 1, #todo, 4000 do
    local hi = math.min(k + 3999, #todo)
    local ask = {}
    for j = k, hi do ask[#ask + 1] = uids[todo[j]] end
    local vals = redis.call('HMGET', key, unpack(ask))
    for j = 1, #vals do
      local i = todo[k + j - 1]
      local v = vals[j]
      if v then out[(i - 1) * 8 + col] = tonumber(string.match(v, '|(%-?%d+)$')) end
      if full or col == 8 or not v then left[#left + 1] = i end
    end
  end
  todo = left
end
return cjson.encode({uids, out})
"""
