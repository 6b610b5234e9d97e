package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSwitchoverOnCrashWhileProducing(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "crash")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	a1 := h.startAgent("a1")
	h.startAgent("a2")
	h.startCoordinator(nil, func(o *CoordinatorOptions) { o.Metrics = m; o.Registerer = reg })
	waitFor(t, 2*time.Second, "agents registered", func() bool { return len(h.status().Agents) == 2 })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); h.produce(ctx, []string{"d1", "d2", "d3"}, 600, 200*time.Microsecond) }()
	waitFor(t, 5*time.Second, "deliveries", func() bool { return h.dev.AppliedTotal() > 50 })
	if st := h.status(); st.Agent != "a1" {
		t.Fatalf("active agent %q, want a1", st.Agent)
	}
	a1.crash()
	wg.Wait()
	cancel()
	h.waitApplied(10 * time.Second)
	st := h.waitSettled(5 * time.Second)
	h.check()
	if st.Agent != "a2" || st.Epoch != 2 || st.Switchovers != 1 {
		t.Errorf("after crash: agent %q epoch %d switchovers %d, want a2 2 1", st.Agent, st.Epoch, st.Switchovers)
	}
	if n := testutil.ToFloat64(m.switchovers.WithLabelValues("crash")); n != 1 {
		t.Errorf("medic_dispatch_switchovers_total = %v, want 1", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", problems, err)
	}
	if err := testutil.CollectAndCompare(reg, stringsReader(`
# HELP medic_dispatch_backlog Configs published and not yet acknowledged: in agent streams plus the buffer.
# TYPE medic_dispatch_backlog gauge
medic_dispatch_backlog{pool="crash"} 0
# HELP medic_dispatch_epoch The pool's current epoch; it grows by one per activation or switchover.
# TYPE medic_dispatch_epoch gauge
medic_dispatch_epoch{pool="crash"} 2
`), "medic_dispatch_backlog", "medic_dispatch_epoch"); err != nil {
		t.Error(err)
	}
}

// TestCoordinatorKilledBetweenEveryStep stops the coordinator (keeping its
// lease, as a crash would) before each switchover step in turn, with a
// second coordinator running from the start; the second must finish every
// switchover, and producers keep publishing while the lock is held.
func TestCoordinatorKilledBetweenEveryStep(t *testing.T) {
	_, client := standalone(t, false)
	for k := 1; ; k++ {
		pool := fmt.Sprintf("kill%d", k)
		h := newHarness(t, client, "", pool)
		a1 := h.startAgent("a1")
		h.startAgent("a2")
		waitFor(t, 2*time.Second, "agents registered", func() bool { return len(h.status().Agents) == 2 })
		devices := []string{"d1", "d2", "d3", "d4"}
		h.produce(context.Background(), devices, 20, 0)
		h.waitApplied(5 * time.Second)
		// A backlog of 170 in a1's stream: 4 migrate batches of 50.
		a1.pause()
		h.produce(context.Background(), devices, 170, 0)

		var calls atomic.Int32
		var fired atomic.Bool
		var steps []string
		var mu sync.Mutex
		filled := false
		hook := func(_, step string) error {
			mu.Lock()
			steps = append(steps, step)
			mu.Unlock()
			if step == "drain" && !filled {
				// Publish while locked, past two drain batches, so that
				// there are kill points between drain batches too.
				filled = true
				h.produce(context.Background(), devices, 120, 0)
			}
			if calls.Add(1) == int32(k) {
				fired.Store(true)
				return errors.New("killed")
			}
			return nil
		}
		c1 := h.startCoordinator(hook, func(o *CoordinatorOptions) { o.ID = "c1" })
		// Make sure c1 holds the lease before the rival starts.
		waitFor(t, 2*time.Second, "c1 lease", func() bool {
			v, _ := client.Get(context.Background(), h.keys.Lease()).Result()
			return len(v) > 3 && v[:3] == "c1:"
		})
		h.startCoordinator(nil, func(o *CoordinatorOptions) { o.ID = "c2" })

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); h.produce(ctx, devices, 100, time.Millisecond) }()
		waitFor(t, 10*time.Second, "switchover to a2", func() bool {
			st := h.status()
			return st.Agent == "a2" && !st.Lock
		})
		wg.Wait()
		cancel()
		a1.resume()
		h.waitApplied(10 * time.Second)
		h.waitSettled(5 * time.Second)
		h.check()
		if fired.Load() {
			select {
			case err := <-c1.done:
				c1.done <- err
				if err == nil {
					t.Errorf("k=%d: killed coordinator returned nil", k)
				}
			case <-time.After(2 * time.Second):
				t.Errorf("k=%d: killed coordinator still running", k)
			}
		}
		mu.Lock()
		t.Logf("k=%d steps seen by c1: %v (killed: %v)", k, steps, fired.Load())
		mu.Unlock()
		if !fired.Load() {
			drains := 0
			for _, s := range steps {
				if s == "drain" {
					drains++
				}
			}
			if k < 8 || drains < 2 {
				t.Fatalf("steps %v: want at least 4 migrate and 2 drain batches to kill between", steps)
			}
			break
		}
	}
}

func TestIdleConsumerIsReplaced(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "idle")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// "ghost" heartbeats but never reads its stream.
	beat := func() {
		heartbeatScript.Run(ctx, client, []string{h.keys.Agents()}, "ghost", 200, "g")
	}
	beat()
	go func() {
		for sleep(ctx, 20*time.Millisecond) {
			beat()
		}
	}()
	h.produce(ctx, []string{"d"}, 5, 0)
	if st := h.status(); st.Agent != "ghost" {
		t.Fatalf("active agent %q, want ghost", st.Agent)
	}
	h.startAgent("real")
	start := time.Now()
	h.startCoordinator(nil, func(o *CoordinatorOptions) { o.IdleLimit = 300 * time.Millisecond })
	h.waitApplied(5 * time.Second)
	st := h.waitSettled(2 * time.Second)
	h.check()
	if st.Agent != "real" {
		t.Errorf("active agent %q, want real", st.Agent)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("switched after %s, before the idle limit", d)
	}
}

func TestManualSwitchoverTargets(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "manual")
	for _, id := range []string{"a1", "a2", "a3"} {
		h.startAgent(id)
	}
	c := h.startCoordinator(nil, func(o *CoordinatorOptions) {
		o.Pools[0].Agents = []string{"a1", "a2", "a3"}
	})
	waitFor(t, 2*time.Second, "agents registered", func() bool { return len(h.status().Agents) == 3 })
	h.produce(context.Background(), []string{"d"}, 3, 0)
	ctx := context.Background()
	tests := []struct {
		from, target string
		wantTo       string
		wantErr      error
		wantNot      bool
	}{
		{"", "a3", "a3", nil, false},
		{"", "a3", "", ErrBadTarget, false},   // already active
		{"", "nope", "", ErrBadTarget, false}, // not in the pool
		{"a1", "", "", nil, true},             // a1 not active: nothing to do
		{"a3", "", "a1", nil, false},          // first healthy in order, not a3
		{"", "", "a2", nil, false},
	}
	for i, tc := range tests {
		res, err := c.c.Trigger(ctx, "manual", tc.from, tc.target, "test")
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Fatalf("%d: Trigger(%q,%q) err %v, want %v", i, tc.from, tc.target, err, tc.wantErr)
		}
		if err == nil && (res.To != tc.wantTo && !tc.wantNot || res.NotActive != tc.wantNot) {
			t.Errorf("%d: Trigger(%q,%q) = %+v, want to %q notActive %v", i, tc.from, tc.target, res, tc.wantTo, tc.wantNot)
		}
		h.produce(ctx, []string{"d"}, 3, 0)
	}
	h.waitApplied(5 * time.Second)
	h.waitSettled(2 * time.Second)
	h.check()
	detail, err := c.c.Switchover(ctx, "manual", "a1")
	if err != nil || detail == "" {
		t.Errorf("Switchover(a1) = %q, %v", detail, err)
	}
	if _, err := c.c.Trigger(ctx, "nosuch", "", "", "x"); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("unknown pool: %v", err)
	}
}

// TestSetPools reloads the coordinator's pools while it runs: an added pool
// gets coordinated (its buffered configs reach the agent that appeared),
// a removed one stops and gives its lease back, a bad list changes nothing.
func TestSetPools(t *testing.T) {
	_, client := standalone(t, false)
	h1 := newHarness(t, client, "", "keep")
	h2 := newHarness(t, client, "", "added")
	c := h1.startCoordinator(nil)
	ctx := context.Background()
	h2.produce(ctx, []string{"d"}, 10, 0) // no agent: buffered
	h2.startAgent("b1")
	time.Sleep(300 * time.Millisecond)
	if st := h2.status(); st.Agent != "" || st.Buffer != 10 {
		t.Fatalf("pool not coordinated yet should wait: %+v", st)
	}
	if _, ok := c.c.Keys("added"); ok {
		t.Fatal("pool known before SetPools")
	}
	spec := func(name string) PoolSpec { return PoolSpec{Name: name, CheckInterval: 100 * time.Millisecond} }
	if err := c.c.SetPools([]PoolSpec{spec("keep"), spec("added"), spec("added")}); err == nil {
		t.Fatal("duplicate pools accepted")
	}
	if diff := cmp.Diff([]string{"keep"}, c.c.Pools()); diff != "" {
		t.Fatalf("a rejected SetPools changed the pools: %s", diff)
	}
	if err := c.c.SetPools([]PoolSpec{spec("keep"), spec("added")}); err != nil {
		t.Fatal(err)
	}
	h2.waitApplied(5 * time.Second)
	st := h2.waitSettled(2 * time.Second)
	h2.check()
	if st.Agent != "b1" {
		t.Errorf("added pool: agent %q, want b1", st.Agent)
	}
	waitFor(t, 2*time.Second, "lease of keep", func() bool { return client.Exists(ctx, h1.keys.Lease()).Val() == 1 })
	if err := c.c.SetPools([]PoolSpec{spec("added")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "lease of the removed pool released", func() bool { return client.Exists(ctx, h1.keys.Lease()).Val() == 0 })
	if _, err := c.c.Trigger(ctx, "keep", "", "", "x"); !errors.Is(err, ErrUnknownPool) {
		t.Errorf("removed pool: %v", err)
	}
}
