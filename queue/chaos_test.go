package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medicops/medic/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRedisRestartMidStream restarts Redis (appendfsync always) while
// producers publish and agents deliver; producers retry with their
// idempotency keys, and every config is applied exactly once, in order.
func TestRedisRestartMidStream(t *testing.T) {
	srv, client := standalone(t, true)
	h := newHarness(t, client, "", "restart")
	h.startAgent("a1")
	h.startAgent("a2")
	h.startCoordinator(nil)
	waitFor(t, 2*time.Second, "agents registered", func() bool { return len(h.status().Agents) == 2 })
	devices := []string{"d1", "d2", "d3", "d4"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); h.produce(ctx, devices[2*i:2*i+2], 300, 500*time.Microsecond) }()
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return h.dev.AppliedTotal() > 100 })
	srv.Restart()
	wg.Wait()
	h.waitApplied(20 * time.Second)
	h.waitSettled(5 * time.Second)
	h.check()
	if got := h.total(); got != 600 {
		t.Errorf("published %d, want 600", got)
	}
}

// TestCluster runs a pool on a real 3-master Redis Cluster through a
// switchover: every key of the pool hashes to one slot, and no command or
// script ever fails with CROSSSLOT.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), MaxRetries: 5})
	defer client.Close()
	var crossslot atomic.Int64
	client.AddHook(crossSlotHook{&crossslot})
	pools := []string{"sw-a", "sw-b", "sw-c"}
	var wg sync.WaitGroup
	for _, pool := range pools {
		h := newHarness(t, client, "", pool)
		h.startAgent("a1")
		h.startAgent("a2")
		c := h.startCoordinator(nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			waitFor(t, 5*time.Second, "agents registered", func() bool { return len(h.status().Agents) == 2 })
			h.produce(context.Background(), []string{"d1", "d2"}, 100, 0)
			if _, err := c.c.Trigger(context.Background(), pool, "", "", "test"); err != nil {
				t.Errorf("%s: switchover: %v", pool, err)
			}
			h.produce(context.Background(), []string{"d1", "d2"}, 100, 0)
			h.waitApplied(10 * time.Second)
			st := h.waitSettled(5 * time.Second)
			h.check()
			if st.Epoch != 2 {
				t.Errorf("%s: epoch %d, want 2", pool, st.Epoch)
			}
			// Every key of the pool lives in one slot.
			var mu sync.Mutex
			var keys []string
			client.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
				ks, _ := n.Keys(ctx, "*{pool:"+pool+"}*").Result()
				mu.Lock()
				keys = append(keys, ks...)
				mu.Unlock()
				return nil
			})
			slots := map[int64]bool{}
			for _, k := range keys {
				s, err := client.ClusterKeySlot(context.Background(), k).Result()
				if err != nil {
					t.Error(err)
				}
				slots[s] = true
			}
			if len(keys) < 5 || len(slots) != 1 {
				t.Errorf("%s: keys %v in slots %v, want one slot", pool, keys, slots)
			}
		}()
	}
	wg.Wait()
	if n := crossslot.Load(); n != 0 {
		t.Errorf("%d CROSSSLOT errors", n)
	}
}

type crossSlotHook struct{ n *atomic.Int64 }

func (h crossSlotHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h crossSlotHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && strings.Contains(err.Error(), "CROSSSLOT") {
			h.n.Add(1)
		}
		return err
	}
}
func (h crossSlotHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestChaos runs short randomized rounds: agents crash, restart, pause and
// resume, coordinators die mid-switchover and are replaced, two run at
// once, manual switchovers interleave, devices fail at random, and
// producers publish throughout. Every round checks every device.
// MEDIC_CHAOS_SEED=N reproduces a failed run's rounds.
func TestChaos(t *testing.T) {
	const rounds = 50
	base := time.Now().UnixNano() % 1_000_000
	if s := os.Getenv("MEDIC_CHAOS_SEED"); s != "" {
		base, _ = strconv.ParseInt(s, 10, 64)
	}
	_, client := standalone(t, false)
	for i := 0; i < rounds; i++ {
		seed := base + int64(i)
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { chaosRound(t, client, seed) })
		if !ok {
			t.Fatalf("chaos round failed: reproduce with MEDIC_CHAOS_SEED=%d go test ./queue -run 'TestChaos/seed=%d$'", base, seed)
		}
	}
}

func chaosRound(t *testing.T, client redis.UniversalClient, seed int64) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6d65646963))
	var rmu sync.Mutex
	rnd := func(n int) int { rmu.Lock(); defer rmu.Unlock(); return rng.IntN(n) }
	h := newHarness(t, client, "", fmt.Sprintf("chaos%d", seed))
	failRate := rnd(15)
	h.dev.Fail = func(string, int64) bool { return rnd(100) < failRate }

	var agents []*agent
	nextAgent := 0
	newAgent := func(id string) {
		if id == "" {
			nextAgent++
			id = fmt.Sprintf("a%d", nextAgent)
		}
		agents = append(agents, h.startAgent(id))
	}
	for n := 2 + rnd(2); n > 0; n-- {
		newAgent("")
	}
	var coords []*coord
	var kills []*atomic.Bool
	startCoord := func(mayDie bool) {
		k, calls, kill := int32(1+rnd(6)), &atomic.Int32{}, &atomic.Bool{}
		if !mayDie || rnd(2) == 0 {
			k = -1
		}
		hook := func(_, _ string) error {
			if calls.Add(1) == k || kill.Load() {
				return errors.New("chaos kill")
			}
			return nil
		}
		coords = append(coords, h.startCoordinator(hook))
		kills = append(kills, kill)
	}
	startCoord(true)
	if rnd(2) == 0 {
		startCoord(true)
	}

	devices := make([]string, 1+rnd(4))
	for i := range devices {
		devices[i] = fmt.Sprintf("d%d", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.produce(ctx, devices, 60+rnd(120), time.Duration(rnd(1500))*time.Microsecond)
	}()

	var events []string
	for step := 0; step < 4+rnd(4); step++ {
		time.Sleep(time.Duration(20+rnd(120)) * time.Millisecond)
		alive := agents[:0:0]
		for _, a := range agents {
			select {
			case <-a.done:
			default:
				alive = append(alive, a)
			}
		}
		switch ev := rnd(6); {
		case ev == 0 && len(alive) > 1: // crash an agent; maybe restart it under the same ID
			a := alive[rnd(len(alive))]
			a.crash()
			events = append(events, "crash "+a.c.o.Agent)
			if rnd(2) == 0 {
				newAgent(a.c.o.Agent)
				events = append(events, "restart "+a.c.o.Agent)
			}
		case ev == 1: // pause (like SIGSTOP), resume later
			a := alive[rnd(len(alive))]
			a.pause()
			events = append(events, "pause "+a.c.o.Agent)
			go func() { time.Sleep(time.Duration(100+rnd(300)) * time.Millisecond); a.resume() }()
		case ev == 2: // manual switchover, possibly racing the coordinator
			go coords[len(coords)-1].c.Trigger(ctx, h.pool, "", "", "chaos")
			events = append(events, "trigger")
		case ev == 3: // a coordinator dies (keeps its lease) and a new one starts
			kills[rnd(len(kills))].Store(true)
			startCoord(true)
			events = append(events, "kill coordinator")
		case ev == 4:
			newAgent("")
			events = append(events, "new agent")
		default:
			startCoord(true)
			events = append(events, "extra coordinator")
		}
	}
	wg.Wait()
	// Settle: every agent resumed, one fresh agent and coordinator alive.
	for _, a := range agents {
		a.resume()
	}
	h.dev.SetFail(nil)
	newAgent("")
	startCoord(false)
	t.Logf("seed %d: %d devices, fail %d%%, events %v", seed, len(devices), failRate, events)
	h.waitApplied(20 * time.Second)
	h.waitSettled(10 * time.Second)
	h.check()
}
