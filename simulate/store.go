package simulate

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/runbooks"
)

// Store is runbooks.ControlStore in virtual time: what the Lua scripts of
// package controls keep in Redis, kept in memory, with every slot and
// lease an interval of virtual time. Runs are simulated one after the
// other in the order they start, each to its end; a run that started
// earlier has therefore already recorded when it took and gave back its
// slots, and a later run sees them held exactly while they overlap.
type Store struct {
	clock *Clock
	// policy answers what the world decides: pauses and approvals.
	policy func() policy

	mu       sync.Mutex
	budgets  map[string][]time.Time
	backoff  map[string]*streak
	circuits map[string][]time.Time
	slots    map[string]*intervals
	waits    map[string]*intervals
	pending  map[string]time.Time
}

type policy struct {
	paused   bool
	approval string // approve, reject, none (expires at the deadline), pending (stops at once)
}

type streak struct {
	n    int
	last time.Time
}

var _ runbooks.ControlStore = (*Store)(nil)

func newStore(c *Clock, p func() policy) *Store {
	return &Store{
		clock: c, policy: p,
		budgets: map[string][]time.Time{}, backoff: map[string]*streak{}, circuits: map[string][]time.Time{},
		slots: map[string]*intervals{}, waits: map[string]*intervals{}, pending: map[string]time.Time{},
	}
}

// Paused implements runbooks.ControlStore: the world's `paused`.
func (s *Store) Paused(_ context.Context, runbook string, now time.Time) (*controls.Pause, error) {
	if !s.policy().paused {
		return nil, nil
	}
	return &controls.Pause{Runbook: runbook, Since: now, By: "the simulated world"}, nil
}

// budgetKeep is controls' budgetKeep.
const budgetKeep = 24 * time.Hour

// TakeRestart implements runbooks.ControlStore (controls' takeScript).
func (s *Store) TakeRestart(_ context.Context, node, agent string, limit int, window time.Duration, b controls.Backoff, now time.Time, _ string) (time.Duration, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := node + "/" + agent
	keep := max(budgetKeep, window)
	var kept []time.Time
	n := 0
	for _, t := range s.budgets[key] {
		if t.After(now.Add(-keep)) {
			kept = append(kept, t)
			if t.After(now.Add(-window)) {
				n++
			}
		}
	}
	s.budgets[key] = kept
	if n >= limit {
		return 0, fmt.Sprintf("restart budget exhausted: %d in %s", n, controls.ShortDuration(window)), nil
	}
	reset := b.Reset
	if reset <= 0 {
		reset = window
	}
	st := s.backoff[key]
	if st == nil {
		st = &streak{}
		s.backoff[key] = st
	}
	if b.Base < 0 || st.last.IsZero() || now.Sub(st.last) >= reset {
		st.n = 0
	}
	var wait time.Duration
	if st.n > 0 {
		d := b.Base
		for i := 2; i <= st.n; i++ {
			d *= 2
			if d >= b.Max {
				break
			}
		}
		d = min(d, b.Max)
		wait = max(st.last.Add(d).Sub(now), 0)
	}
	at := now.Add(wait)
	s.budgets[key] = append(kept, at)
	st.n++
	st.last = at
	return wait, "", nil
}

// Circuit implements runbooks.ControlStore (controls' circuitScript).
func (s *Store) Circuit(_ context.Context, node, agent string, maxRuns int, window time.Duration, now time.Time, _ string) (bool, time.Time, error) {
	open, until := s.circuit(node+"/"+agent, maxRuns, window, now, true)
	return open, until, nil
}

// CircuitPeek implements runbooks.ControlStore.
func (s *Store) CircuitPeek(_ context.Context, node, agent string, maxRuns int, window time.Duration, now time.Time) (bool, time.Time, error) {
	open, until := s.circuit(node+"/"+agent, maxRuns, window, now, false)
	return open, until, nil
}

func (s *Store) circuit(key string, maxRuns int, window time.Duration, now time.Time, count bool) (bool, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept []time.Time
	for _, t := range s.circuits[key] {
		if t.After(now.Add(-window)) {
			kept = append(kept, t)
		}
	}
	if n := len(kept); n >= maxRuns {
		s.circuits[key] = kept
		return true, kept[n-maxRuns].Add(window)
	}
	if count {
		kept = append(kept, now)
		sort.Slice(kept, func(i, j int) bool { return kept[i].Before(kept[j]) })
	}
	s.circuits[key] = kept
	return false, time.Time{}
}

// Ask implements runbooks.ControlStore (controls' askScript): a run
// asked again keeps its first deadline.
func (s *Store) Ask(_ context.Context, runID string, deadline, _ time.Time) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if first, ok := s.pending[runID]; ok {
		return first, true, nil
	}
	s.pending[runID] = deadline
	return deadline, false, nil
}

// WaitDecision implements runbooks.ControlStore: the world's `approval`.
// With "none" nobody decides and virtual time runs to the deadline.
func (s *Store) WaitDecision(_ context.Context, runID string, _ time.Duration) (*controls.Decision, error) {
	s.mu.Lock()
	deadline := s.pending[runID]
	delete(s.pending, runID)
	s.mu.Unlock()
	switch s.policy().approval {
	case "approve", "":
		return &controls.Decision{RunID: runID, Approve: true, By: "the simulated operator", At: s.clock.Now()}, nil
	case "reject":
		return &controls.Decision{RunID: runID, Approve: false, By: "the simulated operator", At: s.clock.Now()}, nil
	case "none":
		if deadline.After(s.clock.Now()) {
			s.clock.Set(deadline)
		}
	}
	return nil, context.DeadlineExceeded
}

// Withdraw implements runbooks.ControlStore.
func (s *Store) Withdraw(_ context.Context, runID string) (*controls.Decision, error) {
	s.mu.Lock()
	delete(s.pending, runID)
	s.mu.Unlock()
	return nil, nil
}

// Acquire implements runbooks.ControlStore (controls' acquireScript and
// its waiting loop) in virtual time: a run that finds every slot taken
// waits, if its wait and queue allow, until the first moment a slot is
// free, and virtual time moves there.
func (s *Store) Acquire(_ context.Context, l controls.Limit, runID string, _ func() time.Time, _ *slog.Logger) (*controls.Slot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := l.Runbook + "\x00" + l.Key
	slots := s.slots[key]
	if slots == nil {
		slots = &intervals{}
		s.slots[key] = slots
	}
	waits := s.waits[key]
	if waits == nil {
		waits = &intervals{}
		s.waits[key] = waits
	}
	t := s.clock.Now()
	take := func(at time.Time) *controls.Slot {
		i := slots.open(at)
		return controls.NewSlot(at.Sub(t), func() { s.mu.Lock(); slots.close(i, s.clock.Now()); s.mu.Unlock() })
	}
	if slots.at(t) < l.Max {
		return take(t), nil
	}
	if l.Wait <= 0 {
		return nil, fmt.Errorf("%w (no wait configured)", controls.ErrWaitTimeout)
	}
	if waits.at(t) >= l.Queue {
		return nil, controls.ErrQueueFull
	}
	end := t.Add(l.Wait)
	for _, c := range slots.endsWithin(t, end) {
		if slots.at(c) < l.Max {
			waits.add(t, c)
			s.clock.Set(c)
			return take(c), nil
		}
	}
	waits.add(t, end)
	s.clock.Set(end)
	return nil, controls.ErrWaitTimeout
}

// intervals are holds of a slot or a lease in virtual time; an open one
// (its run still going) has no end yet.
type intervals struct{ iv []interval }

type interval struct {
	from, to time.Time
	open     bool
}

func (v *intervals) open(from time.Time) int {
	v.iv = append(v.iv, interval{from: from, open: true})
	return len(v.iv) - 1
}

func (v *intervals) close(i int, to time.Time) {
	v.iv[i].open = false
	if to.Before(v.iv[i].from) {
		to = v.iv[i].from
	}
	v.iv[i].to = to
}

func (v *intervals) add(from, to time.Time) { v.iv = append(v.iv, interval{from: from, to: to}) }

// at counts the holds at t.
func (v *intervals) at(t time.Time) int {
	n := 0
	for _, h := range v.iv {
		if !h.from.After(t) && (h.open || t.Before(h.to)) {
			n++
		}
	}
	return n
}

// endsWithin lists, in order, the ends of holds within (from, to].
func (v *intervals) endsWithin(from, to time.Time) []time.Time {
	var out []time.Time
	for _, h := range v.iv {
		if !h.open && h.to.After(from) && !h.to.After(to) {
			out = append(out, h.to)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// Locker is runbooks.Locker in virtual time: the lease medic:lease:NODE:AGENT
// is held from the run's start to its end, and a run starting meanwhile
// is skipped, as with Redis.
type Locker struct {
	clock *Clock
	mu    sync.Mutex
	held  map[string]*intervals
}

var _ runbooks.Locker = (*Locker)(nil)

func newLocker(c *Clock) *Locker { return &Locker{clock: c, held: map[string]*intervals{}} }

// TryLock implements runbooks.Locker.
func (l *Locker) TryLock(_ context.Context, key string, _ time.Duration) (func(), bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	iv := l.held[key]
	if iv == nil {
		iv = &intervals{}
		l.held[key] = iv
	}
	t := l.clock.Now()
	if iv.at(t) > 0 {
		return nil, false, nil
	}
	i := iv.open(t)
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			iv.close(i, l.clock.Now())
			l.mu.Unlock()
		})
	}, true, nil
}
