"""The redis driver's Lua scripts: the steps that must run as one, inside the server.

Each script touches one key (``KEYS[1]``), so it runs on that key's node of a cluster too. The
etag they compare is ``redis.sha1hex`` of the stored value: the same text as `etag`, which the
driver computes client-side for the values it writes.
"""

from __future__ import annotations

import hashlib

__all__ = ["INCREMENT_NEW_TTL", "META", "REMOVE_IF_MATCH", "SET_IF_MATCH", "etag"]


def etag(value: bytes) -> str:
    """The etag of a stored value: its SHA-1 in hex, as the scripts' ``redis.sha1hex``."""
    return hashlib.sha1(value, usedforsecurity=False).hexdigest()


#: ARGV: etag, value, PX milliseconds ("" for none). 1 when written, 0 when the etag differs
#: or the key is missing.
SET_IF_MATCH = """
local current = redis.call('GET', KEYS[1])
if not current or redis.sha1hex(current) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""

#: ARGV: etag. 1 when removed, 0 when the etag differs or the key is missing.
REMOVE_IF_MATCH = """
local current = redis.call('GET', KEYS[1])
if not current or redis.sha1hex(current) ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
"""

#: ARGV: by, PX milliseconds. A missing key is created holding ``by`` and expiring after PX;
#: an existing one is INCRBY'd and keeps its expiry. The new value comes back as text (a Lua
#: number is a double: INCRBY's own reply would lose digits past 2^53). INCRBY refuses a value
#: that is not a canonical 64-bit decimal integer, so JSON strings and floats are refused.
INCREMENT_NEW_TTL = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
redis.call('INCRBY', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[1])
"""

#: No ARGV. False for a missing key, else {size, PTTL ms (-1: none), etag, idle seconds (-1:
#: unknown)}.
META = """
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return false end
local idle = redis.pcall('OBJECT', 'IDLETIME', KEYS[1])
if type(idle) ~= 'number' then idle = -1 end
local value = redis.call('GET', KEYS[1])
return {string.len(value), pttl, redis.sha1hex(value), idle}
"""
