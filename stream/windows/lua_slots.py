"""The bulk writer of the embeddings on a single Redis: SET_MANY.

A Redis Cluster spreads the embedding keys over its nodes, so there they go out as a pipeline of SETs
(stream.inference); one script may only touch keys of one hash slot.
"""

# KEYS: the embedding keys; ARGV: ttl, then the value of each key. SET key value EX ttl for each: one command
# (packed by hiredis in the inference thread) for a thousand keys instead of a thousand commands and replies.
SET_MANY = r"""
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""
