package runbooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/internal/keys"
)

// MemoryLocker is a Locker for one process (`medic run`, tests): leases
// live in a map and are always released by the run that took them, so no
// TTL is needed.
type MemoryLocker struct {
	mu   sync.Mutex
	held map[string]bool
}

// NewMemoryLocker returns an empty in-process locker.
func NewMemoryLocker() *MemoryLocker { return &MemoryLocker{held: map[string]bool{}} }

var _ Locker = (*MemoryLocker)(nil)

// TryLock implements Locker.
func (m *MemoryLocker) TryLock(_ context.Context, key string, _ time.Duration) (func(), bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held[key] {
		return nil, false, nil
	}
	m.held[key] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.held, key)
			m.mu.Unlock()
		})
	}, true, nil
}

// The lease value names its holder, RUN/INCARNATION (see LeaseValue);
// only its holder may renew or release it, so a run that outlived its TTL
// cannot release a successor's lease.
var (
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`)
	// acquireScript: KEYS lease; ARGV value, ttl ms. SET NX that finds its
	// own value (go-redis retrying after a lost reply) acquired too.
	// Returns {1, ""} taken, {1, value} already ours, {0, holder} held.
	acquireScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if not v then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return {1, ""}
end
if v == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return {1, v}
end
return {0, v}`)
	// takeoverScript: KEYS lease; ARGV expected holder, value, ttl ms.
	// Compare-and-set: the lease changes hands only if the holder judged
	// stale still has it.
	takeoverScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v ~= ARGV[1] and v ~= false then return 0 end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
return 1`)
)

// LeaseHolder is who holds a lease: one run of one node incarnation (a
// fresh id per `medic node`/`medic serve` process start). Incarnation is
// empty for holders that have none (tests, leases taken by older medic).
type LeaseHolder struct {
	Run         string
	Incarnation string
}

// LeaseValue is the value of a lease key: RUN/INCARNATION. A run id
// never contains "/" (the bridge checks ids it takes from a URL).
func (h LeaseHolder) String() string { return h.Run + "/" + h.Incarnation }

// ParseLeaseValue reads a lease value; a value without "/" (a random token
// of an older medic) is a holder with no run id and no incarnation, never
// provably gone.
func ParseLeaseValue(v string) LeaseHolder {
	i := strings.LastIndexByte(v, '/')
	if i < 0 {
		return LeaseHolder{}
	}
	return LeaseHolder{Run: v[:i], Incarnation: v[i+1:]}
}

// NewIncarnation returns a fresh node incarnation id.
func NewIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// IncarnationKey is where node publishes its current incarnation:
// PREFIX{node:NODE}:incarnation, in the node's hash tag beside its job
// stream.
func IncarnationKey(prefix, node string) string {
	return keys.Incarnation(keys.Prefix(prefix), node)
}

// Ways a RunLocker acquired a lease (Lease.How).
const (
	LeaseFree        = ""            // nobody held it
	LeaseOwn         = "own"         // it already held our value: a retried SET after a lost reply
	LeasePredecessor = "predecessor" // a previous attempt of the same run (its node restarted)
	LeaseRestarted   = "restarted"   // another run of an earlier incarnation of the node: the process is gone
	LeaseOrphaned    = "orphaned"    // another run of this incarnation that is no longer running (its release was lost)
)

// Lease is the outcome of RunLocker.Acquire.
type Lease struct {
	// Release gives the lease back; nil when it was not acquired.
	Release func()
	// Holder is who holds the lease when it was not acquired, or the
	// previous holder it was taken over from.
	Holder LeaseHolder
	// How says how it was acquired (LeaseFree, LeaseOwn, …).
	How string
}

// RunLocker is a Locker whose leases name their holder, so that a lease
// whose holder is provably gone is taken over at once instead of waiting
// out its TTL. live reports whether a run of this incarnation is still
// running.
type RunLocker interface {
	Acquire(ctx context.Context, key string, me LeaseHolder, ttl time.Duration, live func(run string) bool) (Lease, error)
}

// RedisLocker is a Locker shared by every process that talks to one Redis:
// the key PREFIX+KEY (medic:lease:NODE:AGENT) holds RUN/INCARNATION with a
// TTL, renewed every TTL/3 while the holder runs. A holder that dies loses
// the lease after at most one TTL, or at once when it is provably gone:
// its run is the one asking again, its node's incarnation changed, or it
// is of this incarnation and no longer running.
type RedisLocker struct {
	client      redis.UniversalClient
	prefix      string
	log         *slog.Logger
	node        string
	incarnation string

	mu        sync.Mutex
	published bool
}

var (
	_ Locker    = (*RedisLocker)(nil)
	_ RunLocker = (*RedisLocker)(nil)
)

// NewRedisLocker returns a locker over client; prefix defaults to
// keys.DefaultPrefix.
func NewRedisLocker(client redis.UniversalClient, prefix string) *RedisLocker {
	if prefix == "" {
		prefix = keys.DefaultPrefix
	}
	return &RedisLocker{client: client, prefix: prefix, log: slog.New(slog.DiscardHandler)}
}

// WithLogger makes the locker log lost leases to l.
func (l *RedisLocker) WithLogger(log *slog.Logger) *RedisLocker {
	l.log = log
	return l
}

// WithIncarnation makes the locker the one of node's incarnation inc: it
// publishes inc at IncarnationKey (Publish, and before any lease it takes)
// and judges leases of other incarnations of node by it.
func (l *RedisLocker) WithIncarnation(node, inc string) *RedisLocker {
	l.node, l.incarnation = node, inc
	return l
}

// Incarnation is the locker's node incarnation ("" without one).
func (l *RedisLocker) Incarnation() string { return l.incarnation }

// Publish writes the node's incarnation to Redis, once; later calls after
// a success do nothing.
func (l *RedisLocker) Publish(ctx context.Context) error {
	if l.node == "" || l.incarnation == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.published {
		return nil
	}
	if err := l.client.Set(ctx, IncarnationKey(l.prefix, l.node), l.incarnation, 0).Err(); err != nil {
		return err
	}
	l.published = true
	return nil
}

// TryLock implements Locker: a lease held by a holder with no run id.
func (l *RedisLocker) TryLock(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	lease, err := l.Acquire(ctx, key, LeaseHolder{Run: hex.EncodeToString(b[:]), Incarnation: l.incarnation}, ttl, nil)
	return lease.Release, lease.Release != nil, err
}

// Acquire implements RunLocker.
func (l *RedisLocker) Acquire(ctx context.Context, key string, me LeaseHolder, ttl time.Duration, live func(string) bool) (Lease, error) {
	if ttl < 3*time.Millisecond {
		ttl = 3 * time.Millisecond
	}
	if err := l.Publish(ctx); err != nil {
		return Lease{}, err
	}
	full := l.prefix + key
	value := me.String()
	res, err := acquireScript.Run(ctx, l.client, []string{full}, value, ttl.Milliseconds()).Slice()
	if err != nil {
		return Lease{}, err
	}
	if len(res) != 2 {
		return Lease{}, fmt.Errorf("lease script answered %v", res)
	}
	ok, _ := res[0].(int64)
	cur, _ := res[1].(string)
	var how string
	holder := ParseLeaseValue(cur)
	switch {
	case ok == 1 && cur == "":
		how = LeaseFree
	case ok == 1:
		how = LeaseOwn
	default:
		how, err = l.stale(ctx, me, holder, live)
		if err != nil {
			return Lease{Holder: holder}, err
		}
		if how == "" {
			return Lease{Holder: holder}, nil
		}
		n, err := takeoverScript.Run(ctx, l.client, []string{full}, cur, value, ttl.Milliseconds()).Int()
		if err != nil {
			return Lease{Holder: holder}, err
		}
		if n == 0 {
			// Someone else got it between the two scripts.
			return Lease{Holder: holder}, nil
		}
		l.log.Warn("lease taken over from a holder that is gone", "key", full, "holder", cur, "why", how)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go l.renew(full, value, ttl, stop, done)
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			<-done
			l.release(full, value, ttl)
		})
	}
	return Lease{Release: release, Holder: holder, How: how}, nil
}

// stale judges whether holder, who has the lease me wants, is provably
// gone; it returns how the lease may be taken over, or "".
func (l *RedisLocker) stale(ctx context.Context, me, holder LeaseHolder, live func(string) bool) (string, error) {
	if holder.Run == "" || holder.Incarnation == "" {
		return "", nil // an older medic's token: its TTL decides
	}
	if holder.Incarnation == me.Incarnation {
		if me.Incarnation != "" && live != nil && !live(holder.Run) {
			// Ours, and its run has ended: its release was lost.
			return LeaseOrphaned, nil
		}
		return "", nil
	}
	// Of another incarnation: gone unless it is the node's current one
	// (a second live process under the same node name).
	cur := ""
	if l.node != "" {
		v, err := l.client.Get(ctx, IncarnationKey(l.prefix, l.node)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return "", err
		}
		cur = v
	}
	switch {
	case cur == holder.Incarnation:
		return "", nil
	case holder.Run == me.Run:
		// The same job, delivered again after its node stopped: its
		// previous attempt is what holds the lease.
		return LeasePredecessor, nil
	case cur != "" && me.Incarnation != "":
		return LeaseRestarted, nil
	}
	return "", nil
}

// release deletes the lease if it still holds value. A release that fails
// (Redis restarting) is retried in the background until Redis answers or
// the lease has expired by itself: a key left in the AOF would otherwise
// hold the agent for a whole TTL after Redis came back.
func (l *RedisLocker) release(key, value string, ttl time.Duration) {
	try := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return releaseScript.Run(ctx, l.client, []string{key}, value).Err()
	}
	err := try()
	if err == nil {
		return
	}
	l.log.Warn("lease release failed; retrying until Redis answers", "key", key, "err", err)
	go func() {
		deadline := time.Now().Add(ttl)
		wait := 50 * time.Millisecond
		for time.Now().Before(deadline) {
			time.Sleep(wait)
			wait = min(2*wait, 2*time.Second)
			if err := try(); err == nil {
				l.log.Info("lease released after Redis came back", "key", key)
				return
			}
		}
	}()
}
func (l *RedisLocker) renew(key, token string, ttl time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	controls.KeepAlive(ttl, stop, done, func(ctx context.Context) (bool, error) {
		n, err := renewScript.Run(ctx, l.client, []string{key}, token, ttl.Milliseconds()).Int()
		return n != 0, err
	}, func(err error) {
		// Redis is unreachable for now; keep trying until the TTL decides.
		l.log.Warn("lease renewal failed", "key", key, "err", err)
	}, func() {
		l.log.Warn("lease lost: it expired or was taken over", "key", key)
	})
}

// LeaseKey is the lease of one agent on one node, without the Redis prefix
// (the Redis locker adds it: medic:lease:NODE:AGENT).
func LeaseKey(node, agent string) string { return keys.LeaseName(node, agent) }

// lease takes the agent's lease: first in this process (the watchdog and
// the job consumer share the engine), then in Options.Locker (other
// processes). false means the run is over. When the shared locker fails
// (Redis down) the run goes on under the in-process lease: a node must
// still be able to restart its own crashed agents without Redis.
//
// A shared lease whose holder is provably gone — this run's own earlier
// attempt, a run of an earlier incarnation of the node, a run of this
// process that has ended — is taken over (RunLocker). One held by a live
// run ends this run skipped, naming the holder (RunRecord.HeldBy), so the
// job consumer can try the episode again once the holder is done.
func (r *run) lease() bool {
	e := r.e
	key := LeaseKey(e.opts.Node, r.rec.Agent)
	held := fmt.Sprintf("another run holds the lease of agent %s on node %s", r.rec.Agent, e.opts.Node)
	// The in-process lease: the holder's run id under one lock, so a run
	// refused always learns who holds the agent.
	e.liveMu.Lock()
	holder, busy := e.holders[key]
	if !busy {
		e.holders[key] = r.rec.ID
	}
	e.liveMu.Unlock()
	if busy {
		r.rec.HeldBy = holder
		r.finish(OutcomeSkipped, fmt.Sprintf("run %s holds the lease of agent %s on node %s and is still running", holder, r.rec.Agent, e.opts.Node))
		return false
	}
	var once sync.Once
	r.releases = append(r.releases, func() {
		once.Do(func() {
			e.liveMu.Lock()
			delete(e.holders, key)
			e.liveMu.Unlock()
		})
	})
	if e.opts.Locker == nil {
		return true
	}
	s := r.step("lease")
	var lease Lease
	var err error
	if rl, isRL := e.opts.Locker.(RunLocker); isRL {
		me := LeaseHolder{Run: r.rec.ID, Incarnation: e.opts.Incarnation}
		lease, err = rl.Acquire(r.ctx, key, me, e.opts.LeaseTTL, e.Live)
	} else {
		var ok bool
		lease.Release, ok, err = e.opts.Locker.TryLock(r.ctx, key, e.opts.LeaseTTL)
		if !ok {
			lease.Release = nil
		}
	}
	switch {
	case err != nil:
		r.done(s, false, "shared lease unavailable; going on under this process's lease only", err)
		r.log.Warn("shared lease unavailable; going on under this process's lease only", "key", key, "err", err)
	case lease.Release == nil:
		r.releaseLease()
		if lease.Holder.Run != "" {
			r.rec.HeldBy = lease.Holder.Run
			held = fmt.Sprintf("run %s holds the lease of agent %s on node %s and is still running", lease.Holder.Run, r.rec.Agent, e.opts.Node)
		}
		r.done(s, false, held, nil)
		r.finish(OutcomeSkipped, held)
		return false
	default:
		r.releases = append(r.releases, lease.Release)
		switch lease.How {
		case LeaseOwn:
			r.done(s, true, "lease already ours (a retried request whose answer was lost)", nil)
		case LeasePredecessor:
			r.done(s, true, fmt.Sprintf("took over the lease from this run's previous attempt (incarnation %s): its node stopped", lease.Holder.Incarnation), nil)
		case LeaseRestarted:
			r.done(s, true, fmt.Sprintf("took over the lease from run %s of an earlier incarnation of node %s: that process is gone", lease.Holder.Run, e.opts.Node), nil)
		case LeaseOrphaned:
			r.done(s, true, fmt.Sprintf("took over the lease run %s left behind (it ended while Redis was unreachable)", lease.Holder.Run), nil)
		}
	}
	return true
}

func (r *run) releaseLease() {
	for i := len(r.releases) - 1; i >= 0; i-- {
		r.releases[i]()
	}
	r.releases = nil
}
