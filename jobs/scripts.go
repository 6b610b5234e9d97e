package jobs

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// The state of a job lives in its episode's dedup key, whose value is
// STATE:RUNID with STATE one of
//
//	q  queued: in the node's stream, not started
//	r  running (or was, when its node died)
//	d  done: record stored and stream entry acknowledged
//	c  cancelled: resolved before it started ("c:" alone: resolved before
//	   any firing notification was seen, so a late firing is a duplicate)
//
// The dedup key and the stream share the node's hash tag, so each script
// below touches one slot.

// enqueueScript takes the episodes of a batch of alerts and queues their
// jobs, in order: one call carries as many alerts as share a Cluster slot
// (all of a batch, on a single Redis), so that Redis runs one script, not
// one per alert, between two fsyncs. For each alert the XADD comes before
// the SET: a script is atomic but not transactional, so if the XADD fails
// no dedup key is left behind to turn Alertmanager's retry into a false
// duplicate. An XADD that fails is that alert's error; the others go on.
//
// A node must be live to be given a job: with a minimum last-seen time
// (ARGV min-seen > 0), a node whose last-seen key (written with its state
// snapshot) is older, or that has neither a last-seen key nor a job stream
// (it never started), gets no job: the episode is taken as done ("d:ID")
// and the script answers 2, so that the bridge records the alert
// unroutable and escalates it. A node that has started its consumer (the
// stream exists) but not yet written its first snapshot is routed.
//
// KEYS: dedup, stream, last-seen, for each alert. ARGV: run id, dedup TTL
// (ms), job JSON, min-seen (Unix ms; 0: no check), for each alert.
// Returns, for each alert, 1 and the entry id when queued, 0 and the
// current value for a duplicate, 2 and the node's last-seen time (Unix ms,
// "" for never) when the node is not live, -1 and the error.
var enqueueScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS, 3 do
  local a = (i - 1) / 3 * 4
  local v = redis.call('GET', KEYS[i])
  local live, seen = true, false
  local min = tonumber(ARGV[a + 4])
  if not v and min and min > 0 then
    seen = redis.call('GET', KEYS[i + 2])
    if seen then
      live = (tonumber(seen) or 0) >= min
    else
      live = redis.call('EXISTS', KEYS[i + 1]) == 1
    end
  end
  if v then
    out[#out + 1] = 0
    out[#out + 1] = v
  elseif not live then
    redis.call('SET', KEYS[i], 'd:' .. ARGV[a + 1], 'PX', ARGV[a + 2])
    out[#out + 1] = 2
    out[#out + 1] = seen or ''
  else
    local id = redis.pcall('XADD', KEYS[i + 1], '*', 'job', ARGV[a + 3])
    if type(id) == 'table' and id.err then
      out[#out + 1] = -1
      out[#out + 1] = id.err
    else
      redis.call('SET', KEYS[i], 'q:' .. ARGV[a + 1], 'PX', ARGV[a + 2])
      out[#out + 1] = 1
      out[#out + 1] = id
    end
  end
end
return out
`)

// resolveScript cancels a queued job of the episode. With no key yet, it
// leaves a tombstone so that a firing notification of the same episode
// arriving later (HA peers, retries) counts as a duplicate.
//
// KEYS: dedup. ARGV: dedup TTL (ms). Returns the value before, or "".
var resolveScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'c:', 'PX', ARGV[1])
  return ''
end
if string.sub(v, 1, 2) == 'q:' then
  redis.call('SET', KEYS[1], 'c:' .. string.sub(v, 3), 'KEEPTTL')
end
return v
`)

// startScript moves a job to running unless it was cancelled or is done.
//
// KEYS: dedup. ARGV: run id. Returns the state before: q, r, c, d, or ""
// when the key has expired.
var startScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return '' end
local st = string.sub(v, 1, 1)
if st == 'c' or st == 'd' then return st end
redis.call('SET', KEYS[1], 'r:' .. ARGV[1], 'KEEPTTL')
return st
`)

// finishScript marks the job done and acknowledges and deletes its stream
// entry, in one step, after the run record is stored.
//
// KEYS: dedup, stream. ARGV: run id, group, entry id.
var finishScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[1], 'd:' .. ARGV[1], 'KEEPTTL')
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
return 1
`)

// EnqueueScript is the script that takes alerts' episodes and queues
// their jobs (for one alert, KEYS: dedup, stream, last-seen; ARGV: run id,
// dedup TTL in ms, job JSON, min-seen in Unix ms or 0), for benchmarks that send it to Redis directly as the
// raw baseline.
func EnqueueScript() *redis.Script { return enqueueScript }

// Resolve cancels the queued job of an episode (its dedup key), or leaves
// a tombstone when there is none yet (resolveScript), and returns the
// episode's state before: "" (none), or STATE:RUNID.
func Resolve(ctx context.Context, c redis.Scripter, dedup string, ttl time.Duration) (string, error) {
	return resolveScript.Run(ctx, c, []string{dedup}, ttl.Milliseconds()).Text()
}
