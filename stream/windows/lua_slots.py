"""The bulk writer of the embeddings on a single Redis: SET_MANY.

A Redis Cluster spreads the embedding keys over its nodes, so there they go out as a pipeline of SETs
(stream.outputs); one script may only touch keys of one hash slot.
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
