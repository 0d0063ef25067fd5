"""The Lua scripts that keep windows in Redis: one call per batch, atomic, idempotent under replay.

Keys are built inside the scripts from the prefix, so these target a single Redis (not a cluster).
"""

# ARGV: city prefix root "<app>:", partition, ttl seconds, JSON {"c": cities, "u": uids, "s": slots,
# "t": ts_ms, "x": cells}. Latest event time wins per (user, slot), ties to the larger cell, so
# applying the same pings twice, or in another order, leaves the same hash.
APPLY = r"""
local root, part, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local d = cjson.decode(ARGV[4])
local c, u, s, t, x = d.c, d.u, d.s, d.t, d.x
local fresh = {}
for i = 1, #u do
  local key = root .. c[i] .. ':u:' .. u[i]
  local cur = redis.call('HGET', key, s[i])
  local write = true
  if cur then
    local ct, cc = string.match(cur, '^(%-?%d+)|(%-?%d+)$')
    ct, cc = tonumber(ct), tonumber(cc)
    if ct > t[i] or (ct == t[i] and cc >= x[i]) then write = false end
  end
  if write then redis.call('HSET', key, s[i], string.format('%.0f|%.0f', t[i], x[i])) end
  redis.call('EXPIRE', key, ttl)
  local ak = root .. c[i] .. ':act:' .. s[i] .. ':p' .. part
  redis.call('SADD', ak, u[i])
  fresh[ak] = true
end
for ak, _ in pairs(fresh) do redis.call('EXPIRE', ak, ttl) end
return #u
"""

# ARGV: "<app>:<city>:", partition, slot. Returns JSON [uids, cells] where cells holds 8 per user
# (slot-7 .. slot, -1 = not seen) and trims each user's fields older than the window.
CLOSE = r"""
local cp, part, slot = ARGV[1], ARGV[2], tonumber(ARGV[3])
local uids = redis.call('SMEMBERS', cp .. 'act:' .. ARGV[3] .. ':p' .. part)
local out = {}
for _, uid in ipairs(uids) do
  local key = cp .. 'u:' .. uid
  local h = redis.call('HGETALL', key)
  local row = {-1, -1, -1, -1, -1, -1, -1, -1}
  for j = 1, #h, 2 do
    local s = tonumber(h[j])
    if s < slot - 7 then
      redis.call('HDEL', key, h[j])
    elseif s <= slot then
      row[s - slot + 8] = tonumber(string.match(h[j + 1], '|(%-?%d+)$'))
    end
  end
  for k = 1, 8 do out[#out + 1] = row[k] end
end
if #uids == 0 then return '[[],[]]' end
return cjson.encode({uids, out})
"""

# ARGV: "<app>:", partition, last closed slot, number of partitions, ttl. Records the partition's
# progress; every slot that all partitions have now closed is assembled per city (sum of the
# partitions' shares). Returns JSON [[city, slot], ...] of the slots this call assembled.
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
      local h = redis.call('HGETALL', cp .. 'flowp:' .. slot .. ':p' .. q)
      for j = 1, #h, 2 do
        local o, i, u = string.match(h[j + 1], '^(%d+),(%d+),(%d+)$')
        local acc = sum[h[j]]
        if acc == nil then acc = {0, 0, 0}; sum[h[j]] = acc; order[#order + 1] = h[j] end
        acc[1], acc[2], acc[3] = acc[1] + tonumber(o), acc[2] + tonumber(i), acc[3] + tonumber(u)
      end
    end
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
