"""The Lua scripts of the ingest path: APPLY (pings into per-slot user hashes) and CLOSE (windows of a
partition's users at slot close). One call per batch, atomic, idempotent under replay.

Keys are built inside the scripts from the prefix, so these target a single Redis (not a cluster).
"""

# ARGV: root "<app>:", partition, ttl seconds, JSON [[city, slot, [uid...], ["ts_ms|cell"...]], ...]
# (pings grouped by city and slot), the partition's max event time ('' = none yet), its first closed
# slot ('' = already recorded). Latest event time wins per (user, slot), ties to the larger cell,
# so applying the same pings twice, or in another order, leaves the same hash. Per key and chunk of
# 2,000 pings: one HMGET of the stored values, the comparison in Lua (only where a value exists or a
# user repeats in the batch), one HSET of the winners. A redis.call costs ~1-2 us of Lua/Redis
# dispatch, so one HSETNX per ping was most of this script. Set members and expiries go out once per
# key. Pings and the clock land in one atomic call: one round trip per batch, and no MULTI.
APPLY = r"""
local root, part, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local PAD = string.rep('~', 129)
local function newer(old, new)
  local ot, oc = string.match(old, '^(%-?%d+)|(%-?%d+)$')
  local nt, nc = string.match(new, '^(%-?%d+)|(%-?%d+)$')
  ot, oc, nt, nc = tonumber(ot), tonumber(oc), tonumber(nt), tonumber(nc)
  return ot < nt or (ot == nt and oc < nc)
end
local n = 0
local cities = {}
for _, g in ipairs(cjson.decode(ARGV[4])) do
  cities[g[1]] = true
  local cp, slot, uids, vals = root .. g[1] .. ':', g[2], g[3], g[4]
  local key = cp .. 'cells:' .. slot
  for k = 1, #uids, 2000 do
    local hi = math.min(k + 1999, #uids)
    local old = redis.call('HMGET', key, unpack(uids, k, hi))
    local args, na, at = {}, 0, {}
    for j = 1, hi - k + 1 do
      local u, v = uids[k + j - 1], vals[k + j - 1]
      local p = at[u]
      local cur = p and args[p] or old[j]
      if not cur or (cur ~= v and newer(cur, v)) then
        if p then args[p] = v else args[na + 1], args[na + 2] = u, v; na = na + 2; at[u] = na end
      end
    end
    if na > 512 then
      -- A small hash is a ziplist whose every insert scans it: 512 inserts cost ~130k comparisons.
      -- A field longer than any uid (and hash-max-ziplist-value) makes Redis convert it first.
      redis.call('HSET', key, PAD, '', unpack(args, 1, na))
      redis.call('HDEL', key, PAD)
    elseif na > 0 then
      redis.call('HSET', key, unpack(args, 1, na))
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

# ARGV: "<app>:<city>:", partition, slot, full (1/0). Reads the windows of the users the partition saw
# in the slot, column by column from the slot backwards (slot, slot-1, ...): the users asked in a
# column get one entry each, their cell or -1. With full = 0 (no embedder needs whole windows) a user
# leaves once found in a column before the slot: the flows need only the most recent earlier
# observation. Returns the users as a JSON list, then one line per column read, comma-separated
# cells of that column's users in order (`close_windows` puts them back in place). Reads only.
# Cells stay the strings Redis holds and lines are joined by table.concat: Lua numbers are doubles,
# and formatting thousands of them (cjson.encode, tostring) goes through glibc's multi-precision
# printf, which was most of this script's time; numpy parses a line in one call.
CLOSE = r"""
local cp, part, slot, full = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local uids = redis.call('SMEMBERS', cp .. 'act:' .. ARGV[3] .. ':p' .. part)
local find, sub, concat = string.find, string.sub, table.concat
local lines = {}
local ask, na = uids, #uids
for col = 8, 1, -1 do
  if na == 0 then break end
  local key = cp .. 'cells:' .. (slot - 8 + col)
  local line, left, nl = {}, {}, 0
  local narrow = not full and col < 8
  for k = 1, na, 4000 do
    local vals = redis.call('HMGET', key, unpack(ask, k, math.min(k + 3999, na)))
    for j = 1, #vals do
      local v = vals[j]
      if v then
        line[k + j - 1] = sub(v, find(v, '|', 1, true) + 1)
      else
        line[k + j - 1] = '-1'
        if narrow then nl = nl + 1; left[nl] = ask[k + j - 1] end
      end
    end
  end
  lines[#lines + 1] = concat(line, ',', 1, na)
  if narrow then ask, na = left, nl end
end
if #uids == 0 then return '[]' end
return cjson.encode(uids) .. '\n' .. concat(lines, '\n')
"""
