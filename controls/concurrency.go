package controls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/keys"
)

// Errors of Acquire.
var (
	// ErrQueueFull: every slot is taken and the waiting queue is full.
	ErrQueueFull = errors.New("concurrency limit reached and the waiting queue is full")
	// ErrWaitTimeout: the run waited its whole wait without getting a slot.
	ErrWaitTimeout = errors.New("concurrency limit reached and no slot freed within the wait")
)

// Limit is a fleet-wide concurrency limit of one runbook for one key value.
type Limit struct {
	Runbook string
	Key     string // the value of the runbook's concurrency key, e.g. a cluster name
	Max     int    // slots; <= 0 means none is free
	// Wait bounds how long a run waits for a slot; 0 means it does not.
	Wait time.Duration
	// Queue bounds how many runs may wait at once.
	Queue int
	// LeaseTTL is the lifetime of a slot (and of a place in the queue)
	// unless renewed; a crashed holder's slot frees after at most this.
	LeaseTTL time.Duration
	// Poll is how often a waiting run tries again; default LeaseTTL/4
	// capped to 1s.
	Poll time.Duration
	// Queued, when set, is called once, when the run first has to wait
	// in the queue (the job consumer gives its execution slot back then).
	Queued func()
}

// acquireScript: KEYS conc, queue, qlease; ARGV id, now, ttl, max,
// queue max, may-wait (1/0). Returns 1 (slot taken), 0 (waiting, in the
// queue), -1 (queue full). Waiters are served first come, first served: a
// run gets a free slot only if fewer waiters queued before it than there
// are free slots.
var acquireScript = redis.NewScript(`
local id, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max, qmax, maywait = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == "1"
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
local gone = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", now)
for _, w in ipairs(gone) do
  redis.call("ZREM", KEYS[2], w)
  redis.call("ZREM", KEYS[3], w)
end
if redis.call("ZSCORE", KEYS[1], id) then
  redis.call("ZADD", KEYS[1], now + ttl, id)
  redis.call("PEXPIRE", KEYS[1], ttl)
  return 1
end
local free = max - redis.call("ZCARD", KEYS[1])
local rank = redis.call("ZRANK", KEYS[2], id)
local ahead = rank
if not rank then ahead = redis.call("ZCARD", KEYS[2]) end
if free > 0 and ahead < free then
  redis.call("ZADD", KEYS[1], now + ttl, id)
  redis.call("PEXPIRE", KEYS[1], ttl)
  redis.call("ZREM", KEYS[2], id)
  redis.call("ZREM", KEYS[3], id)
  return 1
end
if not maywait then return -1 end
if not rank then
  if redis.call("ZCARD", KEYS[2]) >= qmax then return -1 end
  redis.call("ZADD", KEYS[2], now, id)
end
redis.call("ZADD", KEYS[3], now + ttl, id)
redis.call("PEXPIRE", KEYS[2], ttl)
redis.call("PEXPIRE", KEYS[3], ttl)
return 0`)

// renewSlotScript: KEYS conc; ARGV id, now, ttl. 1 if still held.
var renewSlotScript = redis.NewScript(`
if not redis.call("ZSCORE", KEYS[1], ARGV[1]) then return 0 end
redis.call("ZADD", KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return 1`)

// leaveScript: KEYS conc, queue, qlease; ARGV id.
var leaveScript = redis.NewScript(`
redis.call("ZREM", KEYS[1], ARGV[1])
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
return 1`)

func (s *Store) concKeys(l Limit) []string {
	return []string{keys.Conc(s.prefix, l.Runbook, l.Key), keys.Queue(s.prefix, l.Runbook, l.Key), keys.QLease(s.prefix, l.Runbook, l.Key)}
}

// Slot is a held concurrency slot, renewed in the background until
// Release.
type Slot struct {
	// Waited is how long the run queued before it got the slot.
	Waited time.Duration

	release func()
}

// Release gives the slot back; safe to call twice.
func (s *Slot) Release() { s.release() }

// Acquire takes a slot of l for runID, waiting in the queue up to l.Wait.
// It fails with ErrQueueFull or ErrWaitTimeout when the limit holds, with
// ctx's error when ctx ends. now is the clock; log gets lost leases.
func (s *Store) Acquire(ctx context.Context, l Limit, runID string, now func() time.Time, log *slog.Logger) (*Slot, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if l.LeaseTTL < 30*time.Millisecond {
		l.LeaseTTL = 30 * time.Millisecond
	}
	poll := l.Poll
	if poll <= 0 {
		poll = min(l.LeaseTTL/4, time.Second)
	}
	keys := s.concKeys(l)
	start := now()
	deadline := start.Add(l.Wait)
	queued := false
	for {
		t := now()
		maywait := "0"
		if t.Before(deadline) {
			maywait = "1"
		}
		res, err := acquireScript.Run(ctx, s.client, keys, runID, ms(t), l.LeaseTTL.Milliseconds(), l.Max, l.Queue, maywait).Int()
		if err != nil {
			s.leave(keys, runID)
			return nil, err
		}
		switch res {
		case 1:
			return s.hold(keys, runID, l.LeaseTTL, now, log, now().Sub(start)), nil
		case -1:
			s.leave(keys, runID)
			if maywait == "1" {
				return nil, ErrQueueFull
			}
			if l.Wait <= 0 {
				return nil, fmt.Errorf("%w (no wait configured)", ErrWaitTimeout)
			}
			return nil, ErrWaitTimeout
		}
		if !queued && l.Queued != nil {
			queued = true
			l.Queued()
		}
		timer := time.NewTimer(min(poll, max(deadline.Sub(now()), time.Millisecond)))
		select {
		case <-ctx.Done():
			timer.Stop()
			s.leave(keys, runID)
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func (s *Store) leave(keys []string, runID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Best effort: an entry left behind expires with its lease.
	_ = leaveScript.Run(ctx, s.client, keys, runID).Err()
}

func (s *Store) hold(keys []string, runID string, ttl time.Duration, now func() time.Time, log *slog.Logger, waited time.Duration) *Slot {
	stop := make(chan struct{})
	done := make(chan struct{})
	go KeepAlive(ttl, stop, done, func(ctx context.Context) (bool, error) {
		n, err := renewSlotScript.Run(ctx, s.client, keys[:1], runID, ms(now()), ttl.Milliseconds()).Int()
		return n != 0, err
	}, func(err error) {
		log.Warn("concurrency slot renewal failed", "key", keys[0], "run", runID, "err", err)
	}, func() {
		// The run goes on: stopping a half-done repair is worse than one
		// run over the limit.
		log.Warn("concurrency slot lost: it expired before renewal", "key", keys[0], "run", runID)
	})
	var once sync.Once
	return &Slot{Waited: waited, release: func() {
		once.Do(func() {
			close(stop)
			<-done
			s.leave(keys, runID)
		})
	}}
}

// KeepAlive renews a lease every ttl/3 until stop closes or renew says
// the lease is gone (lost is called), and closes done when it returns. An
// error (Redis unreachable for now) is reported to failed and retried:
// the TTL decides.
func KeepAlive(ttl time.Duration, stop <-chan struct{}, done chan<- struct{}, renew func(context.Context) (bool, error), failed func(error), lost func()) {
	defer close(done)
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
		held, err := renew(ctx)
		cancel()
		switch {
		case err != nil:
			failed(err)
		case !held:
			lost()
			return
		}
	}
}

// InUse is the number of slots of l held at now (for tests and the status
// page).
func (s *Store) InUse(ctx context.Context, l Limit, now time.Time) (int, error) {
	n, err := s.client.ZCount(ctx, keys.Conc(s.prefix, l.Runbook, l.Key), fmt.Sprintf("(%d", ms(now)), "+inf").Result()
	return int(n), err
}
