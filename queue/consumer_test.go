package queue

import (
	"context"
	"fmt"
	"testing"
	"time"
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
