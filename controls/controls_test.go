package controls

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/internal/redistest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	return New(redistest.Start(t, redistest.Options{}).Client(), "")
}

func TestPause(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	if p, err := s.Paused(ctx, "rb", now); err != nil || p != nil {
		t.Fatalf("Paused on empty store = %v, %v", p, err)
	}
	if err := s.Pause(ctx, Pause{Runbook: "rb", Since: now, Until: now.Add(time.Minute), By: "alice", Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	p, err := s.Paused(ctx, "rb", now)
	if err != nil || p == nil || p.By != "alice" || p.Runbook != "rb" {
		t.Fatalf("Paused(rb) = %+v, %v", p, err)
	}
	if p, _ := s.Paused(ctx, "other", now); p != nil {
		t.Fatalf("Paused(other) = %+v, want nil", p)
	}
	// Expired: dropped.
	if p, _ := s.Paused(ctx, "rb", now.Add(2*time.Minute)); p != nil {
		t.Fatalf("expired pause still active: %+v", p)
	}
	if n, _ := s.client.HLen(ctx, keys.Pause(s.prefix)).Result(); n != 0 {
		t.Fatalf("expired pause not deleted, %d fields", n)
	}
	// Global pause covers every runbook; Resume("") lifts only it.
	if err := s.Pause(ctx, Pause{Since: now, By: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(ctx, Pause{Runbook: "rb", Since: now}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Paused(ctx, "other", now); p == nil || p.Runbook != "" || p.By != "bob" {
		t.Fatalf("global pause not seen by other: %+v", p)
	}
	ps, err := s.Pauses(ctx, now)
	if err != nil || len(ps) != 2 || ps[0].Runbook != "" || ps[1].Runbook != "rb" {
		t.Fatalf("Pauses = %+v, %v", ps, err)
	}
	if ok, err := s.Resume(ctx, ""); !ok || err != nil {
		t.Fatalf("Resume(\"\") = %v, %v", ok, err)
	}
	if ok, _ := s.Resume(ctx, ""); ok {
		t.Fatal("second Resume reported a pause")
	}
	if p, _ := s.Paused(ctx, "rb", now); p == nil || p.Runbook != "rb" {
		t.Fatalf("runbook pause lifted by global resume: %+v", p)
	}
	if p, _ := s.Paused(ctx, "other", now); p != nil {
		t.Fatalf("other still paused: %+v", p)
	}
}

func TestPausedCollector(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.Pause(ctx, Pause{Runbook: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(ctx, Pause{Runbook: "not-configured"}); err != nil {
		t.Fatal(err)
	}
	c := NewPausedCollector(s, func() []string { return []string{"a", "b"} }, nil)
	want := `
# HELP medic_paused Whether new runs of a runbook are paused (1) or not (0), by its own pause or the global one; runbook="*" is the global pause.
# TYPE medic_paused gauge
medic_paused{runbook="*"} 0
medic_paused{runbook="a"} 1
medic_paused{runbook="b"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "medic_paused"); err != nil {
		t.Fatal(err)
	}
	if probs, err := testutil.CollectAndLint(c); err != nil || len(probs) > 0 {
		t.Fatalf("lint: %v %v", probs, err)
	}
}

func TestDecide(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	if err := s.Decide(ctx, Decision{RunID: "nope", Approve: true}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("Decide unknown = %v", err)
	}
	for _, id := range []string{"r1", "r2", "r3"} {
		if err := s.Request(ctx, id, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := s.Pending(ctx, now)
	if err != nil || len(ids) != 3 {
		t.Fatalf("Pending = %v, %v", ids, err)
	}
	// Concurrent decisions: exactly one wins.
	var wins, decided atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Decide(ctx, Decision{RunID: "r1", Approve: i%2 == 0, By: "u", At: now})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, ErrDecided):
				decided.Add(1)
			default:
				t.Errorf("Decide: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || decided.Load() != 9 {
		t.Fatalf("wins=%d decided=%d", wins.Load(), decided.Load())
	}
	d, err := s.WaitDecision(ctx, "r1", 10*time.Millisecond)
	if err != nil || d == nil || d.RunID != "r1" || d.By != "u" {
		t.Fatalf("WaitDecision = %+v, %v", d, err)
	}
	// Withdraw without a decision: gone, later Decide is not pending.
	if d, err := s.Withdraw(ctx, "r2"); d != nil || err != nil {
		t.Fatalf("Withdraw r2 = %+v, %v", d, err)
	}
	if err := s.Decide(ctx, Decision{RunID: "r2", Approve: true}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("Decide withdrawn = %v", err)
	}
	// Past its deadline: not pending.
	if err := s.Decide(ctx, Decision{RunID: "r3", Approve: true, At: now.Add(2 * time.Minute)}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("Decide expired = %v", err)
	}
	if ids, _ := s.Pending(ctx, now); len(ids) != 0 {
		t.Fatalf("Pending after = %v", ids)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if d, err := s.WaitDecision(wctx, "r2", 10*time.Millisecond); d != nil || err == nil {
		t.Fatalf("WaitDecision with none = %+v, %v", d, err)
	}
}

func TestTakeRestartShared(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	a, b := New(srv.Client(), ""), New(srv.Client(), "")
	now := time.Now()
	bo := Backoff{Base: -1}
	for i, s := range []*Store{a, b, a} {
		wait, ex, err := s.TakeRestart(ctx, "n1", "ag", 3, time.Hour, bo, now.Add(time.Duration(i)*time.Second), "run")
		if err != nil || ex != "" || wait != 0 {
			t.Fatalf("take %d = %v %q %v", i, wait, ex, err)
		}
	}
	_, ex, err := b.TakeRestart(ctx, "n1", "ag", 3, time.Hour, bo, now.Add(3*time.Second), "run")
	if err != nil || ex != "restart budget exhausted: 3 in 1h" {
		t.Fatalf("4th take = %q, %v", ex, err)
	}
	// Another agent has its own budget; the window passes.
	if _, ex, _ := b.TakeRestart(ctx, "n1", "other", 3, time.Hour, bo, now, "run"); ex != "" {
		t.Fatalf("other agent exhausted: %q", ex)
	}
	if _, ex, _ := b.TakeRestart(ctx, "n1", "ag", 3, time.Hour, bo, now.Add(time.Hour+time.Second), "run"); ex != "" {
		t.Fatalf("after the window: %q", ex)
	}
}

func TestTakeRestartBackoff(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	bo := Backoff{Base: time.Second, Max: 3 * time.Second, Reset: time.Minute}
	var got []time.Duration
	for range 4 {
		wait, ex, err := s.TakeRestart(ctx, "n", "a", 100, time.Hour, bo, now, "r")
		if err != nil || ex != "" {
			t.Fatal(ex, err)
		}
		got = append(got, wait)
		now = now.Add(wait)
	}
	want := []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits = %v, want %v", got, want)
		}
	}
	// ResetAgent ends the streak.
	if err := s.ResetAgent(ctx, "n", "a"); err != nil {
		t.Fatal(err)
	}
	if wait, _, _ := s.TakeRestart(ctx, "n", "a", 100, time.Hour, bo, now, "r"); wait != 0 {
		t.Fatalf("wait after reset = %v", wait)
	}
}

func TestCircuit(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	for i := range 3 {
		open, _, err := s.Circuit(ctx, "n", "a", 3, time.Minute, now.Add(time.Duration(i)*time.Second), "r")
		if err != nil || open {
			t.Fatalf("run %d: open=%v err=%v", i, open, err)
		}
	}
	open, until, err := s.Circuit(ctx, "n", "a", 3, time.Minute, now.Add(5*time.Second), "r")
	if err != nil || !open || !until.Equal(time.UnixMilli(now.UnixMilli()).Add(time.Minute)) {
		t.Fatalf("4th: open=%v until=%v err=%v", open, until, err)
	}
	// Refused runs do not count: the circuit closes when the first run
	// leaves the window.
	if open, _, _ := s.Circuit(ctx, "n", "a", 3, time.Minute, now.Add(time.Minute+time.Millisecond), "r"); open {
		t.Fatal("still open after the window")
	}
	if open, _, _ := s.Circuit(ctx, "n", "a", 3, time.Minute, now.Add(time.Minute+2*time.Millisecond), "r"); !open {
		t.Fatal("not open again")
	}
	if err := s.ResetAgent(ctx, "n", "a"); err != nil {
		t.Fatal(err)
	}
	if open, _, _ := s.Circuit(ctx, "n", "a", 3, time.Minute, now.Add(time.Minute+3*time.Millisecond), "r"); open {
		t.Fatal("open after reset")
	}
}

func TestAcquire(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	nodes := []*Store{New(srv.Client(), ""), New(srv.Client(), "")}
	l := Limit{Runbook: "rb", Key: "eu1", Max: 3, Wait: 5 * time.Second, Queue: 100, LeaseTTL: 300 * time.Millisecond, Poll: 5 * time.Millisecond}
	var inUse, peak, got atomic.Int32
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slot, err := nodes[i%2].Acquire(ctx, l, "run"+string(rune('a'+i)), nil, nil)
			if err != nil {
				t.Errorf("acquire %d: %v", i, err)
				return
			}
			n := inUse.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			got.Add(1)
			time.Sleep(30 * time.Millisecond)
			inUse.Add(-1)
			slot.Release()
		}()
	}
	wg.Wait()
	if got.Load() != 12 || peak.Load() > 3 {
		t.Fatalf("got=%d peak=%d", got.Load(), peak.Load())
	}
	// Queue bound and wait bound.
	var slots []*Slot
	for i := range 3 {
		s, err := nodes[0].Acquire(ctx, l, "hold"+string(rune('a'+i)), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s)
	}
	short := l
	short.Wait = 50 * time.Millisecond
	if _, err := nodes[1].Acquire(ctx, short, "late", nil, nil); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("wait timeout = %v", err)
	}
	noq := l
	noq.Queue = 0
	if _, err := nodes[1].Acquire(ctx, noq, "late2", nil, nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("queue full = %v", err)
	}
	// Held slots stay held past their TTL while renewed.
	time.Sleep(2 * l.LeaseTTL)
	if n, _ := nodes[1].InUse(ctx, l, time.Now()); n != 3 {
		t.Fatalf("in use after renewals = %d", n)
	}
	for _, s := range slots {
		s.Release()
		s.Release()
	}
	if n, _ := nodes[1].InUse(ctx, l, time.Now()); n != 0 {
		t.Fatalf("in use after release = %d", n)
	}
}

// A crashed holder never releases nor renews: its slot frees by TTL.
func TestAcquireCrashedHolderExpires(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	l := Limit{Runbook: "rb", Key: "k", Max: 1, Wait: 2 * time.Second, Queue: 10, LeaseTTL: 200 * time.Millisecond, Poll: 10 * time.Millisecond}
	// Take the slot with the script only, as a node that then died.
	if res, err := acquireScript.Run(ctx, s.client, s.concKeys(l), "dead", ms(time.Now()), 200, 1, 10, "1").Int(); err != nil || res != 1 {
		t.Fatalf("raw acquire = %d, %v", res, err)
	}
	start := time.Now()
	slot, err := s.Acquire(ctx, l, "alive", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slot.Release()
	if w := time.Since(start); w < 100*time.Millisecond || slot.Waited <= 0 {
		t.Fatalf("got the slot after %v (waited %v): the dead lease did not hold", w, slot.Waited)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Hour: "1h", 30 * time.Minute: "30m", 90 * time.Second: "1m30s", 90 * time.Minute: "1h30m", 2*time.Hour + 5*time.Second: "2h0m5s"} {
		if got := ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// A run that asks again for approval (its node restarted while it
// waited) keeps its first deadline and its place, and finds a decision
// made meanwhile; one whose deadline passed meanwhile is not listed again.
func TestAskParksDurably(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	first := now.Add(time.Minute)
	dl, again, err := s.Ask(ctx, "r1", first, now)
	if err != nil || again || dl.UnixMilli() != first.UnixMilli() {
		t.Fatalf("first Ask = %v %v %v", dl, again, err)
	}
	// The node restarts 10s later; the run asks again.
	dl, again, err = s.Ask(ctx, "r1", now.Add(70*time.Second), now.Add(10*time.Second))
	if err != nil || !again || dl.UnixMilli() != first.UnixMilli() {
		t.Fatalf("second Ask = %v %v %v, want the first deadline", dl, again, err)
	}
	if ids, _ := s.Pending(ctx, now); len(ids) != 1 || ids[0] != "r1" {
		t.Fatalf("Pending = %v", ids)
	}
	// Decided while the node was down: asking again does not list it.
	if err := s.Decide(ctx, Decision{RunID: "r1", Approve: true, By: "alice", At: now.Add(20 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, again, err = s.Ask(ctx, "r1", now.Add(90*time.Second), now.Add(30*time.Second)); err != nil || !again {
		t.Fatalf("Ask after a decision: %v %v", again, err)
	}
	if ids, _ := s.Pending(ctx, now); len(ids) != 0 {
		t.Errorf("a decided run is pending again: %v", ids)
	}
	if d, _ := s.Decision(ctx, "r1"); d == nil || !d.Approve {
		t.Errorf("decision lost: %+v", d)
	}
	// Expired while the node was down: not pending again.
	if _, _, err := s.Ask(ctx, "r2", now.Add(time.Second), now); err != nil {
		t.Fatal(err)
	}
	if err := s.client.ZRem(ctx, keys.Approvals(s.prefix), "r2").Err(); err != nil { // withdrawn at its deadline
		t.Fatal(err)
	}
	dl, _, _ = s.Ask(ctx, "r2", now.Add(time.Minute), now.Add(2*time.Second))
	if ids, _ := s.Pending(ctx, now); len(ids) != 0 || dl.After(now.Add(time.Second)) {
		t.Errorf("an expired request came back: pending %v, deadline %v", ids, dl)
	}
}

// A run that must queue for a slot is told so once (its caller gives the
// node's execution slot back then); one that gets a slot at once is not.
func TestAcquireQueuedHook(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	var queued atomic.Int32
	l := Limit{Runbook: "rb", Key: "k", Max: 1, Wait: time.Minute, Queue: 5, LeaseTTL: 2 * time.Second, Poll: 20 * time.Millisecond,
		Queued: func() { queued.Add(1) }}
	first, err := s.Acquire(ctx, l, "r1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := queued.Load(); n != 0 {
		t.Fatalf("Queued called %d times for a free slot", n)
	}
	got := make(chan error, 1)
	go func() {
		slot, err := s.Acquire(ctx, l, "r2", nil, nil)
		if err == nil {
			slot.Release()
		}
		got <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for queued.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // several polls
	first.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if n := queued.Load(); n != 1 {
		t.Errorf("Queued called %d times, want once", n)
	}
}
