"""The Lua scripts of window state and assembly. Every key comes in KEYS (named by stream.keys), and the
keys of one call share a hash tag, so each script runs on one Redis Cluster node."""

# KEYS: the partition's clock, then the log keys to append to, then the log keys to delete.
# ARGV: the generation the caller's copy was loaded at, the number of logs to append, the number to delete,
# ttl, the number of clock updates, then per update: "max" | "min", field, number (the field moves only
# that way: a redelivered batch cannot move the clock back), then one frame per log to append.
# The generation check makes a worker whose in-memory copy is behind (another owner wrote since it loaded:
# a rebalance) reload instead of writing over the newer state. Pings, clock and purge land atomically:
# a batch redelivered after a crash finds either all or none of its effects. Cost: one APPEND per
# (city, slot) of the batch, a memcpy, so Redis work per ping is a fraction of a microsecond.
COMMIT = r"""
local clock = KEYS[1]
local gen = redis.call('HGET', clock, 'gen') or '0'
if gen ~= ARGV[1] then return {-1, gen} end
local nadd, ndel, ttl, nup = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 0, nup - 1 do
  local op, f, v = ARGV[6 + 3 * i], ARGV[7 + 3 * i], ARGV[8 + 3 * i]
  local cur = tonumber(redis.call('HGET', clock, f))
  local new = tonumber(v)
  if cur == nil or (op == 'max' and new > cur) or (op == 'min' and new < cur) then redis.call('HSET', clock, f, v) end
end
local at = 6 + 3 * nup
for i = 1, nadd do
  redis.call('APPEND', KEYS[1 + i], ARGV[at + i - 1])
  redis.call('EXPIRE', KEYS[1 + i], ttl)
end
for i = 1, ndel do redis.call('DEL', KEYS[1 + nadd + i]) end
local now = redis.call('HINCRBY', clock, 'gen', 1)
redis.call('EXPIRE', clock, ttl)
return {1, now}
"""

# KEYS: the city's closed hash. ARGV: partition, last slot it closed, ttl. Progress only moves forward
# (a re-close after a crash writes the same or an older number).
MARK_CLOSED = r"""
local prev = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if prev == nil or tonumber(ARGV[2]) > prev then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: the city's closed, assembled, pslots, latest and unpub keys, then per slot: flow, flowj, and the n
# partitions' shares. ARGV: n partitions, ttl, the assembled value the caller read ('' = none), the slot to
# record as assembled after this call, the number of slots, then per slot: slot, its flows as one JSON
# value, the number of hash arguments, and "cell", "occ,in,out" pairs. The caller summed the shares it read
# (numpy, off Redis: summing them in Lua cost ~6 us of Redis per cell); this call writes the sums only if
# assembled has not moved since the caller read it and every partition has closed `upto` (else it returns
# 0 and the caller reads again: another worker assembled meanwhile), deletes the shares, puts the slot in
# unpub (the publisher removes it once its outputs are flushed) and moves assembled on. Slots with no
# share need no keys: `upto` passes them.
ASSEMBLE = r"""
local n, ttl, seen, upto = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local done = redis.call('GET', KEYS[2]) or ''
if done ~= seen then return 0 end
local closed = redis.call('HVALS', KEYS[1])
if #closed < n then return 0 end
for _, v in ipairs(closed) do if tonumber(v) < upto then return 0 end end
local latest = tonumber(redis.call('GET', KEYS[4]))
local PAD = string.rep('~', 129)
local at, base = 6, 5
for _ = 1, tonumber(ARGV[5]) do
  local slot, flowj, nargs = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  local fk = KEYS[base + 1]
  redis.call('DEL', fk)
  -- A field longer than hash-max-ziplist-value makes Redis convert the new hash at once: filling a
  -- ziplist to its 128 entries scans it on every insert (most of this script's time without it).
  if nargs > 256 then redis.call('HSET', fk, PAD, '') end
  for i = at + 3, at + 2 + nargs, 1000 do
    redis.call('HSET', fk, unpack(ARGV, i, math.min(i + 999, at + 2 + nargs)))
  end
  if nargs > 256 then redis.call('HDEL', fk, PAD) end
  if nargs > 0 then
    redis.call('EXPIRE', fk, ttl)
    redis.call('SET', KEYS[base + 2], flowj, 'EX', ttl)
    if latest == nil or tonumber(slot) > latest then latest = tonumber(slot) end
    redis.call('ZADD', KEYS[5], slot, slot)
    redis.call('EXPIRE', KEYS[5], ttl)
  end
  for q = 1, n do redis.call('DEL', KEYS[base + 2 + q]) end
  redis.call('ZREM', KEYS[3], slot)
  at, base = at + 3 + nargs, base + 2 + n
end
if latest ~= nil then redis.call('SET', KEYS[4], latest, 'EX', ttl) end
redis.call('SET', KEYS[2], upto, 'EX', ttl)
return 1
"""

# KEYS: the city's unpub and outs sets. ARGV: retain, ttl, then the slots just published. Moves the slots
# out of unpub into outs and returns the kept slots `retain` or more behind the newest, which the caller
# deletes with their per-slot outputs (their key names come from stream.keys, not from here).
PUBLISHED = r"""
local retain, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i])
end
redis.call('EXPIRE', KEYS[2], ttl)
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #top == 0 then return {} end
return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', tonumber(top[2]) - retain)
"""
