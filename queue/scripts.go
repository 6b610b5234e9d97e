package queue

import "github.com/redis/go-redis/v9"

// Every multi-key step of the dispatcher is one of these scripts. Each takes
// only keys of one pool (one hash tag, so one Cluster slot); the agent stream
// a script writes to is derived from the control hash and shares that tag.
// Scripts read the clock with TIME so that heartbeat ages are measured on one
// clock, the server's.

// luaLib is prepended to the scripts that need it.
const luaLib = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- healthy returns agent -> host for every registered agent whose last
-- heartbeat is within its own timeout.
local function healthy(agents_key, now)
  local all = redis.call('HGETALL', agents_key)
  local ok = {}
  for i = 1, #all, 2 do
    local last, timeout, host = string.match(all[i+1], '^(%d+) (%d+) ?(.*)$')
    if last and now - tonumber(last) <= tonumber(timeout) then
      ok[all[i]] = host or ''
    end
  end
  return ok
end

-- choose picks a healthy agent other than exclude: the first of the
-- space-separated allowed list, or (no list) the smallest ID.
local function choose(ok, allowed, exclude)
  if allowed ~= '' then
    for id in string.gmatch(allowed, '%S+') do
      if id ~= exclude and ok[id] then return id end
    end
    return nil
  end
  local best = nil
  for id, _ in pairs(ok) do
    if id ~= exclude and (best == nil or id < best) then best = id end
  end
  return best
end

-- move copies entries (XRANGE replies) in order to dst and deletes them
-- from src.
local function move(entries, src, dst)
  for _, e in ipairs(entries) do
    redis.call('XADD', dst, '*', unpack(e[2]))
    redis.call('XDEL', src, e[1])
  end
end
`

// publishLib is publish_one, the publish step that publishBatchScript runs
// for each config of a batch (Publish sends a batch of one): it
// assigns the device's next sequence number and appends the config to the
// active agent's stream, or to buf while the pool is locked or has no
// agent. With no active agent and an empty buffer it activates the first
// healthy agent (a new epoch). An idempotency key (idem, or nil) returns the
// first result again. It returns id, seq, duplicate (0|1).
const publishLib = luaLib + `
local function publish_one(ctl, seqk, buf, agents, idem, device, payload, prefix, ttl, allowed)
  if idem then
    local prev = redis.call('GET', idem)
    if prev then
      local id, seq = string.match(prev, '^(%S+) (%d+)$')
      return id, tonumber(seq), 1
    end
  end
  local c = redis.call('HMGET', ctl, 'lock', 'agent', 'stream')
  local target = nil
  if c[1] == '1' then
    target = buf
  elseif c[2] and c[2] ~= '' then
    target = c[3]
  elseif redis.call('XLEN', buf) == 0 then
    local now = now_ms()
    local ok = healthy(agents, now)
    local a = choose(ok, allowed, '')
    if a then
      local epoch = redis.call('HINCRBY', ctl, 'epoch', 1)
      target = prefix .. a
      redis.call('HSET', ctl, 'agent', a, 'stream', target, 'status', 'active',
        'host', ok[a], 'lock', '0', 'phase', '', 'target', '', 'since_ms', now)
    end
  end
  if not target then
    target = buf
    if c[2] == false or c[2] == '' then
      redis.call('HSET', ctl, 'status', 'waiting')
    end
  end
  local seq = redis.call('HINCRBY', seqk, device, 1)
  local id = redis.call('XADD', target, '*', 'device', device, 'seq', seq, 'payload', payload)
  if idem then
    redis.call('SET', idem, id .. ' ' .. seq, 'PX', ttl)
  end
  return id, seq, 0
end
`

// publishBatchScript publishes configs in order, each by publish_one, in
// one script call: Redis runs one script instead of one per config, which
// was most of its CPU in the dispatch benchmark.
//
// KEYS: ctl, seq, buf, agents, then the batch's idempotency keys
// ARGV: stream prefix, idem TTL ms, allowed agents, then per config:
// device, payload, index of its idempotency key in KEYS (0: none)
// returns {id, seq, duplicate(0|1), ...} per config
var publishBatchScript = redis.NewScript(publishLib + `
local out = {}
for i = 4, #ARGV, 3 do
  local k = tonumber(ARGV[i+2])
  local idem = nil
  if k > 0 then idem = KEYS[k] end
  local id, seq, dup = publish_one(KEYS[1], KEYS[2], KEYS[3], KEYS[4], idem,
    ARGV[i], ARGV[i+1], ARGV[1], ARGV[2], ARGV[3])
  out[#out+1] = id
  out[#out+1] = seq
  out[#out+1] = dup
end
return out
`)

// heartbeatScript records an agent's heartbeat with the server clock.
//
// KEYS: agents
// ARGV: agent, timeout ms, host
var heartbeatScript = redis.NewScript(luaLib + `
redis.call('HSET', KEYS[1], ARGV[1], now_ms() .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
return 1
`)

// stepScript is the agent's fence check, combined with the
// acknowledgement of configs it just delivered (of several devices at once:
// the agent batches concurrent calls). For each item it advances ack only
// when seq is exactly ack+1, and acknowledges and deletes the entry once
// seq <= ack (done, by this push or an earlier one); then it reports
// whether the agent is still on duty in its epoch.
//
// An agent is on duty when the epoch is the one it started with and it is
// the active agent (unlocked) or the switchover target (locked).
//
// A device whose failure state (dev) refers to a seq now acknowledged
// leaves the dev hash and the retrying and blocked indexes.
//
// KEYS: ctl, ack, stream, dev, retrying, blocked
// ARGV: agent, epoch, then per item: device, seq (0: only read ack), entry id
// returns {on duty (0|1), then per item: ack, acknowledged (0|1)}
var stepScript = redis.NewScript(`
local out = {0}
local cur, changed, ids = {}, {}, {}
for i = 3, #ARGV, 3 do
  local dev, seq, id = ARGV[i], tonumber(ARGV[i+1]), ARGV[i+2]
  if cur[dev] == nil then
    cur[dev] = tonumber(redis.call('HGET', KEYS[2], dev) or '0')
  end
  local acked = 0
  if seq > 0 then
    if seq == cur[dev] + 1 then
      cur[dev] = seq
      changed[dev] = true
    end
    if seq <= cur[dev] then
      ids[#ids+1] = id
      acked = 1
    end
  end
  out[#out+1] = cur[dev]
  out[#out+1] = acked
end
-- One write per device and one XACK and XDEL for the whole batch: the
-- same end state as item by item, in fewer commands for Redis to run and
-- append to its AOF.
for dev, _ in pairs(changed) do
  redis.call('HSET', KEYS[2], dev, cur[dev])
  -- A device whose failing config is now done is ok again.
  local raw = redis.call('HGET', KEYS[4], dev)
  if raw then
    local ok, st = pcall(cjson.decode, raw)
    if not ok or tonumber(st.seq or 0) <= cur[dev] then
      redis.call('HDEL', KEYS[4], dev)
      redis.call('ZREM', KEYS[5], dev)
      redis.call('ZREM', KEYS[6], dev)
    end
  end
end
if #ids > 0 then
  redis.call('XACK', KEYS[3], '` + Group + `', unpack(ids))
  redis.call('XDEL', KEYS[3], unpack(ids))
end
local c = redis.call('HMGET', KEYS[1], 'epoch', 'lock', 'agent', 'target')
if c[1] == ARGV[2] then
  if (c[2] ~= '1' and c[3] == ARGV[1]) or (c[2] == '1' and c[4] == ARGV[1]) then
    out[1] = 1
  end
end
return out
`)

// beginScript starts a switchover: lock, epoch+1, choose the target. It is
// the only step that may run without the coordinator lease (an API or
// runbook trigger); the lease holder drives the rest. A switchover already
// in progress is reported, not restarted.
//
// KEYS: ctl, agents, lease
// ARGV: lease token (empty: none), expected current agent (empty: any),
// target (empty: choose), allowed agents, stream prefix, reason
//
// returns {status, target, epoch, from}; status is ok, busy, notactive,
// same, unhealthy, notallowed, nohealthy or lease.
var beginScript = redis.NewScript(luaLib + `
if ARGV[1] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return {'lease', '', 0, ''}
end
local c = redis.call('HMGET', KEYS[1], 'lock', 'agent', 'epoch', 'target', 'stream')
local cur = c[2] or ''
local epoch = tonumber(c[3] or '0')
if c[1] == '1' then
  return {'busy', c[4] or '', epoch, cur}
end
if ARGV[2] ~= '' and ARGV[2] ~= cur then
  return {'notactive', '', epoch, cur}
end
local now = now_ms()
local ok = healthy(KEYS[2], now)
local target = ARGV[3]
if target ~= '' then
  if target == cur then return {'same', target, epoch, cur} end
  if ARGV[4] ~= '' and not string.find(' ' .. ARGV[4] .. ' ', ' ' .. target .. ' ', 1, true) then
    return {'notallowed', target, epoch, cur}
  end
  if not ok[target] then return {'unhealthy', target, epoch, cur} end
else
  target = choose(ok, ARGV[4], cur)
  if not target then return {'nohealthy', '', epoch, cur} end
end
epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local phase = 'migrate'
if cur == '' then phase = 'drain' end
redis.call('HSET', KEYS[1], 'lock', '1', 'status', 'switching', 'target', target,
  'target_stream', ARGV[5] .. target, 'from', cur, 'from_stream', c[5] or '',
  'phase', phase, 'started_ms', now, 'reason', ARGV[6])
return {'ok', target, epoch, cur}
`)

// migrateScript moves one batch of the old agent's stream — every entry
// still in it is undelivered or unacknowledged, since acknowledged entries
// are deleted — to the target's stream in order. When the old stream is
// empty it deletes it (and its group) and moves to the drain phase.
//
// KEYS: ctl, lease, from stream, to stream
// ARGV: lease token, epoch, batch size
// returns {status, moved}; status is more, done, lease or stale.
var migrateScript = redis.NewScript(luaLib + `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'lease', 0} end
local c = redis.call('HMGET', KEYS[1], 'epoch', 'phase', 'lock')
if c[1] ~= ARGV[2] or c[2] ~= 'migrate' or c[3] ~= '1' then return {'stale', 0} end
local entries = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', tonumber(ARGV[3]))
move(entries, KEYS[3], KEYS[4])
if redis.call('XLEN', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'phase', 'drain')
  return {'done', #entries}
end
return {'more', #entries}
`)

// drainScript moves one batch of the buffer to the target's stream in order;
// the call that finds the buffer empty makes the target the active agent and
// clears the lock, atomically, so no producer can slip a config between the
// buffer and the new stream.
//
// KEYS: ctl, lease, buf, to stream, agents
// ARGV: lease token, epoch, batch size
// returns {status, moved, started_ms, finished_ms}; status is more, done,
// lease or stale.
var drainScript = redis.NewScript(luaLib + `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'lease', 0, 0, 0} end
local c = redis.call('HMGET', KEYS[1], 'epoch', 'phase', 'lock', 'target', 'started_ms')
if c[1] ~= ARGV[2] or c[2] ~= 'drain' or c[3] ~= '1' then return {'stale', 0, 0, 0} end
local entries = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', tonumber(ARGV[3]))
move(entries, KEYS[3], KEYS[4])
if redis.call('XLEN', KEYS[3]) > 0 then return {'more', #entries, 0, 0} end
local now = now_ms()
local host = ''
local reg = redis.call('HGET', KEYS[5], c[4])
if reg then host = string.match(reg, '^%d+ %d+ ?(.*)$') or '' end
redis.call('HSET', KEYS[1], 'agent', c[4], 'stream', KEYS[4], 'status', 'active',
  'host', host, 'lock', '0', 'phase', '', 'target', '', 'target_stream', '',
  'since_ms', now, 'previous', redis.call('HGET', KEYS[1], 'from') or '')
redis.call('HDEL', KEYS[1], 'from', 'from_stream')
redis.call('HINCRBY', KEYS[1], 'switchovers', 1)
return {'done', #entries, tonumber(c[5] or now), now}
`)

// leaseScript takes or renews the coordinator lease.
//
// KEYS: lease
// ARGV: token, ttl ms
// returns 1 when the caller holds the lease.
var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// releaseScript gives the lease back if the caller holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
