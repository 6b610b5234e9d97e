package controls

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/keys"
)

// Backoff spaces the restarts of a crash loop: the n-th restart of a
// streak comes at least Base·2^(n-2) (capped at Max) after the previous
// one; a streak ends after Reset without a restart. Base < 0 turns it off.
type Backoff struct {
	Base, Max, Reset time.Duration
}

// budgetKeep bounds how long restart history is kept whatever the window.
const budgetKeep = 24 * time.Hour

// takeScript: KEYS budget, backoff; ARGV now, limit, window, base, max,
// reset, keep, member (all times ms). Returns {0, wait} when a restart is
// granted (and recorded at now+wait), {1, n} when n restarts in the window
// exhausted the budget.
var takeScript = redis.NewScript(`
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local base, max, reset, keep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if keep < window then keep = window end
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - keep)
local n = redis.call("ZCOUNT", KEYS[1], "(" .. (now - window), "+inf")
if n >= limit then return {1, n} end
local streak = tonumber(redis.call("HGET", KEYS[2], "streak") or "0")
local last = tonumber(redis.call("HGET", KEYS[2], "last") or "0")
if base < 0 or last == 0 or now - last >= reset then streak = 0 end
local wait = 0
if streak > 0 then
  local d = base
  for i = 2, streak do
    d = d * 2
    if d >= max then break end
  end
  if d > max then d = max end
  wait = last + d - now
  if wait < 0 then wait = 0 end
end
local at = now + wait
redis.call("ZADD", KEYS[1], at, ARGV[8])
redis.call("ZREMRANGEBYRANK", KEYS[1], 0, -1025)
redis.call("PEXPIRE", KEYS[1], keep)
redis.call("HSET", KEYS[2], "streak", streak + 1, "last", at)
redis.call("PEXPIRE", KEYS[2], keep)
return {0, wait}`)

// TakeRestart asks whether agent on node may restart now under a budget of
// limit restarts per window, and if so records the restart: wait is the
// backoff the caller sleeps first (the restart counts from now+wait).
// exhausted is a reason when the budget is spent, and nothing is recorded.
// Every engine sharing the Redis sees the same budget for one agent.
func (s *Store) TakeRestart(ctx context.Context, node, agent string, limit int, window time.Duration, b Backoff, now time.Time, runID string) (wait time.Duration, exhausted string, err error) {
	keys := []string{keys.Budget(s.prefix, node, agent), keys.Backoff(s.prefix, node, agent)}
	reset := b.Reset
	if reset <= 0 {
		reset = window
	}
	base := b.Base.Milliseconds()
	if b.Base < 0 {
		base = -1
	}
	member := strconv.FormatInt(ms(now), 10) + ":" + runID
	res, err := takeScript.Run(ctx, s.client, keys, ms(now), limit, window.Milliseconds(), base,
		b.Max.Milliseconds(), reset.Milliseconds(), budgetKeep.Milliseconds(), member).Int64Slice()
	if err != nil {
		return 0, "", err
	}
	if res[0] == 1 {
		return 0, fmt.Sprintf("restart budget exhausted: %d in %s", res[1], ShortDuration(window)), nil
	}
	return time.Duration(res[1]) * time.Millisecond, "", nil
}

// circuitScript: KEYS circuit; ARGV now, max, window, member, count.
// Returns {0, n} when the run is let through (and, with count = 1,
// counted), {1, reopen-at} when max runs in the window opened the
// circuit. A refused run is not counted, so the circuit closes when the
// window has passed.
var circuitScript = redis.NewScript(`
local now, max, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - window)
local n = redis.call("ZCARD", KEYS[1])
if n >= max then
  local oldest = redis.call("ZRANGE", KEYS[1], 0, n - max, "WITHSCORES")
  return {1, tonumber(oldest[#oldest]) + window}
end
if ARGV[5] == "1" then
  redis.call("ZADD", KEYS[1], now, ARGV[4])
  redis.call("PEXPIRE", KEYS[1], window)
  n = n + 1
end
return {0, n}`)

// Circuit counts one run of agent on node against a circuit of maxRuns
// per window. open reports that maxRuns runs already happened within the
// window (the run must not act); until is when the circuit closes again
// on its own.
func (s *Store) Circuit(ctx context.Context, node, agent string, maxRuns int, window time.Duration, now time.Time, runID string) (open bool, until time.Time, err error) {
	return s.circuit(ctx, node, agent, maxRuns, window, now, runID, true)
}

// CircuitPeek is Circuit without counting the run: an approve-mode run
// asks before it waits for a person, and counts only once approved.
func (s *Store) CircuitPeek(ctx context.Context, node, agent string, maxRuns int, window time.Duration, now time.Time) (open bool, until time.Time, err error) {
	return s.circuit(ctx, node, agent, maxRuns, window, now, "", false)
}

func (s *Store) circuit(ctx context.Context, node, agent string, maxRuns int, window time.Duration, now time.Time, runID string, count bool) (open bool, until time.Time, err error) {
	key := keys.Circuit(s.prefix, node, agent)
	flag := "0"
	if count {
		flag = "1"
	}
	res, err := circuitScript.Run(ctx, s.client, []string{key}, ms(now), maxRuns, window.Milliseconds(),
		strconv.FormatInt(ms(now), 10)+":"+runID, flag).Int64Slice()
	if err != nil {
		return false, time.Time{}, err
	}
	if res[0] == 1 {
		return true, fromMS(res[1]), nil
	}
	return false, time.Time{}, nil
}

// ResetAgent closes agent's circuit on node and ends its crash-loop
// backoff streak, so the next run acts at once. It keeps the restart
// budget history on purpose: the budget is what stops a restart loop, and
// an operator who resets the circuit wants one more try, not an unbounded
// number of them. The reset is idempotent.
func (s *Store) ResetAgent(ctx context.Context, node, agent string) error {
	// One DEL with two keys of one slot: atomic, and legal on Cluster.
	return s.client.Del(ctx, keys.Circuit(s.prefix, node, agent), keys.Backoff(s.prefix, node, agent)).Err()
}

// ShortDuration prints 1h, 30m, 1h30m, 90s rather than 1h0m0s.
func ShortDuration(d time.Duration) string {
	s := d.String()
	if len(s) > 3 && s[len(s)-3:] == "m0s" {
		s = s[:len(s)-2]
	}
	if len(s) > 3 && s[len(s)-3:] == "h0m" {
		s = s[:len(s)-2]
	}
	return s
}
