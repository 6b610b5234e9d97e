package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Device states (docs/design.md §5). A device is ok unless its head config
// (the one after its ack) failed: retrying while the agent keeps trying
// (5xx, timeouts, 408/409/425/429, or fewer than max_attempts other 4xx),
// blocked once it answered max_attempts other 4xx — then the agent stops
// pushing to it until an operator retries or skips the config.
const (
	StateOK       = "ok"
	StateRetrying = "retrying"
	StateBlocked  = "blocked"
)

// DefaultMaxAttempts is the pool attribute max_attempts' default.
const DefaultMaxAttempts = 10

// MaxActions bounds the audit stream of operator actions per pool
// (approximately, XADD MAXLEN ~).
const MaxActions = 10000

// Permanent reports whether a device's answer counts towards max_attempts:
// a 4xx other than 408 (timeout), 409 (conflict, e.g. a stale epoch or a
// device not ready for this seq), 425 (too early) and 429 (rate limited),
// which say "not now" rather than "never".
func Permanent(code int) bool {
	if code < 400 || code > 499 {
		return false
	}
	switch code {
	case 408, 409, 425, 429:
		return false
	}
	return true
}

// devState is a device's entry in the dev hash (JSON, written by the
// scripts below with cjson).
type devState struct {
	State        string  `json:"state"`
	Seq          int64   `json:"seq"`
	Attempts     int64   `json:"attempts"`
	Rejections   int64   `json:"rejections"`
	MaxAttempts  int64   `json:"max_attempts"`
	LastStatus   int     `json:"last_status"`
	LastError    string  `json:"last_error"`
	SinceMs      float64 `json:"since_ms"`
	StateSinceMs float64 `json:"state_since_ms"`
	AtMs         float64 `json:"at_ms"`
	Agent        string  `json:"agent"`
	RetriedBy    string  `json:"retried_by"`
	RetryReason  string  `json:"retry_reason"`
}

// deviceLib holds the scripts' shared device-state helpers.
const deviceLib = luaLib + `
local function on_duty(ctl, agent, epoch)
  local c = redis.call('HMGET', ctl, 'epoch', 'lock', 'agent', 'target')
  return c[1] == epoch and ((c[2] ~= '1' and c[3] == agent) or (c[2] == '1' and c[4] == agent))
end
local function audit(key, action, dev, seq, by, reason, now, maxlen)
  redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'action', action, 'device', dev,
    'seq', seq, 'by', by, 'reason', reason, 'at_ms', now)
end
`

// failScript records a failed push of a device's head config: attempts,
// the answer, and the state (retrying, or blocked after max_attempts
// permanent rejections). Only the agent on duty in its epoch writes, and
// only for the config right after the device's ack.
//
// KEYS: ctl, ack, dev, retrying, blocked, payloads
// ARGV: agent, epoch, device, seq, status, error, permanent (0|1),
// max_attempts, payload
// returns {state, attempts}; state is retrying, blocked, offduty or stale.
var failScript = redis.NewScript(deviceLib + `
if not on_duty(KEYS[1], ARGV[1], ARGV[2]) then return {'offduty', 0} end
local dev, seq = ARGV[3], tonumber(ARGV[4])
local ack = tonumber(redis.call('HGET', KEYS[2], dev) or '0')
if seq ~= ack + 1 then return {'stale', 0} end
local now = now_ms()
local st = nil
local raw = redis.call('HGET', KEYS[3], dev)
if raw then
  local ok, v = pcall(cjson.decode, raw)
  if ok and tonumber(v.seq) == seq then st = v end
end
if not st then
  st = {seq = seq, attempts = 0, rejections = 0, since_ms = now, state = ''}
end
st.attempts = st.attempts + 1
if ARGV[7] == '1' then st.rejections = st.rejections + 1 end
st.last_status = tonumber(ARGV[5])
st.last_error = ARGV[6]
st.at_ms = now
st.agent = ARGV[1]
st.max_attempts = tonumber(ARGV[8])
local state = 'retrying'
if st.rejections >= st.max_attempts then state = 'blocked' end
if st.state ~= state then st.state_since_ms = now end
st.state = state
if state == 'blocked' then
  redis.call('ZREM', KEYS[4], dev)
  redis.call('ZADD', KEYS[5], st.state_since_ms, dev)
  redis.call('HSET', KEYS[6], dev, ARGV[9])
else
  redis.call('ZADD', KEYS[4], 'NX', st.state_since_ms, dev)
end
redis.call('HSET', KEYS[3], dev, cjson.encode(st))
return {state, st.attempts}
`)

// retryScript unblocks a blocked device: its rejections count starts
// again, its state is retrying until the agent delivers the config, and
// ctl's unblocks counter tells the agent to pick the device up now.
//
// KEYS: ctl, dev, retrying, blocked, payloads, actions
// ARGV: device, by, reason, max actions
// returns {status, seq}; status is ok or the device's state.
var retryScript = redis.NewScript(deviceLib + `
local dev = ARGV[1]
local raw = redis.call('HGET', KEYS[2], dev)
if not raw then return {'ok-state', 0} end
local st = cjson.decode(raw)
if st.state ~= 'blocked' then return {st.state, st.seq} end
local now = now_ms()
st.state = 'retrying'
st.state_since_ms = now
st.rejections = 0
st.retried_by = ARGV[2]
st.retry_reason = ARGV[3]
redis.call('HSET', KEYS[2], dev, cjson.encode(st))
redis.call('ZREM', KEYS[4], dev)
redis.call('ZADD', KEYS[3], now, dev)
redis.call('HDEL', KEYS[5], dev)
audit(KEYS[6], 'retry', dev, st.seq, ARGV[2], ARGV[3], now, ARGV[4])
redis.call('HINCRBY', KEYS[1], 'unblocks', 1)
return {'ok', st.seq}
`)

// skipScript moves a blocked device's head config to the dead letters:
// ack advances past it (the agent acknowledges its stream entry without a
// push when it meets it), the record keeps payload, seq, last answer, who
// and why, and the device's next config is delivered next.
//
// KEYS: ctl, ack, dev, retrying, blocked, payloads, dead, actions
// ARGV: device, by, reason, max actions
// returns {status, seq, dead-letter id}; status is ok, stale or the
// device's state.
var skipScript = redis.NewScript(deviceLib + `
local dev = ARGV[1]
local raw = redis.call('HGET', KEYS[3], dev)
if not raw then return {'ok-state', 0, ''} end
local st = cjson.decode(raw)
if st.state ~= 'blocked' then return {st.state, st.seq, ''} end
local ack = tonumber(redis.call('HGET', KEYS[2], dev) or '0')
if tonumber(st.seq) ~= ack + 1 then return {'stale', st.seq, ''} end
local now = now_ms()
redis.call('HSET', KEYS[2], dev, st.seq)
local id = redis.call('XADD', KEYS[7], '*', 'device', dev, 'seq', st.seq,
  'payload', redis.call('HGET', KEYS[6], dev) or '', 'last_status', st.last_status or 0,
  'last_error', st.last_error or '', 'attempts', st.attempts, 'blocked_since_ms', st.state_since_ms,
  'by', ARGV[2], 'reason', ARGV[3], 'at_ms', now)
redis.call('HDEL', KEYS[3], dev)
redis.call('HDEL', KEYS[6], dev)
redis.call('ZREM', KEYS[4], dev)
redis.call('ZREM', KEYS[5], dev)
audit(KEYS[8], 'skip', dev, st.seq, ARGV[2], ARGV[3], now, ARGV[4])
redis.call('HINCRBY', KEYS[1], 'unblocks', 1)
return {'ok', st.seq, id}
`)

// DeviceState is GET /api/v1/pools/{pool}/devices/{device}.
type DeviceState struct {
	Device string `json:"device"`
	// AppliedSeq is the highest seq done: confirmed by the device, or
	// skipped by an operator.
	AppliedSeq int64 `json:"applied_seq"`
	// NextSeq is the seq delivered next (AppliedSeq+1).
	NextSeq int64 `json:"next_seq"`
	// Pending counts configs published and not done.
	Pending int64  `json:"pending"`
	State   string `json:"state"`
	// Attempts counts failed pushes of the head config; Rejections those
	// that count towards MaxAttempts.
	Attempts    int64      `json:"attempts"`
	Rejections  int64      `json:"rejections"`
	MaxAttempts int64      `json:"max_attempts,omitempty"`
	LastStatus  int        `json:"last_status"`
	LastError   string     `json:"last_error"`
	Since       *time.Time `json:"since"`
	RetriedBy   string     `json:"retried_by,omitempty"`
	RetryReason string     `json:"retry_reason,omitempty"`
}

func msTime(ms float64) *time.Time {
	if ms <= 0 {
		return nil
	}
	t := time.UnixMilli(int64(ms)).UTC()
	return &t
}

// ErrUnknownDevice is returned for a device nothing was published to.
var ErrUnknownDevice = errors.New("unknown device")

// ReadDevice reads one device's state.
func ReadDevice(ctx context.Context, c redis.UniversalClient, k Keys, device string) (DeviceState, error) {
	ds, err := readDevices(ctx, c, k, []string{device})
	if err != nil {
		return DeviceState{}, err
	}
	if ds[0] == nil {
		return DeviceState{}, fmt.Errorf("%w %q in pool %s: nothing was published to it", ErrUnknownDevice, device, k.Pool())
	}
	return *ds[0], nil
}

// readDevices reads devices' states; an entry is nil for a device nothing
// was published to.
func readDevices(ctx context.Context, c redis.UniversalClient, k Keys, devices []string) ([]*DeviceState, error) {
	out := make([]*DeviceState, len(devices))
	if len(devices) == 0 {
		return out, nil
	}
	pipe := c.Pipeline()
	seqs := pipe.HMGet(ctx, k.Seq(), devices...)
	acks := pipe.HMGet(ctx, k.Ack(), devices...)
	sts := pipe.HMGet(ctx, k.Dev(), devices...)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read devices of pool %s: %w", k.Pool(), err)
	}
	for i, dev := range devices {
		seq, _ := strconv.ParseInt(asString(seqs.Val()[i]), 10, 64)
		if seq == 0 {
			continue
		}
		ack, _ := strconv.ParseInt(asString(acks.Val()[i]), 10, 64)
		d := &DeviceState{Device: dev, AppliedSeq: ack, NextSeq: ack + 1, Pending: max(seq-ack, 0), State: StateOK}
		if raw := asString(sts.Val()[i]); raw != "" {
			var st devState
			if json.Unmarshal([]byte(raw), &st) == nil && st.Seq > ack {
				d.State, d.Attempts, d.Rejections, d.MaxAttempts = st.State, st.Attempts, st.Rejections, st.MaxAttempts
				d.LastStatus, d.LastError, d.Since = st.LastStatus, st.LastError, msTime(st.StateSinceMs)
				d.RetriedBy, d.RetryReason = st.RetriedBy, st.RetryReason
			}
		}
		out[i] = d
	}
	return out, nil
}

// DevicePage is one page of GET /api/v1/pools/{pool}/devices.
type DevicePage struct {
	Devices []DeviceState `json:"devices"`
	// Total counts the devices in the state; NextOffset is the offset of
	// the next page, absent on the last one.
	Total      int64 `json:"total"`
	Offset     int64 `json:"offset"`
	NextOffset int64 `json:"next_offset,omitempty"`
}

// ListDevices lists the devices in state (blocked or retrying), the
// longest in that state first, limit from offset.
func ListDevices(ctx context.Context, c redis.UniversalClient, k Keys, state string, offset, limit int64) (DevicePage, error) {
	key := k.Blocked()
	switch state {
	case StateBlocked:
	case StateRetrying:
		key = k.Retrying()
	default:
		return DevicePage{}, fmt.Errorf("%w: state %q: want blocked or retrying", ErrBadInput, state)
	}
	page := DevicePage{Devices: []DeviceState{}, Offset: offset}
	total, err := c.ZCard(ctx, key).Result()
	if err != nil {
		return page, fmt.Errorf("list devices of pool %s: %w", k.Pool(), err)
	}
	page.Total = total
	names, err := c.ZRange(ctx, key, offset, offset+limit-1).Result()
	if err != nil {
		return page, fmt.Errorf("list devices of pool %s: %w", k.Pool(), err)
	}
	ds, err := readDevices(ctx, c, k, names)
	if err != nil {
		return page, err
	}
	for _, d := range ds {
		if d != nil {
			page.Devices = append(page.Devices, *d)
		}
	}
	if next := offset + int64(len(names)); next < total {
		page.NextOffset = next
	}
	return page, nil
}

// DeadLetter is one skipped config.
type DeadLetter struct {
	ID         string          `json:"id"`
	Device     string          `json:"device"`
	Seq        int64           `json:"seq"`
	Payload    json.RawMessage `json:"payload"`
	LastStatus int             `json:"last_status"`
	LastError  string          `json:"last_error"`
	Attempts   int64           `json:"attempts"`
	By         string          `json:"by"`
	Reason     string          `json:"reason"`
	At         *time.Time      `json:"at"`
	// BlockedSince is when the device was blocked on this config.
	BlockedSince *time.Time `json:"blocked_since"`
}

// DeadLetterPage is one page of GET /api/v1/pools/{pool}/dead-letters,
// oldest first; Next is the cursor (after=) of the next page.
type DeadLetterPage struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	Total       int64        `json:"total"`
	Next        string       `json:"next,omitempty"`
}

// ListDeadLetters lists up to limit dead letters after the entry ID after
// ("" from the first).
func ListDeadLetters(ctx context.Context, c redis.UniversalClient, k Keys, after string, limit int64) (DeadLetterPage, error) {
	page := DeadLetterPage{DeadLetters: []DeadLetter{}}
	start := "-"
	if after != "" {
		start = "(" + after
	}
	msgs, err := c.XRangeN(ctx, k.Dead(), start, "+", limit+1).Result()
	if err != nil {
		if after != "" && isBadID(err) {
			return page, fmt.Errorf("%w: after %q is not a dead-letter id", ErrBadInput, after)
		}
		return page, fmt.Errorf("dead letters of pool %s: %w", k.Pool(), err)
	}
	if page.Total, err = c.XLen(ctx, k.Dead()).Result(); err != nil {
		return page, fmt.Errorf("dead letters of pool %s: %w", k.Pool(), err)
	}
	if int64(len(msgs)) > limit {
		msgs = msgs[:limit]
		page.Next = msgs[len(msgs)-1].ID
	}
	for _, m := range msgs {
		v := func(f string) string { return asString(m.Values[f]) }
		d := DeadLetter{ID: m.ID, Device: v("device"), LastError: v("last_error"), By: v("by"), Reason: v("reason")}
		d.Seq, _ = strconv.ParseInt(v("seq"), 10, 64)
		d.LastStatus, _ = strconv.Atoi(v("last_status"))
		d.Attempts, _ = strconv.ParseInt(v("attempts"), 10, 64)
		at, _ := strconv.ParseFloat(v("at_ms"), 64)
		bs, _ := strconv.ParseFloat(v("blocked_since_ms"), 64)
		d.At, d.BlockedSince = msTime(at), msTime(bs)
		if p := v("payload"); json.Valid([]byte(p)) {
			d.Payload = json.RawMessage(p)
		} else {
			d.Payload, _ = json.Marshal(p)
		}
		page.DeadLetters = append(page.DeadLetters, d)
	}
	return page, nil
}

func isBadID(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "invalid stream id")
}

// Errors of Retry and Skip.
var (
	// ErrNotBlocked: the device is not blocked (ok, or still retrying).
	ErrNotBlocked = errors.New("device is not blocked")
)

// ActionResult is the answer to a retry or skip.
type ActionResult struct {
	Pool   string `json:"pool"`
	Device string `json:"device"`
	Action string `json:"action"`
	Seq    int64  `json:"seq"`
	By     string `json:"by"`
	Reason string `json:"reason"`
	// DeadLetter is the skipped config's dead-letter id.
	DeadLetter string `json:"dead_letter,omitempty"`
}

// RetryDevice unblocks a blocked device; the active agent pushes its head
// config again at once.
func RetryDevice(ctx context.Context, c redis.UniversalClient, k Keys, device, by, reason string) (ActionResult, error) {
	res, err := retryScript.Run(ctx, c, []string{k.Ctl(), k.Dev(), k.Retrying(), k.Blocked(), k.Held(), k.Actions()},
		device, by, reason, MaxActions).Slice()
	if err != nil {
		return ActionResult{}, fmt.Errorf("retry %s in pool %s: %w", device, k.Pool(), err)
	}
	return actionResult(k, device, "retry", by, reason, res)
}

// SkipDevice moves a blocked device's head config to the pool's dead
// letters and lets its next config through.
func SkipDevice(ctx context.Context, c redis.UniversalClient, k Keys, device, by, reason string) (ActionResult, error) {
	res, err := skipScript.Run(ctx, c, []string{k.Ctl(), k.Ack(), k.Dev(), k.Retrying(), k.Blocked(), k.Held(), k.Dead(), k.Actions()},
		device, by, reason, MaxActions).Slice()
	if err != nil {
		return ActionResult{}, fmt.Errorf("skip %s in pool %s: %w", device, k.Pool(), err)
	}
	return actionResult(k, device, "skip", by, reason, res)
}

func actionResult(k Keys, device, action, by, reason string, res []any) (ActionResult, error) {
	r := ActionResult{Pool: k.Pool(), Device: device, Action: action, By: by, Reason: reason}
	if len(res) < 2 {
		return r, fmt.Errorf("%s script: unexpected answer %v", action, res)
	}
	r.Seq = asInt(res[1])
	if len(res) > 2 {
		r.DeadLetter = asString(res[2])
	}
	switch status := asString(res[0]); status {
	case "ok":
		return r, nil
	case "ok-state":
		return r, fmt.Errorf("%w: %q is ok (nothing failing)", ErrNotBlocked, device)
	case "stale":
		return r, fmt.Errorf("%w: %q's blocked config %d is no longer its next", ErrNotBlocked, device, r.Seq)
	default:
		return r, fmt.Errorf("%w: %q is %s (seq %d)", ErrNotBlocked, device, status, r.Seq)
	}
}
