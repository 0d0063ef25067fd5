"""The Lua scripts that keep windows in Redis: one call per batch, atomic, idempotent under replay.

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

# ARGV: hash key, ttl, cells joined by ',', values joined by '\n' (JSON has no raw newline). Replaces
# the hash with cell -> value: tens of thousands of fields in one small command instead of a client
# packing each field.
HSET_BLOB = r"""
local key, ttl = ARGV[1], tonumber(ARGV[2])
redis.call('DEL', key)
local cells = {}
for c in string.gmatch(ARGV[3], '[^,]+') do cells[#cells + 1] = c end
local args, i = {}, 0
for v in string.gmatch(ARGV[4], '[^\n]+') do
  i = i + 1
  args[#args + 1] = cells[i]
  args[#args + 1] = v
  if #args >= 2000 then redis.call('HSET', key, unpack(args)); args = {} end
end
if #args > 0 then redis.call('HSET', key, unpack(args)) end
redis.call('EXPIRE', key, ttl)
return i
"""

# ARGV: ttl, then key, value pairs. SET key value EX ttl for each pair: one command for thousands of
# keys (a redis-py pipeline spends ~150 us of Python per SET packing and parsing).
SET_MANY = r"""
local ttl = ARGV[1]
for i = 2, #ARGV, 2 do redis.call('SET', ARGV[i], ARGV[i + 1], 'EX', ttl) end
return (#ARGV - 1) / 2
"""

# ARGV: "<app>:<city>:", partition, slot. Forgets the partition's users in a slot no window needs any
# more (called once every slot up to slot+8 is closed and recorded, so a re-close never misses it).
PURGE = r"""
local cp, part = ARGV[1], ARGV[2]
local ak = cp .. 'act:' .. ARGV[3] .. ':p' .. part
local uids = redis.call('SMEMBERS', ak)
local key = cp .. 'cells:' .. ARGV[3]
for k = 1, #uids, 4000 do redis.call('HDEL', key, unpack(uids, k, math.min(k + 3999, #uids))) end
redis.call('DEL', ak)
return #uids
"""

# ARGV: "<app>:", partition, last closed slot, number of partitions, ttl. Records the partition's
# progress; every slot that all partitions have now closed is assembled per city (sum of the
# partitions' shares, each a JSON string [[cell...], [occ, in, out, occ, in, out, ...]]). Returns JSON [[city, slot], ...] of the slots this call assembled.
ADVANCE = r"""
local a, part, closed, n, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local prev = tonumber(redis.call('HGET', a .. 'closed', part))
if prev == nil or closed > prev then redis.call('HSET', a .. 'closed', part, closed) end
redis.call('EXPIRE', a .. 'closed', ttl)
local low = nil
for q = 0, n - 1 do
  local v = tonumber(redis.call('HGET', a .. 'closed', q))
  if v == nil then return '[]' end
  if low == nil or v < low then low = v end
end
local done = redis.call('GET', a .. 'assembled')
local from = '-inf'
if done then
  if tonumber(done) >= low then return '[]' end
  from = '(' .. done
end
local made = {}
for _, city in ipairs(redis.call('SMEMBERS', a .. 'cities')) do
  local cp = a .. city .. ':'
  for _, slot in ipairs(redis.call('ZRANGEBYSCORE', cp .. 'pslots', from, low)) do
    local sum, order = {}, {}
    for q = 0, n - 1 do
      local raw = redis.call('GET', cp .. 'flowp:' .. slot .. ':p' .. q)
      if raw then
        local d = cjson.decode(raw)
        local cells, k = d[1], d[2]
        for j = 1, #cells do
          local acc = sum[cells[j]]
          if acc == nil then acc = {0, 0, 0}; sum[cells[j]] = acc; order[#order + 1] = cells[j] end
          acc[1], acc[2], acc[3] = acc[1] + k[3 * j - 2], acc[2] + k[3 * j - 1], acc[3] + k[3 * j]
        end
      end
    end
    table.sort(order)
    local fk = cp .. 'flow:' .. slot
    redis.call('DEL', fk)
    local args = {}
    for _, cell in ipairs(order) do
      local acc = sum[cell]
      args[#args + 1] = cell
      args[#args + 1] = acc[1] .. ',' .. acc[2] .. ',' .. acc[3]
      if #args >= 1000 then redis.call('HSET', fk, unpack(args)); args = {} end
    end
    if #args > 0 then redis.call('HSET', fk, unpack(args)) end
    redis.call('EXPIRE', fk, ttl)
    local flat = {}
    for j, cell in ipairs(order) do
      local acc = sum[cell]
      flat[3 * j - 2], flat[3 * j - 1], flat[3 * j] = acc[1], acc[2], acc[3]
    end
    if #order > 0 then
      redis.call('SET', cp .. 'flowj:' .. slot, cjson.encode({order, flat}), 'EX', ttl)
    else
      redis.call('SET', cp .. 'flowj:' .. slot, '[[],[]]', 'EX', ttl)
    end
    local latest = tonumber(redis.call('HGET', a .. 'latest', city))
    if latest == nil or tonumber(slot) > latest then redis.call('HSET', a .. 'latest', city, slot) end
    made[#made + 1] = {city, tonumber(slot)}
  end
  redis.call('ZREMRANGEBYSCORE', cp .. 'pslots', '-inf', low)
end
redis.call('SET', a .. 'assembled', low, 'EX', ttl)
redis.call('EXPIRE', a .. 'latest', ttl)
if #made == 0 then return '[]' end
return cjson.encode(made)
"""
