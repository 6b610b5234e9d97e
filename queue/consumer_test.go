package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestDeliversInOrderAcrossDevices(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "deliver")
	h.startAgent("a1")
	h.startCoordinator(nil)
	waitFor(t, 2*time.Second, "agent registered", func() bool { return len(h.status().Agents) == 1 })
	devices := []string{"d1", "d2", "d3", "d4", "d5"}
	h.produce(context.Background(), devices, 500, 0)
	h.waitApplied(10 * time.Second)
	st := h.waitSettled(5 * time.Second)
	h.check()
	if st.Agent != "a1" || st.Epoch != 1 {
		t.Errorf("status: agent %q epoch %d, want a1 1", st.Agent, st.Epoch)
	}
	for _, d := range devices {
		for _, ev := range h.dev.History(d) {
			if ev.Outcome != "applied" {
				t.Errorf("%s: unexpected %s for seq %d (no failures injected)", d, ev.Outcome, ev.Seq)
			}
		}
	}
}

func TestDeviceFailuresAreRetriedNeverSkipped(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "retry")
	// Every config fails twice before the device takes it.
	fails := map[string]int{}
	h.dev.Fail = func(d string, seq int64) bool {
		k := fmt.Sprint(d, seq)
		fails[k]++
		return fails[k] <= 2
	}
	h.startAgent("a1")
	waitFor(t, 2*time.Second, "agent registered", func() bool { return len(h.status().Agents) == 1 })
	h.produce(context.Background(), []string{"x", "y"}, 40, 0)
	h.waitApplied(10 * time.Second)
	h.waitSettled(5 * time.Second)
	h.check()
	for _, d := range []string{"x", "y"} {
		var injected int
		for _, ev := range h.dev.History(d) {
			if ev.Outcome == "injected-failure" {
				injected++
			}
		}
		if injected != 40 {
			t.Errorf("%s: %d injected failures, want 40 (2 per config)", d, injected)
		}
	}
}

// TestGapHoldsDevice removes a config from the stream behind the
// dispatcher's back: the agent must hold that device (never skip to the
// next seq), count the gap, and keep serving the other devices.
func TestGapHoldsDevice(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "gap")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	ctx := context.Background()
	// Register an agent that is not running yet, so publishes queue up in
	// its stream.
	if err := heartbeatScript.Run(ctx, client, []string{h.keys.Agents()}, "a1", 60000, "h").Err(); err != nil {
		t.Fatal(err)
	}
	var lost string
	for i := 0; i < 3; i++ {
		for _, d := range []string{"held", "fine"} {
			res, err := h.publish(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if d == "held" && res.Seq == 2 {
				lost = res.ID
			}
		}
	}
	if n, err := client.XDel(ctx, h.keys.In("a1"), lost).Result(); n != 1 || err != nil {
		t.Fatalf("XDEL %s: %d %v", lost, n, err)
	}
	h.startAgent("a1", func(o *ConsumerOptions) { o.Metrics = m })
	waitFor(t, 5*time.Second, "fine delivered", func() bool { return h.dev.Applied("fine") == 3 })
	waitFor(t, 5*time.Second, "gap counted", func() bool { return testutil.ToFloat64(m.gaps.WithLabelValues("gap")) == 1 })
	time.Sleep(200 * time.Millisecond)
	if got := h.dev.Applied("held"); got != 1 {
		t.Errorf("held device applied %d configs, want 1 (seq 3 must wait for the missing seq 2)", got)
	}
	for _, ev := range h.dev.History("held") {
		if ev.Seq == 3 {
			t.Errorf("seq 3 was pushed across the gap: %+v", ev)
		}
	}
	if n := testutil.ToFloat64(m.gaps.WithLabelValues("gap")); n != 1 {
		t.Errorf("gap counted %v times, want once per hold", n)
	}
	if problems, err := testutil.CollectAndLint(m.gaps); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestBufferedUntilAnAgentAppears publishes into a pool with no agent at
// all: nothing is lost, and the coordinator activates the first agent that
// heartbeats and drains the buffer to it in order.
func TestBufferedUntilAnAgentAppears(t *testing.T) {
	_, client := standalone(t, false)
	h := newHarness(t, client, "", "late")
	h.startCoordinator(nil)
	ctx := context.Background()
	h.produce(ctx, []string{"d1", "d2"}, 40, 0)
	time.Sleep(150 * time.Millisecond) // a check with nobody to activate
	if st := h.status(); st.Buffer != 40 || st.Agent != "" || st.Status != "waiting" {
		t.Fatalf("before any agent: %+v", st)
	}
	h.startAgent("late-1")
	h.produce(ctx, []string{"d1", "d2"}, 40, 0)
	h.waitApplied(5 * time.Second)
	st := h.waitSettled(2 * time.Second)
	h.check()
	if st.Agent != "late-1" || st.Epoch != 1 {
		t.Errorf("agent %q epoch %d, want late-1 1", st.Agent, st.Epoch)
	}
}
