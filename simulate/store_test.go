package simulate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/medicops/medic/controls"
	"github.com/medicops/medic/internal/redistest"
)

// The virtual store answers the budget and circuit questions exactly as
// the Redis scripts of package controls do: the same random sequence of
// calls, at the same (ms-aligned) times, gets the same answers from both.
func TestStoreAgreesWithRedis(t *testing.T) {
	ctx := context.Background()
	real := controls.New(redistest.Start(t, redistest.Options{}).Client(), "")
	clock := NewClock(Epoch)
	sim := newStore(clock, func() policy { return policy{} })
	rng := rand.New(rand.NewPCG(17, 1))
	// Times near now (the real store expires its keys in Redis time).
	now := time.Now().Truncate(time.Millisecond)
	bo := controls.Backoff{Base: 30 * time.Second, Max: 5 * time.Minute, Reset: 10 * time.Minute}
	exhausted, open, waited := 0, 0, 0
	for i := 0; i < 400; i++ {
		step := 10 * 60 * 1000 // ms: mostly minutes apart, sometimes within a backoff
		if rng.IntN(2) == 0 {
			step = 20 * 1000
		}
		now = now.Add(time.Duration(rng.IntN(step)) * time.Millisecond)
		agent := fmt.Sprintf("a%d", rng.IntN(3))
		id := fmt.Sprintf("run-%d", i)
		switch rng.IntN(3) {
		case 0:
			w1, e1, err := real.TakeRestart(ctx, "n", agent, 4, time.Hour, bo, now, id)
			if err != nil {
				t.Fatal(err)
			}
			w2, e2, _ := sim.TakeRestart(ctx, "n", agent, 4, time.Hour, bo, now, id)
			if w1 != w2 || e1 != e2 {
				t.Fatalf("call %d TakeRestart(%s): redis (%s, %q), simulated (%s, %q)", i, agent, w1, e1, w2, e2)
			}
			if e1 != "" {
				exhausted++
			}
			if w1 > 0 {
				waited++
			}
		default:
			peek := rng.IntN(4) == 0
			var o1, o2 bool
			var u1, u2 time.Time
			var err error
			if peek {
				o1, u1, err = real.CircuitPeek(ctx, "n", agent, 2, 90*time.Minute, now)
				o2, u2, _ = sim.CircuitPeek(ctx, "n", agent, 2, 90*time.Minute, now)
			} else {
				o1, u1, err = real.Circuit(ctx, "n", agent, 2, 90*time.Minute, now, id)
				o2, u2, _ = sim.Circuit(ctx, "n", agent, 2, 90*time.Minute, now, id)
			}
			if err != nil {
				t.Fatal(err)
			}
			if o1 != o2 || !u1.Equal(u2) {
				t.Fatalf("call %d Circuit(%s, peek %v): redis (%v, %s), simulated (%v, %s)", i, agent, peek, o1, u1, o2, u2)
			}
			if o1 {
				open++
			}
		}
	}
	if exhausted == 0 || open == 0 || waited == 0 {
		t.Errorf("the sequence never exhausted a budget (%d), opened a circuit (%d) or backed off (%d)", exhausted, open, waited)
	}
	t.Logf("%d exhausted, %d open, %d backed off", exhausted, open, waited)
}
