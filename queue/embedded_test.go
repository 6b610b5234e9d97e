package queue

import (
	"context"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redisx"
)

// TestEmbeddedStore runs the dispatcher's scripts on the embedded in-memory
// store `medic serve` and `medic demo` fall back to without --redis.url. It
// only shows they work there; every guarantee is tested on real Redis.
func TestEmbeddedStore(t *testing.T) {
	client, _, closeFn, err := redisx.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	h := newHarness(t, client, "", "mini")
	h.startAgent("a1")
	h.startAgent("a2")
	c := h.startCoordinator(nil)
	waitFor(t, 2*time.Second, "agents registered", func() bool {
		st, err := ReadStatus(context.Background(), client, h.keys)
		return err == nil && len(st.Agents) == 2
	})
	h.produce(context.Background(), []string{"d1", "d2"}, 50, 0)
	if _, err := c.c.Trigger(context.Background(), "mini", "", "", "t"); err != nil {
		t.Fatal(err)
	}
	h.produce(context.Background(), []string{"d1", "d2"}, 50, 0)
	h.waitApplied(5 * time.Second)
	st := h.waitSettled(2 * time.Second)
	h.check()
	if st.Agent != "a2" || st.Epoch != 2 {
		t.Errorf("after switchover: agent %q epoch %d, want a2 2", st.Agent, st.Epoch)
	}
}
