"""The Lua scripts of slot close and output: PURGE of old user slots, ADVANCE (assembly of the
partitions' flow shares), and the bulk writer of the embeddings.

Keys are built inside the scripts from the prefix, so these target a single Redis (not a cluster).
"""

# ARGV: ttl, the lengths of key 1, value 1, key 2, value 2, ... joined by ',', then all the keys and values
# back to back. SET key value EX ttl for each pair: one command for thousands of keys whose client side is
# two joins (redis-py packing 10,000 separate arguments of ~2.9 kB cost more than Redis storing them).
SET_MANY = r"""
local ttl, blob, at, n = ARGV[1], ARGV[3], 1, 0
for klen, vlen in string.gmatch(ARGV[2], '(%d+),(%d+)') do
  local k = string.sub(blob, at, at + klen - 1)
  at = at + klen
  redis.call('SET', k, string.sub(blob, at, at + vlen - 1), 'EX', ttl)
  at = at + vlen
  n = n + 1
end
return n
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

# ARGV: "<app>:", partition, last closed slot, number of partitions, ttl, at most this many slot numbers
# per call. Records the partition's progress; every slot that all partitions have now closed is assembled
# per city (sum of the partitions' shares, each a JSON string [[cell...], [occ, in, out, occ, in, out, ...]]),
# its shares are deleted and it joins the city's `unpub` set (the publisher removes it once its outputs are
# flushed, so a crash in between is recovered, not skipped). Returns JSON {"made": [[city, slot], ...],
# "more": bool}: with "more", slots all partitions closed are still unassembled (the cap), so call again.
# The cap bounds one call: a lagging partition catching up 90 slots of a 100k-user city held Redis for
# 5 s in one script (other clients got BUSY).
ADVANCE = r"""
local a, part, closed, n, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cap = tonumber(ARGV[6])
local prev = tonumber(redis.call('HGET', a .. 'closed', part))
if prev == nil or closed > prev then redis.call('HSET', a .. 'closed', part, closed) end
redis.call('EXPIRE', a .. 'closed', ttl)
local low = nil
for q = 0, n - 1 do
  local v = tonumber(redis.call('HGET', a .. 'closed', q))
  if v == nil then return '{"made":[],"more":false}' end
  if low == nil or v < low then low = v end
end
local done = redis.call('GET', a .. 'assembled')
local from = '-inf'
if done then
  if tonumber(done) >= low then return '{"made":[],"more":false}' end
  from = '(' .. done
end
local cities = redis.call('SMEMBERS', a .. 'cities')
local upto = low
if cap then
  local start = done and tonumber(done) + 1 or nil
  if start == nil then
    for _, city in ipairs(cities) do
      local f = redis.call('ZRANGEBYSCORE', a .. city .. ':pslots', '-inf', low, 'LIMIT', 0, 1)
      if #f > 0 and (start == nil or tonumber(f[1]) < start) then start = tonumber(f[1]) end
    end
  end
  if start ~= nil and start + cap - 1 < upto then upto = start + cap - 1 end
end
local made = {}
for _, city in ipairs(cities) do
  local cp = a .. city .. ':'
  for _, slot in ipairs(redis.call('ZRANGEBYSCORE', cp .. 'pslots', from, upto)) do
    -- Cells and counts stay strings (a share is orjson's '[[c,...],[o,i,u,...]]'); numbers only where two
    -- partitions share a cell. Formatting Lua numbers (doubles) goes through glibc's multi-precision
    -- printf, which was most of an assembly's time.
    local sum, order, name = {}, {}, {}
    for q = 0, n - 1 do
      local pk = cp .. 'flowp:' .. slot .. ':p' .. q
      local raw = redis.call('GET', pk)
      if raw then
        redis.call('DEL', pk)
        local mid = string.find(raw, '],[', 1, true)
        local cells, nc, j = {}, 0, 0
        for c in string.gmatch(string.sub(raw, 3, mid - 1), '[^,]+') do nc = nc + 1; cells[nc] = c end
        for o, i, u in string.gmatch(string.sub(raw, mid + 3, -3), '(%-?%d+),(%-?%d+),(%-?%d+)') do
          j = j + 1
          local c = cells[j]
          local acc = sum[c]
          if acc == nil then
            sum[c] = {o, i, u}
            local num = tonumber(c)
            order[#order + 1] = num
            name[num] = c
          else
            acc[1] = string.format('%d', tonumber(acc[1]) + tonumber(o))
            acc[2] = string.format('%d', tonumber(acc[2]) + tonumber(i))
            acc[3] = string.format('%d', tonumber(acc[3]) + tonumber(u))
          end
        end
      end
    end
    table.sort(order)
    local fk = cp .. 'flow:' .. slot
    redis.call('DEL', fk)
    -- A field longer than hash-max-ziplist-value makes Redis convert the new hash at once: filling a
    -- ziplist to 512 entries scans it on every insert.
    local pad = string.rep('~', 129)
    local args, na, names, flat = {}, 0, {}, {}
    if #order > 256 then args[1], args[2], na = pad, '', 2 end
    for j, num in ipairs(order) do
      local c = name[num]
      local acc = sum[c]
      local v = acc[1] .. ',' .. acc[2] .. ',' .. acc[3]
      names[j], flat[j] = c, v
      args[na + 1], args[na + 2] = c, v
      na = na + 2
      if na >= 1000 then redis.call('HSET', fk, unpack(args, 1, na)); na = 0 end
    end
    if na > 0 then redis.call('HSET', fk, unpack(args, 1, na)) end
    if #order > 256 then redis.call('HDEL', fk, pad) end
    redis.call('EXPIRE', fk, ttl)
    redis.call('SET', cp .. 'flowj:' .. slot, '[[' .. table.concat(names, ',') .. '],[' .. table.concat(flat, ',') .. ']]',
               'EX', ttl)
    local latest = tonumber(redis.call('HGET', a .. 'latest', city))
    if latest == nil or tonumber(slot) > latest then redis.call('HSET', a .. 'latest', city, slot) end
    redis.call('ZADD', cp .. 'unpub', slot, slot)
    redis.call('EXPIRE', cp .. 'unpub', ttl)
    made[#made + 1] = {city, tonumber(slot)}
  end
  redis.call('ZREMRANGEBYSCORE', cp .. 'pslots', '-inf', upto)
end
redis.call('SET', a .. 'assembled', upto, 'EX', ttl)
redis.call('EXPIRE', a .. 'latest', ttl)
local more = upto < low and 'true' or 'false'
if #made == 0 then return '{"made":[],"more":' .. more .. '}' end
return '{"made":' .. cjson.encode(made) .. ',"more":' .. more .. '}'
"""

# ARGV: "<app>:<city>:", retain, ttl, slots. Records that the slots' outputs are published and flushed:
# out of `unpub`, into `outs`; then deletes the per-slot outputs of every slot `retain` or more behind the
# newest kept one (flow, flowj, fc, fcn and its err field), so memory is bounded by slots, not by the
# wall-clock TTL. Returns how many slots it trimmed.
PUBLISHED = r"""
local cp, retain, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV do
  redis.call('ZREM', cp .. 'unpub', ARGV[i])
  redis.call('ZADD', cp .. 'outs', ARGV[i], ARGV[i])
end
redis.call('EXPIRE', cp .. 'outs', ttl)
local top = redis.call('ZREVRANGE', cp .. 'outs', 0, 0, 'WITHSCORES')
if #top == 0 then return 0 end
local old = redis.call('ZRANGEBYSCORE', cp .. 'outs', '-inf', tonumber(top[2]) - retain)
for _, slot in ipairs(old) do
  redis.call('DEL', cp .. 'flow:' .. slot, cp .. 'flowj:' .. slot, cp .. 'fc:' .. slot, cp .. 'fcn:' .. slot,
             cp .. 'fc:' .. slot .. ':h2', cp .. 'fc:' .. slot .. ':h3', cp .. 'fc:' .. slot .. ':h4')  -- Keys.forecast_ahead
  redis.call('HDEL', cp .. 'err', slot)
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', cp .. 'outs', '-inf', tonumber(top[2]) - retain) end
return #old
"""
