package controls

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/keys"
)

// Decision approves or rejects one run waiting in "approve" mode.
type Decision struct {
	RunID   string    `json:"run_id"`
	Approve bool      `json:"approve"`
	By      string    `json:"by,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Request registers runID as waiting for a decision until deadline.
func (s *Store) Request(ctx context.Context, runID string, deadline time.Time) error {
	_, _, err := s.Ask(ctx, runID, deadline, time.Now())
	return err
}

// askScript: KEYS approvals, decision:ID, asked:ID; ARGV id, deadline ms,
// now ms, keep ms. The first request of a run parks it durably: its
// deadline is kept at asked:ID, so that the same run asking again (its
// node restarted while it waited) keeps its place, its deadline and any
// decision made meanwhile. Returns {deadline, asked before (1/0)}.
var askScript = redis.NewScript(`
local dl = redis.call("GET", KEYS[3])
if dl then
  if redis.call("EXISTS", KEYS[2]) == 0 and tonumber(dl) > tonumber(ARGV[3]) then
    redis.call("ZADD", KEYS[1], "NX", dl, ARGV[1])
  end
  return {tonumber(dl), 1}
end
redis.call("SET", KEYS[3], ARGV[2], "PX", ARGV[4])
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
return {tonumber(ARGV[2]), 0}`)

// Ask parks runID waiting for a decision until deadline, durably (see
// askScript): it returns the deadline in force, which is that of the
// run's first request when again is true (the run was redelivered after
// its node stopped; a decision made meanwhile still acts).
func (s *Store) Ask(ctx context.Context, runID string, deadline, now time.Time) (time.Time, bool, error) {
	keep := deadline.Sub(now) + DecisionTTL
	keys := []string{keys.Approvals(s.prefix), keys.Decision(s.prefix, runID), keys.Asked(s.prefix, runID)}
	res, err := askScript.Run(ctx, s.client, keys, runID, ms(deadline), ms(now), keep.Milliseconds()).Int64Slice()
	if err != nil {
		return time.Time{}, false, err
	}
	if len(res) != 2 {
		return time.Time{}, false, fmt.Errorf("approval request answered %v", res)
	}
	return fromMS(res[0]), res[1] == 1, nil
}

// decideScript: KEYS approvals, decision:ID; ARGV id, now ms, decision
// JSON, ttl ms. A decision already stored wins over a missing pending
// entry, so the second decision of a run says "decided", not "not pending".
var decideScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[2]) == 1 then return "decided" end
local dl = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not dl then return "not_pending" end
if tonumber(dl) <= tonumber(ARGV[2]) then
  redis.call("ZREM", KEYS[1], ARGV[1])
  return "not_pending"
end
redis.call("SET", KEYS[2], ARGV[3], "PX", ARGV[4])
redis.call("ZREM", KEYS[1], ARGV[1])
return "ok"`)

// Decide approves or rejects a pending run. Only a run still waiting can
// be decided, and the first decision wins: ErrNotPending, ErrDecided. At
// defaults to now.
func (s *Store) Decide(ctx context.Context, d Decision) error {
	if d.At.IsZero() {
		d.At = time.Now()
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	keys := []string{keys.Approvals(s.prefix), keys.Decision(s.prefix, d.RunID)}
	res, err := decideScript.Run(ctx, s.client, keys, d.RunID, ms(d.At), b, DecisionTTL.Milliseconds()).Text()
	if err != nil {
		return err
	}
	switch res {
	case "ok":
		return nil
	case "decided":
		return ErrDecided
	default:
		return ErrNotPending
	}
}

// Pending lists the ids of runs waiting for a decision at now, oldest
// deadline first; entries past their deadline are dropped.
func (s *Store) Pending(ctx context.Context, now time.Time) ([]string, error) {
	key := keys.Approvals(s.prefix)
	if err := s.client.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(ms(now), 10)).Err(); err != nil {
		return nil, err
	}
	return s.client.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(ms(now), 10), Max: "+inf"}).Result()
}

// withdrawScript: KEYS approvals, decision:ID; ARGV id. Either returns the
// decision that landed or removes the pending entry, in one step, so a
// decision racing the deadline is never accepted and then ignored.
var withdrawScript = redis.NewScript(`
local d = redis.call("GET", KEYS[2])
if d then return d end
redis.call("ZREM", KEYS[1], ARGV[1])
return false`)

// Decision returns the decision on runID, or nil if none was made yet.
func (s *Store) Decision(ctx context.Context, runID string) (*Decision, error) {
	v, err := s.client.Get(ctx, keys.Decision(s.prefix, runID)).Result()
	if isNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeDecision(v)
}

// Withdraw ends the wait of runID: it returns the decision if one was
// made, otherwise removes runID from the pending set (a later Decide gets
// ErrNotPending) and returns nil.
func (s *Store) Withdraw(ctx context.Context, runID string) (*Decision, error) {
	keys := []string{keys.Approvals(s.prefix), keys.Decision(s.prefix, runID)}
	v, err := withdrawScript.Run(ctx, s.client, keys, runID).Text()
	if isNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeDecision(v)
}

// WaitDecision polls for the decision on runID every poll until ctx ends
// (the caller bounds it by approval_ttl). Polling, not pub/sub: it works
// the same on Cluster and survives a reconnect without missing a message.
func (s *Store) WaitDecision(ctx context.Context, runID string, poll time.Duration) (*Decision, error) {
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		// A failed read (Redis failing over) is retried until ctx ends:
		// the deadline, not a blip, decides that nobody approved.
		if d, err := s.Decision(ctx, runID); err == nil && d != nil {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func decodeDecision(v string) (*Decision, error) {
	var d Decision
	if err := json.Unmarshal([]byte(v), &d); err != nil {
		return nil, err
	}
	return &d, nil
}
